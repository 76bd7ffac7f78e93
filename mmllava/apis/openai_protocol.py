"""The OpenAI chat-completions protocol without HTTP: request bodies in, response bodies out.

Everything here is a pure function of its arguments, so the protocol is tested without a
server and ``tools/serve.py`` only moves bytes. A request body becomes a :class:`ChatRequest`
(messages with ``<image>`` / ``<video>`` placeholders where the parts were, the visuals, the
``generate`` keywords); answers become ``chat.completion`` bodies or
``chat.completion.chunk`` server-sent events; mistakes become :class:`APIError`, answered in
OpenAI's error format with the field at fault.
"""
import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from mmllava.structures import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, VISUAL_PLACEHOLDERS

ROLES = ('system', 'user', 'assistant')
PLACEHOLDERS = VISUAL_PLACEHOLDERS
MAX_TOKENS = 1 << 20  # the largest max_tokens accepted (the context bounds it anyway)
SSE_DONE = 'data: [DONE]\n\n'


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

    @classmethod
    def internal(cls, error: BaseException) -> 'APIError':
        """A 500 for an unexpected failure: its kind, never its message (which may name the
        server's files); the server's log has the traceback."""
        return cls(500, f'Internal error ({type(error).__name__}): the server log has the '
                   'details', error_type='server_error')

    def body(self) -> dict:
        """The JSON body of the error response (also sent as an event mid-stream)."""
        return dict(error=dict(message=self.message, type=self.error_type, param=self.param,
                               code=self.code))


# ---------------------------------------------------------------------- requests
def parse_json_body(raw: bytes):
    """The JSON value of a request body.

    Raises:
        APIError: 400 ``invalid_json`` for bytes that are not UTF-8 JSON.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise APIError(400, 'The body is nested too deeply', code='invalid_json')
    except (UnicodeDecodeError, ValueError) as e:  # ValueError: JSON, or an int too long
        raise APIError(400, f'The body is not valid JSON: {e}', code='invalid_json')


def _number(body: dict, key: str, low: float, high: float, integer: bool = False):
    """``body[key]`` checked to be a number in ``[low, high]``; ``None`` when absent."""
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = 'an integer' if integer else 'a number'
        raise APIError(400, f'{key} must be {what} in [{low}, {high}], got {value!r}', key)
    return value


def _check_text(text: str, param: str) -> None:
    # Placeholders come from parts only, so they always match the visuals sent.
    if any(p in text for p in PLACEHOLDERS):
        raise APIError(400, 'Send images and clips as image_url / video_url parts, not as '
                       '<image> / <video> in the text', param)


def text_chars(messages) -> int:
    """The characters of a request's text (string contents and text parts), counted before
    anything else is read; malformed parts count nothing (they are refused later)."""
    total = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get('content') if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p['text']) for p in content
                         if isinstance(p, dict) and isinstance(p.get('text'), str))
    return total


def parse_messages(messages, media, tmpdir: str, budget=None,
                   sources: Optional[dict] = None) -> Tuple[List[dict], list, list]:
    """OpenAI messages -> (messages with ``<image>``/``<video>`` placeholders, images, videos).

    Content is a string or a list of parts: ``text``, ``image_url`` and ``video_url``; each
    part becomes a line, images and clips their placeholder, in part order, so
    ``[image, text]`` gives LLaVA's ``'<image>\\nquestion'``.

    Args:
        messages: The request's ``messages``.
        media: A :class:`~mmllava.apis.openai_media.MediaResolver` that reads the visuals.
        tmpdir (str): Where clips sent as data URIs are written.
        budget: The request's :class:`~mmllava.apis.openai_media.DecodeBudget` (a new one by
            default).
        sources (dict, optional): Filled with each clip's file path -> its request field, so
            that errors name the field, never a server path.

    Raises:
        APIError: 400 for a malformed message or part (``param`` names it), or the
            resolver's error for a visual.
    """
    if not isinstance(messages, list) or not messages:
        raise APIError(400, 'messages must be a non-empty list', 'messages')
    budget = media.budget() if budget is None else budget
    sources = {} if sources is None else sources
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
            _check_text(content, f'{param}.content')
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
                _check_text(part['text'], pparam)
                lines.append(part['text'])
            elif kind in ('image_url', 'video_url'):
                if role != 'user':
                    raise APIError(400, f'Only user messages may hold images or clips, not '
                                   f'{role} ones', pparam)
                value = part.get(kind)
                url = value.get('url') if isinstance(value, dict) else value
                if kind == 'image_url':
                    images.append(media.image(url, f'{pparam}.image_url', budget))
                    lines.append(IMAGE_PLACEHOLDER)
                else:
                    path = media.video(url, f'{pparam}.video_url', tmpdir, budget)
                    sources[path] = f'{pparam}.video_url'
                    videos.append(path)
                    lines.append(VIDEO_PLACEHOLDER)
            else:
                raise APIError(400, 'A content part must be {"type": "text", "text": ...}, '
                               '{"type": "image_url", "image_url": {"url": ...}} or '
                               '{"type": "video_url", "video_url": {"url": ...}}', pparam)
        out.append(dict(role=role, content='\n'.join(lines)))
    return out, images, videos


def generation_kwargs(body: dict) -> dict:
    """``max_tokens``, ``temperature`` (0 or absent: greedy) and ``top_p`` -> ``generate``'s.

    ``max_completion_tokens`` stands in for ``max_tokens`` when that is absent; ``top_p``
    only matters when sampling. ``n`` may only be 1.

    Raises:
        APIError: 400 with ``param`` the field for a value of the wrong type or range.
    """
    kwargs = {}
    max_tokens = _number(body, 'max_tokens', 1, MAX_TOKENS, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, 'max_completion_tokens', 1, MAX_TOKENS, integer=True)
    if max_tokens is not None:
        kwargs['max_new_tokens'] = max_tokens
    temperature = _number(body, 'temperature', 0, 2)
    top_p = _number(body, 'top_p', 0, 1)
    if top_p == 0:
        raise APIError(400, 'top_p must be greater than 0', 'top_p')
    if temperature:
        kwargs.update(do_sample=True, temperature=float(temperature))
        if top_p is not None:
            kwargs['top_p'] = float(top_p)
    else:
        kwargs.update(do_sample=False, num_beams=1)
    if body.get('n') is not None and (isinstance(body['n'], bool) or body['n'] != 1):
        raise APIError(400, f'n must be 1 (one answer per request), got {body["n"]!r}', 'n')
    return kwargs


@dataclass
class ChatRequest:
    """A checked chat-completions request, ready for :func:`mmllava.apis.chat`.

    Use it as a context manager (or call :meth:`close`): clips sent as data URIs live in a
    temporary folder until the answer is done.

    Attributes:
        messages (list): Role/content dicts with ``<image>`` / ``<video>`` placeholders.
        images (list): PIL images in placeholder order.
        videos (list): Clip file paths in placeholder order.
        generate_kwargs (dict): transformers ``generate`` keywords.
        stream (bool): Answer as server-sent events.
        include_usage (bool): End a stream with a usage chunk (``stream_options``).
        seed (int, optional): Seed the sampler with it, for a reproducible sampled answer.
        deadline (float, optional): ``time.monotonic()`` past which the request is given up.
        prepared (dict, optional): The model's inputs, once
            :meth:`~mmllava.apis.openai_service.ChatCompletionService.prepare` made them.
        sources (dict): Each clip file's path -> the request field it came from.
    """

    messages: List[dict]
    images: list
    videos: list
    generate_kwargs: dict
    stream: bool = False
    include_usage: bool = False
    seed: Optional[int] = None
    tmpdir: Optional[tempfile.TemporaryDirectory] = field(default=None, repr=False)
    deadline: Optional[float] = None
    prepared: Optional[dict] = field(default=None, repr=False)
    sources: dict = field(default_factory=dict, repr=False)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Give the request up (its client left): a wait for the model ends, a generation
        stops at its next token."""
        self.cancel_event.set()

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.cancel_event.is_set()

    def expired(self) -> bool:
        """Whether the request is past its deadline."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def redact(self, message: str) -> str:
        """A message with each clip's server path replaced by the request field it came
        from (the temporary folder of data URIs included)."""
        for path, param in sorted(self.sources.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(path, param)
        if self.tmpdir is not None:
            message = message.replace(self.tmpdir.name, '<upload>')
        return message

    def close(self) -> None:
        """Remove the clips written for this request."""
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
            self.tmpdir = None

    def __enter__(self) -> 'ChatRequest':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_request(body, model_id: str, media,
                  max_text_chars: Optional[int] = None) -> ChatRequest:
    """Check a chat-completions body and read its visuals.

    Fields are checked in a fixed order (the body, ``model``, ``messages`` present, the
    generation fields, ``stream``, ``seed``, then the messages), so the visuals are decoded
    only for an otherwise good request.

    Args:
        body: The parsed JSON body.
        model_id (str): The served model; ``model`` may name it or be absent.
        media: A :class:`~mmllava.apis.openai_media.MediaResolver`.
        max_text_chars (int, optional): A text longer than this cannot fit the model's
            context: refused before any visual is read.

    Raises:
        APIError: 400 for a malformed request (``context_length_exceeded`` for a text over
            ``max_text_chars``), 404 ``model_not_found`` for another model, or the
            resolver's error for a visual.
    """
    if not isinstance(body, dict):
        raise APIError(400, 'The request body must be a JSON object')
    if body.get('model') not in (None, model_id):
        raise APIError(404, f'The model {body["model"]!r} is not served here; this server '
                       f'serves {model_id!r}', 'model', 'model_not_found')
    if 'messages' not in body:
        raise APIError(400, 'messages is required', 'messages')
    kwargs = generation_kwargs(body)
    stream = body.get('stream')
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, f'stream must be true or false, got {stream!r}', 'stream')
    options = body.get('stream_options')
    if options is not None and not isinstance(options, dict):
        raise APIError(400, 'stream_options must be an object', 'stream_options')
    seed = _number(body, 'seed', -2**63, 2**64 - 1, integer=True)
    chars = text_chars(body['messages'])
    if max_text_chars is not None and chars > max_text_chars:
        raise APIError(400, f'The messages hold {chars} characters of text: more than the '
                       f'model context can hold. Send a shorter conversation', 'messages',
                       'context_length_exceeded')
    tmpdir = tempfile.TemporaryDirectory(prefix='mmllava_serve_')
    sources = {}
    try:
        messages, images, videos = parse_messages(body['messages'], media, tmpdir.name,
                                                  sources=sources)
    except BaseException:
        tmpdir.cleanup()
        raise
    return ChatRequest(messages, images, videos, kwargs, stream=bool(stream),
                       include_usage=bool((options or {}).get('include_usage')), seed=seed,
                       tmpdir=tmpdir, sources=sources)


# ---------------------------------------------------------------------- responses
def models_list(model_id: str, created: int) -> dict:
    """The ``GET /v1/models`` body: the one model served."""
    return dict(object='list', data=[dict(id=model_id, object='model', created=created,
                                          owned_by='mmllava')])


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    """A ``usage`` object: prompt (image tokens included), completion and total tokens."""
    return dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens)


def completion(model_id: str, answer: str, finish_reason: str, usage: dict) -> dict:
    """A whole ``chat.completion`` body with one choice."""
    return dict(id=f'chatcmpl-{uuid.uuid4().hex}', object='chat.completion',
                created=int(time.time()), model=model_id,
                choices=[dict(index=0, message=dict(role='assistant', content=answer),
                              finish_reason=finish_reason)],
                usage=usage)


class ChunkWriter:
    """The ``chat.completion.chunk`` bodies of one streamed answer, sharing id and time.

    Args:
        model_id (str): The served model.
    """

    def __init__(self, model_id: str):
        self.base = dict(id=f'chatcmpl-{uuid.uuid4().hex}', object='chat.completion.chunk',
                         created=int(time.time()), model=model_id)

    def delta(self, delta: dict, finish_reason: Optional[str] = None) -> dict:
        """A chunk with one choice: ``{'role': ...}`` first, ``{'content': ...}``, ``{}`` last."""
        return dict(self.base, choices=[dict(index=0, delta=delta,
                                             finish_reason=finish_reason)])

    def usage(self, usage: dict) -> dict:
        """The usage chunk after the last one (``stream_options.include_usage``)."""
        return dict(self.base, choices=[], usage=usage)


def sse_event(obj: dict) -> str:
    """A server-sent event carrying a JSON object (the stream ends with :data:`SSE_DONE`)."""
    return f'data: {json.dumps(obj)}\n\n'
