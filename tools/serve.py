"""Serve a LLaVA with an OpenAI-compatible API (chat completions, streaming, images and clips).

Example::

    python tools/serve.py llava-7b-v1.5_vqa --port 8000
    python tools/serve.py configs/llava/llava-tiny_vqa.py --checkpoint work_dirs/tiny/w.safetensors

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{
      "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}},
        {"type": "text", "text": "What is the person doing?"}]}],
      "max_tokens": 64, "stream": false}'

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``. Images come as data URIs
(``image_url`` parts), clips as ``video_url`` parts (data URIs or local files); a part's
placeholder goes where the part is, so ``[image, text]`` gives LLaVA's ``<image>\\nquestion``.
The server is offline: http(s) URLs are refused, and local files are read only under
``--allowed-local-media``. It binds to 127.0.0.1 unless ``--host`` says otherwise. One answer
is generated at a time (requests queue on a lock), so each response is its own request's.
Answers and prompts are :func:`mmllava.apis.chat`'s: this file only translates the protocol.
"""
import argparse
import base64
import binascii
import io
import json
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Optional
from urllib.parse import unquote, urlparse

ROLES = ('system', 'user', 'assistant')
VIDEO_MIME_SUFFIXES = {'video/mp4': '.mp4', 'video/webm': '.webm', 'video/quicktime': '.mov',
                       'video/x-matroska': '.mkv', 'video/avi': '.avi', 'video/x-msvideo': '.avi',
                       'image/gif': '.gif'}


class APIError(Exception):
    """An error answered in OpenAI's format: ``{"error": {message, type, param, code}}``.

    Args:
        status (int): The HTTP status.
        message (str): What went wrong and what to do.
        param (str, optional): The request field at fault (e.g. ``messages[0].content``).
        code (str, optional): A machine-readable code.
        error_type (str): OpenAI's error type.
    """

    def __init__(self, status: int, message: str, param: Optional[str] = None,
                 code: Optional[str] = None, error_type: str = 'invalid_request_error'):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type

    def body(self) -> dict:
        return dict(error=dict(message=self.message, type=self.error_type, param=self.param,
                               code=self.code))


# ---------------------------------------------------------------------- media
def _split_data_uri(url: str, param: str):
    """``data:<mime>;base64,<payload>`` -> (mime, bytes)."""
    header, sep, payload = url[5:].partition(',')
    if not sep or not header.endswith(';base64'):
        raise APIError(400, 'A data URI must look like data:<mime>;base64,<data>', param,
                       'invalid_data_uri')
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, 'The data URI is not valid base64', param, 'invalid_data_uri')
    return header[:-len(';base64')].strip().lower(), data


class MediaResolver:
    """Turn ``image_url`` / ``video_url`` values into sources :func:`mmllava.apis.chat` reads.

    Args:
        allowed_dir (str, optional): The only folder local paths and ``file://`` URLs may be
            read from; ``None`` refuses every local path.
        max_image_pixels (int): Images with more pixels (checked from the header, before
            decoding) are refused with 413.
    """

    def __init__(self, allowed_dir: Optional[str], max_image_pixels: int):
        self.allowed_dir = Path(allowed_dir).resolve() if allowed_dir else None
        self.max_image_pixels = max_image_pixels

    def _local_path(self, url: str, param: str) -> Path:
        path = unquote(urlparse(url).path) if url.startswith('file://') else url
        if self.allowed_dir is None:
            raise APIError(403, 'Local files are not served: start the server with '
                           '--allowed-local-media DIR, or send the file as a data URI', param,
                           'local_media_forbidden')
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            raise APIError(400, f'No such file: {path}', param, 'file_not_found')
        # resolve() follows symlinks, so a link inside the folder cannot point outside it.
        if not resolved.is_relative_to(self.allowed_dir):
            raise APIError(403, f'{path} is outside the folder allowed for local media',
                           param, 'local_media_forbidden')
        return resolved

    @staticmethod
    def _check_scheme(url: str, param: str) -> None:
        if not isinstance(url, str) or not url:
            raise APIError(400, 'The url must be a non-empty string', param)
        scheme = urlparse(url).scheme.lower()
        if scheme in ('http', 'https', 'ftp'):
            raise APIError(400, 'This server is offline and does not fetch URLs: send the '
                           'image as a data URI (data:image/png;base64,...)', param,
                           'url_not_supported')

    def image(self, url: str, param: str):
        """A PIL RGB image from a data URI or an allowed local file."""
        from PIL import Image

        self._check_scheme(url, param)
        if url.startswith('data:'):
            _, data = _split_data_uri(url, param)
            source = io.BytesIO(data)
        else:
            source = self._local_path(url, param)
        try:
            image = Image.open(source)
            # The header gives the size: refuse a decompression bomb before decoding it.
            if image.width * image.height > self.max_image_pixels:
                raise APIError(413, f'The image has {image.width}x{image.height} pixels, more '
                               f'than the {self.max_image_pixels} this server accepts', param,
                               'image_too_large')
            image.load()
        except APIError:
            raise
        except Image.DecompressionBombError:
            raise APIError(413, 'The image is too large to decode', param, 'image_too_large')
        except (OSError, ValueError, SyntaxError) as e:
            raise APIError(400, f'The image could not be decoded ({type(e).__name__}): send '
                           'a PNG, JPEG, WebP, GIF or BMP file', param, 'invalid_image')
        from mmllava.datasets.transforms.loading import load_image
        return load_image(image)  # the loader's own RGB conversion (alpha, 16-bit, palette)

    def video(self, url: str, param: str, tmpdir: str) -> str:
        """A clip file path: a data URI written to ``tmpdir``, or an allowed local file."""
        self._check_scheme(url, param)
        if not url.startswith('data:'):
            return str(self._local_path(url, param))
        mime, data = _split_data_uri(url, param)
        suffix = VIDEO_MIME_SUFFIXES.get(mime)
        if suffix is None:
            raise APIError(400, f'Unsupported clip type {mime!r}: one of '
                           f'{", ".join(VIDEO_MIME_SUFFIXES)}', param, 'invalid_video')
        path = Path(tmpdir) / f'clip{len(list(Path(tmpdir).iterdir()))}{suffix}'
        path.write_bytes(data)
        return str(path)


# ---------------------------------------------------------------------- requests
def _number(body: dict, key: str, low: float, high: float, integer: bool = False):
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = 'an integer' if integer else 'a number'
        raise APIError(400, f'{key} must be {what} in [{low}, {high}], got {value!r}', key)
    return value


def parse_messages(messages, media: MediaResolver, tmpdir: str):
    """OpenAI messages -> (messages with ``<image>``/``<video>`` placeholders, images, videos).

    Content is a string or a list of parts: ``text``, ``image_url`` and ``video_url``; each
    part becomes a line, images and clips their placeholder, in part order.
    """
    if not isinstance(messages, list) or not messages:
        raise APIError(400, 'messages must be a non-empty list', 'messages')
    out, images, videos = [], [], []
    for i, message in enumerate(messages):
        param = f'messages[{i}]'
        if not isinstance(message, dict):
            raise APIError(400, 'Each message must be an object with role and content', param)
        role = message.get('role')
        if role not in ROLES:
            raise APIError(400, f'Unknown role {role!r}: one of {", ".join(ROLES)}',
                           f'{param}.role')
        content = message.get('content')
        if isinstance(content, str):
            if '<image>' in content or '<video>' in content:
                # Placeholders come from parts only, so they always match the visuals sent.
                raise APIError(400, 'Send images and clips as image_url / video_url parts, '
                               'not as <image> / <video> in the text', f'{param}.content')
            out.append(dict(role=role, content=content))
            continue
        if not isinstance(content, list):
            raise APIError(400, 'content must be a string or a list of parts',
                           f'{param}.content')
        lines = []
        for j, part in enumerate(content):
            pparam = f'{param}.content[{j}]'
            kind = part.get('type') if isinstance(part, dict) else None
            if kind == 'text' and isinstance(part.get('text'), str):
                if '<image>' in part['text'] or '<video>' in part['text']:
                    raise APIError(400, 'Send images and clips as image_url / video_url '
                                   'parts, not as <image> / <video> in the text', pparam)
                lines.append(part['text'])
            elif kind in ('image_url', 'video_url'):
                if role != 'user':
                    raise APIError(400, f'Only user messages may hold images or clips, not '
                                   f'{role} ones', pparam)
                value = part.get(kind)
                url = value.get('url') if isinstance(value, dict) else value
                if kind == 'image_url':
                    images.append(media.image(url, f'{pparam}.image_url'))
                    lines.append('<image>')
                else:
                    videos.append(media.video(url, f'{pparam}.video_url', tmpdir))
                    lines.append('<video>')
            else:
                raise APIError(400, 'A content part must be {"type": "text", "text": ...}, '
                               '{"type": "image_url", "image_url": {"url": ...}} or '
                               '{"type": "video_url", "video_url": {"url": ...}}', pparam)
        out.append(dict(role=role, content='\n'.join(lines)))
    return out, images, videos


def generation_kwargs(body: dict) -> dict:
    """``max_tokens``, ``temperature`` (0: greedy) and ``top_p`` -> transformers keywords."""
    kwargs = {}
    max_tokens = _number(body, 'max_tokens', 1, 1 << 20, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, 'max_completion_tokens', 1, 1 << 20, integer=True)
    if max_tokens is not None:
        kwargs['max_new_tokens'] = max_tokens
    temperature = _number(body, 'temperature', 0, 2)
    top_p = _number(body, 'top_p', 0, 1)
    if top_p == 0:
        raise APIError(400, 'top_p must be greater than 0', 'top_p')
    if temperature:  # None or 0: greedy, the model's default
        kwargs.update(do_sample=True, temperature=float(temperature))
        if top_p is not None:
            kwargs['top_p'] = float(top_p)
    else:
        kwargs.update(do_sample=False, num_beams=1)
    if _number(body, 'n', 1, 1, integer=True) not in (None, 1):
        raise APIError(400, 'n must be 1', 'n')
    return kwargs


class _CountSteps:
    """A no-op logits processor counting generation steps: the completion tokens."""

    def __init__(self):
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


# ---------------------------------------------------------------------- the service
class ChatService:
    """The model behind a lock: one generation at a time, each for its own request.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists and responses carry.
        media (MediaResolver): Reads images and clips.
    """

    def __init__(self, model, model_id: str, media: MediaResolver):
        self.model = model
        self.model_id = model_id
        self.media = media
        self.lock = threading.Lock()
        self.created = int(time.time())

    def models(self) -> dict:
        return dict(object='list', data=[dict(id=self.model_id, object='model',
                                              created=self.created, owned_by='mmllava')])

    def _prepare(self, body: dict, tmpdir: str):
        if not isinstance(body, dict):
            raise APIError(400, 'The request body must be a JSON object')
        if body.get('model') not in (None, self.model_id):
            raise APIError(404, f'The model {body["model"]!r} is not served here; this server '
                           f'serves {self.model_id!r}', 'model', 'model_not_found')
        if 'messages' not in body:
            raise APIError(400, 'messages is required', 'messages')
        kwargs = generation_kwargs(body)
        messages, images, videos = parse_messages(body['messages'], self.media, tmpdir)
        return messages, images, videos, kwargs

    def _start(self, messages, images, videos, kwargs, stream: bool):
        """Check the conversation and start :func:`chat`; returns (answer, usage state)."""
        from transformers import LogitsProcessorList

        from mmllava.apis.chat import chat, prepare_chat_inputs
        counter = _CountSteps()
        try:
            # chat() checks too, but the prompt's length (image tokens included) is the usage.
            prepared = prepare_chat_inputs(self.model, messages, images, videos)
            answer = chat(self.model, messages, images, videos, stream=stream,
                          logits_processor=LogitsProcessorList([counter]), **kwargs)
        except ValueError as e:  # chat's word for the caller's mistake
            code = 'context_length_exceeded' if 'context' in str(e) else None
            raise APIError(400, str(e), 'messages', code)
        prompt_tokens = prepared['inputs']['input_ids'].shape[1]
        room = self.model.max_length - prompt_tokens
        limit = kwargs.get('max_new_tokens', self.model.generation_cfg.get('max_new_tokens'))
        limit = room if limit is None else min(limit, room)
        return answer, dict(prompt_tokens=prompt_tokens, counter=counter, limit=limit)

    @staticmethod
    def _usage(state: dict) -> dict:
        completion = state['counter'].steps
        return dict(prompt_tokens=state['prompt_tokens'], completion_tokens=completion,
                    total_tokens=state['prompt_tokens'] + completion)

    @staticmethod
    def _finish_reason(state: dict) -> str:
        return 'length' if state['counter'].steps >= state['limit'] else 'stop'

    def complete(self, body: dict) -> dict:
        """A ``chat.completion`` for a request body."""
        with tempfile.TemporaryDirectory(prefix='mmllava_serve_') as tmpdir:
            messages, images, videos, kwargs = self._prepare(body, tmpdir)
            with self.lock:
                answer, state = self._start(messages, images, videos, kwargs, stream=False)
        return dict(id=f'chatcmpl-{uuid.uuid4().hex}', object='chat.completion',
                    created=int(time.time()), model=self.model_id,
                    choices=[dict(index=0, message=dict(role='assistant', content=answer),
                                  finish_reason=self._finish_reason(state))],
                    usage=self._usage(state))

    def stream(self, body: dict, send_event) -> None:
        """Answer a request as ``chat.completion.chunk`` events through ``send_event(obj)``.

        ``send_headers()`` is called through ``send_event(None)`` once the request is known to
        be good, so errors before that are still answered with a status and a JSON body.
        """
        with tempfile.TemporaryDirectory(prefix='mmllava_serve_') as tmpdir:
            messages, images, videos, kwargs = self._prepare(body, tmpdir)
            include_usage = bool((body.get('stream_options') or {}).get('include_usage'))
            with self.lock:  # held until the stream ends: the model is this request's
                pieces, state = self._start(messages, images, videos, kwargs, stream=True)
                base = dict(id=f'chatcmpl-{uuid.uuid4().hex}', object='chat.completion.chunk',
                            created=int(time.time()), model=self.model_id)

                def chunk(delta, finish=None):
                    return dict(base, choices=[dict(index=0, delta=delta,
                                                     finish_reason=finish)])

                try:
                    send_event(None)
                    send_event(chunk(dict(role='assistant', content='')))
                    for piece in pieces:
                        send_event(chunk(dict(content=piece)))
                    send_event(chunk({}, self._finish_reason(state)))
                    if include_usage:
                        send_event(dict(base, choices=[], usage=self._usage(state)))
                finally:
                    pieces.close()  # a client gone mid-stream stops the generation


# ---------------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`ChatService`."""

    protocol_version = 'HTTP/1.1'
    server_version = 'mmllava-serve'

    def log_message(self, fmt, *args):  # one line per request, to stderr
        sys.stderr.write(f'[serve] {self.address_string()} {fmt % args}\n')

    def _send_json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: APIError) -> None:
        self._send_json(err.status, err.body())

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = urlparse(self.path).path.rstrip('/')
        if path == '/v1/models':
            self._send_json(200, self.server.service.models())
        elif path in ('/health', '/v1/health'):
            self._send_json(200, dict(status='ok'))
        else:
            self._send_error(APIError(404, f'No route GET {path}', code='not_found'))

    def _read_body(self) -> dict:
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            self.close_connection = True
            raise APIError(411, 'Send a Content-Length (chunked bodies are not accepted)')
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            self.close_connection = True
            raise APIError(411, 'Content-Length is required')
        limit = self.server.max_request_bytes
        if length > limit:
            # The body is left unread, so the connection cannot carry another request.
            self.close_connection = True
            raise APIError(413, f'The request body is {length} bytes, more than the {limit} '
                           f'this server accepts (--max-request-bytes)', code='request_too_large')
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise APIError(400, f'The body is not valid JSON: {e}', code='invalid_json')

    def do_POST(self):  # noqa: N802 (http.server's name)
        path = urlparse(self.path).path.rstrip('/')
        try:
            if path != '/v1/chat/completions':
                # Read the body anyway, so the connection stays usable.
                self._read_body()
                raise APIError(404, f'No route POST {path}', code='not_found')
            body = self._read_body()
            if isinstance(body, dict) and body.get('stream'):
                self._stream(body)
            else:
                self._send_json(200, self.server.service.complete(body))
        except APIError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # the server keeps serving; the client learns what happened
            self.log_message('error: %r', e)
            self._send_error(APIError(500, f'Internal error: {e}', error_type='server_error'))

    def _stream(self, body: dict) -> None:
        started = []

        def send_event(obj):
            if obj is None:
                # Server-sent events end with the connection (no Content-Length).
                self.close_connection = True
                self.send_response(200)
                self.send_header('Content-Type', 'text/event-stream')
                self.send_header('Cache-Control', 'no-cache')
                self.send_header('Connection', 'close')
                self.end_headers()
                started.append(True)
                return
            self.wfile.write(f'data: {json.dumps(obj)}\n\n'.encode())
            self.wfile.flush()

        try:
            self.server.service.stream(body, send_event)
        except APIError as err:
            if not started:
                raise
            send_event(err.body())  # mid-stream: the status is sent, so say it in the stream
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:
            if not started:
                raise
            self.log_message('error: %r', e)
            send_event(APIError(500, f'Internal error: {e}', error_type='server_error').body())
        self.wfile.write(b'data: [DONE]\n\n')
        self.wfile.flush()


class LlavaHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding the :class:`ChatService` and the request bound."""

    daemon_threads = True

    def __init__(self, address, service: ChatService, max_request_bytes: int):
        self.service = service
        self.max_request_bytes = max_request_bytes
        super().__init__(address, Handler)


def build_server(model, model_id: str, host: str = '127.0.0.1', port: int = 8000,
                 max_request_bytes: int = 20 * 2**20, max_image_pixels: int = 4096 * 4096,
                 allowed_local_media: Optional[str] = None) -> LlavaHTTPServer:
    """Bind a server for a model (``serve_forever()`` runs it; port 0 picks a free port).

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists.
        host (str): The address to bind (127.0.0.1: this machine only).
        port (int): The port.
        max_request_bytes (int): Larger request bodies are answered 413 unread.
        max_image_pixels (int): Larger images are answered 413 undecoded.
        allowed_local_media (str, optional): The folder local paths may be read from.
    """
    media = MediaResolver(allowed_local_media, max_image_pixels)
    return LlavaHTTPServer((host, port), ChatService(model, model_id, media), max_request_bytes)


def parse_args(argv: Optional[List[str]] = None):
    from mmllava.apis.inference import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=8000, help='port (0: any free port)')
    parser.add_argument('--max-request-bytes', type=int, default=20 * 2**20,
                        help='larger request bodies are refused with 413 (default 20 MiB)')
    parser.add_argument('--max-image-pixels', type=int, default=4096 * 4096,
                        help='images with more pixels are refused with 413')
    parser.add_argument('--allowed-local-media', default=None, metavar='DIR',
                        help='read local image / clip paths (and file:// URLs) under DIR '
                        '(default: none are read)')
    parser.add_argument('--model-id', default=None,
                        help='the name /v1/models lists (default: the zoo name or the config '
                        'file name)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    from mmllava.apis import ModelHub, load_model

    try:
        model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}')
    model_id = args.model_id or (args.model if ModelHub.has(args.model) else Path(args.model).stem)
    server = build_server(model, model_id, args.host, args.port, args.max_request_bytes,
                          args.max_image_pixels, args.allowed_local_media)
    host, port = server.server_address[:2]
    print(f'Serving {model_id} on http://{host}:{port}/v1', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
