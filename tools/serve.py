"""Serve a LLaVA with an OpenAI-compatible API (chat completions, streaming, images and clips).

Example::

    python tools/serve.py llava-7b-v1.5_vqa --port 8000
    python tools/serve.py configs/llava/llava-tiny_vqa.py --checkpoint work_dirs/tiny/w.safetensors

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{
      "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}},
        {"type": "text", "text": "What is the person doing?"}]}],
      "max_tokens": 64, "stream": false}'

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health``. Images come
as data URIs (``image_url`` parts), clips as ``video_url`` parts (data URIs or local files); a
part's placeholder goes where the part is, so ``[image, text]`` gives LLaVA's
``<image>\\nquestion``. The server is offline: http(s) URLs are refused, and local files are
read only under ``--allowed-local-media``. It binds to 127.0.0.1 unless ``--host`` says
otherwise. Requests are decoded together (``--max-batch``, continuous batching: each joins the
running batch at a step boundary and leaves when done, its answer as if alone), off the event
loop, so the server keeps answering meanwhile; a client that leaves stops its request's work.

Bounds, each answered in the OpenAI error format: bodies (``--max-request-bytes``, chunked
ones too: 413; a malformed Content-Length: 400), images and clips measured before decoding
(pixels, clip bytes, frames, frame size, and a request's total decoded pixels: 413), headers
and bodies that arrive too slowly (``--header-timeout``, ``--body-timeout``: 408), a text too
long for the context (400 ``context_length_exceeded``, before any visual is read), requests
under way (``--max-pending``: 429 with Retry-After) and a request's time
(``--request-timeout``). Visuals are decoded and prompts tokenized in ``--prepare-workers``
threads, beside the generation.

This file is the HTTP layer only (FastAPI on uvicorn; ``pip install -e ".[serve]"``): the
protocol is :mod:`mmllava.apis.openai_protocol`, the answers :func:`mmllava.apis.chat`'s.
"""
import argparse
import logging
import socket
from pathlib import Path
from typing import List, Optional

MAX_REQUEST_BYTES = 20 * 2**20
MAX_PENDING = 16  # chat requests admitted at once (parsing, waiting or generating)
MAX_BATCH = 8  # requests decoded together (continuous batching)
PREPARE_WORKERS = 2  # threads that decode visuals and tokenize, beside the one generating
HEADER_TIMEOUT_S = BODY_TIMEOUT_S = 30.0  # seconds a request's headers, its body may take
DISCONNECT_POLL_S = 0.02  # how often a request under way checks that its client is there
REQUEST_TIMEOUT_S = 600.0
RETRY_AFTER_S, BACKLOG = 5, 1024
GRACEFUL_SHUTDOWN_S = 5  # open streams get this long to end when the server stops

logger = logging.getLogger('mmllava.serve')


class _StripTrailingSlash:
    """ASGI middleware: ``/v1/models/`` is ``/v1/models`` (answered, not redirected)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope['type'] == 'http' and scope['path'] != '/':
            scope = dict(scope, path=scope['path'].rstrip('/') or '/')
        await self.app(scope, receive, send)


def build_app(service, max_request_bytes: int = MAX_REQUEST_BYTES,
              max_pending: int = MAX_PENDING, prepare_workers: int = PREPARE_WORKERS,
              body_timeout: float = BODY_TIMEOUT_S):
    """The FastAPI app in front of a :class:`ChatCompletionService`.

    Blocking work runs in worker threads, never on the event loop, so requests that need no
    model are answered while a generation runs: reading a body's JSON and visuals, decoding
    clips and tokenizing in a pool of ``prepare_workers`` threads (outside the model's lock),
    generating in another. At most ``max_pending`` chat requests are admitted at once; more
    are answered 429 with ``Retry-After``. A client that leaves ends its request's work.

    Args:
        service: A :class:`mmllava.apis.openai_service.ChatCompletionService`
            (``app.state.service``).
        max_request_bytes (int): Larger request bodies are answered 413 (unread when their
            Content-Length says so; chunked ones once they pass it).
        max_pending (int): Chat requests admitted at once.
        prepare_workers (int): Threads for parsing, decoding and tokenizing.
        body_timeout (float): Seconds a body may take to arrive (408 after).
    """
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    from mmllava.apis.openai_protocol import SSE_DONE, APIError, parse_json_body, sse_event

    app = FastAPI(title='mmllava', docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)  # no docs pages: they would load scripts online
    app.state.service = service
    app.state.pending = 0
    app.add_middleware(_StripTrailingSlash)
    prepare_limiter = anyio.CapacityLimiter(prepare_workers)

    def error(err: APIError, close: bool = False) -> JSONResponse:
        # close: the body was left unread, so the connection cannot carry another request.
        headers = {'Connection': 'close'} if close else {}
        if err.status in (429, 503):
            headers['Retry-After'] = str(RETRY_AFTER_S)
        return JSONResponse(err.body(), status_code=err.status, headers=headers or None)

    def too_large(length) -> APIError:
        return APIError(413, f'The request body is {length} bytes, more than the '
                        f'{max_request_bytes} this server accepts (--max-request-bytes)',
                        code='request_too_large')

    async def read_body(request: Request) -> bytes:
        """The body: up to a valid Content-Length within the bound, or chunks up to the bound,
        arriving within ``body_timeout``."""
        declared = request.headers.get('content-length')
        chunked = 'chunked' in request.headers.get('transfer-encoding', '').lower()
        if declared is not None:
            if not declared.isascii() or not declared.isdigit():
                raise APIError(400, f'Content-Length must be a number of bytes, got '
                               f'{declared[:40]!r}', code='invalid_content_length')
            if int(declared) > max_request_bytes:
                raise too_large(int(declared))
        elif not chunked:
            raise APIError(411, 'Send a Content-Length (or a chunked body)',
                           code='length_required')
        parts, size = [], 0
        try:
            with anyio.fail_after(body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_request_bytes:
                        raise too_large(f'over {size}')
                    parts.append(chunk)
        except TimeoutError:
            raise APIError(408, f'The body did not arrive within {body_timeout:g} s',
                           code='request_timeout')
        return b''.join(parts)

    async def watch_disconnect(request: Request, chat_request) -> None:
        """Cancel the request's work once its client is gone."""
        while not chat_request.cancelled():
            if await request.is_disconnected():
                chat_request.cancel()
                return
            await anyio.sleep(DISCONNECT_POLL_S)

    async def watched(request: Request, chat_request, run):
        """Await ``run()``; the client leaving meanwhile cancels the request."""
        outcome = {}
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_disconnect, request, chat_request)
            try:
                outcome['result'] = await run()
            except Exception as e:  # raised below, as itself (not in an ExceptionGroup)
                outcome['error'] = e
            finally:
                tasks.cancel_scope.cancel()
        if 'error' in outcome:
            raise outcome['error']
        return outcome['result']

    async def until_done(request: Request, chat_request, work, *args):
        """Run blocking ``work`` in a thread; the client leaving cancels the request."""
        return await watched(request, chat_request, lambda: run_in_threadpool(work, *args))

    class EventStream(StreamingResponse):
        """Server-sent events of a service stream's bodies, ending with ``data: [DONE]``.

        The stream is closed however the response ends (done, client gone, error), which
        releases the model's lock and stops a generation nobody reads.
        """

        def __init__(self, first: dict, events, on_close, request: Request, chat_request):
            self.events = events
            self.on_close = on_close
            self.request, self.chat_request = request, chat_request
            super().__init__(self._body(first), media_type='text/event-stream',
                             headers={'Cache-Control': 'no-cache'})

        async def _body(self, first: dict):
            yield sse_event(first)
            while (event := await run_in_threadpool(next, self.events, None)) is not None:
                yield sse_event(event)
            yield SSE_DONE

        async def __call__(self, scope, receive, send):
            send_all = super().__call__
            try:  # a send to a client that left may not fail (uvicorn drops it): watch
                await watched(self.request, self.chat_request,
                              lambda: send_all(scope, receive, send))
            finally:
                with anyio.CancelScope(shield=True):  # runs even when cancelled
                    await run_in_threadpool(self.events.close)
                    self.on_close()

    def release():
        app.state.pending -= 1

    @app.get('/v1/models')
    async def models():
        return JSONResponse(service.models())

    @app.get('/health')
    @app.get('/v1/health')
    async def health():
        return JSONResponse(dict(status='ok'))

    @app.post('/v1/chat/completions')
    async def chat_completions(request: Request):
        if app.state.pending >= max_pending:
            return error(APIError(429, f'The server is busy ({max_pending} requests under '
                                  'way): retry later', code='server_busy',
                                  error_type='server_error'), close=True)
        app.state.pending += 1
        streaming = False
        try:
            try:
                raw = await read_body(request)
            except APIError as err:
                return error(err, close=True)

            def parse_and_prepare():
                # The JSON, the visuals, the context check and the tokenization: no lock.
                chat_request = service.parse(parse_json_body(raw))
                if not chat_request.stream:  # a stream prepares at its first body
                    service.prepare(chat_request)
                return chat_request

            chat_request = await anyio.to_thread.run_sync(parse_and_prepare,
                                                          limiter=prepare_limiter)
            if not chat_request.stream:
                body = await until_done(request, chat_request, service.complete, chat_request)
                return JSONResponse(body)
            events = service.stream(chat_request)
            # The first body comes once prepared, the lock held and the answer started: a
            # refused conversation still gets its status and a JSON error.
            try:
                first = await until_done(request, chat_request, next, events)
            except BaseException:
                events.close()
                raise
            streaming = True
            return EventStream(first, events, release, request, chat_request)
        except APIError as err:
            return error(err)
        except ClientDisconnect:  # gone while its body was read: nothing to answer, or log
            return Response(status_code=499)
        except Exception as e:  # the server keeps serving; the client learns what happened
            logger.exception('error while answering')
            return error(APIError.internal(e))
        finally:
            if not streaming:
                release()

    @app.api_route('/{path:path}', methods=['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD',
                                            'OPTIONS'])
    async def no_route(request: Request, path: str):
        method = request.method
        if method not in ('GET', 'POST'):
            return error(APIError(405, f'Method {method} is not allowed: use GET or POST',
                                  code='method_not_allowed'))
        if method == 'POST':
            try:
                await read_body(request)  # read anyway, so the connection stays usable
            except APIError as err:
                return error(err, close=True)
            except ClientDisconnect:
                return Response(status_code=499)
        return error(APIError(404, f'No route {method} /{path}', code='not_found'))

    return app


def header_timeout_protocol(header_timeout: float):
    """uvicorn's h11 protocol with a limit on how long a request's headers take to arrive.

    uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not a client
    that sends its headers a byte at a time; this one answers 408 and closes the connection
    when the headers are not complete ``header_timeout`` seconds after the connection opened
    or the previous response ended.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            timer = getattr(self, '_header_timer', None)
            if timer is not None:
                timer.cancel()
            self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(b'HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n'
                                     b'Connection: close\r\n\r\n')
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get as long

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class _QuietDisconnects(logging.Filter):
    """Drops the log records of clients that leave mid-response: that is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (BrokenPipeError, ConnectionResetError))


class LlavaServer:
    """uvicorn serving an app on a socket bound (and listening) when this is made.

    Binding first gives the real port before serving (``port=0``: any free port), and
    requests that arrive before :meth:`serve_forever` wait in the backlog.

    Args:
        app: The ASGI app (:func:`build_app`).
        host (str): The address to bind.
        port (int): The port.
        log_level (str): uvicorn's log level (``info`` logs one line per request).
        header_timeout (float): Seconds a request's headers may take (408 after).
    """

    def __init__(self, app, host: str = '127.0.0.1', port: int = 8000,
                 log_level: str = 'info', header_timeout: float = HEADER_TIMEOUT_S):
        import uvicorn

        self.app = app
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, lifespan='off', server_header=False,
                                headers=[('server', 'mmllava-serve')], backlog=BACKLOG,
                                http=header_timeout_protocol(header_timeout),
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        self.uvicorn = uvicorn.Server(config)
        for name in ('uvicorn.error', 'asyncio'):
            logging.getLogger(name).addFilter(_QuietDisconnects())

    @property
    def url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        host, port = self.server_address
        return f'http://{f"[{host}]" if ":" in host else host}:{port}/v1'

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or SIGINT / SIGTERM in the main thread)."""
        self.uvicorn.run(sockets=[self.socket])

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to return (from another thread)."""
        self.uvicorn.should_exit = True

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()


def build_server(model, model_id: str, host: str = '127.0.0.1', port: int = 8000,
                 max_request_bytes: int = MAX_REQUEST_BYTES,
                 max_image_pixels: Optional[int] = None,
                 allowed_local_media: Optional[str] = None,
                 log_level: str = 'info', media_limits: Optional[dict] = None,
                 max_pending: int = MAX_PENDING, prepare_workers: int = PREPARE_WORKERS,
                 header_timeout: float = HEADER_TIMEOUT_S,
                 body_timeout: float = BODY_TIMEOUT_S,
                 request_timeout: Optional[float] = REQUEST_TIMEOUT_S,
                 max_batch: int = MAX_BATCH) -> LlavaServer:
    """Bind a server for a model (``serve_forever()`` runs it; port 0 picks a free port).

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists.
        host (str): The address to bind (127.0.0.1: this machine only).
        port (int): The port.
        max_request_bytes (int): Larger request bodies are answered 413.
        max_image_pixels (int, optional): Larger images are answered 413 undecoded.
        allowed_local_media (str, optional): The folder local paths may be read from.
        log_level (str): uvicorn's log level.
        media_limits (dict, optional): More :class:`~mmllava.apis.openai_media.MediaResolver`
            limits (``max_clip_bytes``, ``max_clip_frames``, ``max_frame_pixels``,
            ``max_decode_pixels``).
        max_pending (int): Chat requests admitted at once (429 past it).
        prepare_workers (int): Threads decoding visuals and tokenizing.
        header_timeout (float): Seconds a request's headers may take (408 after).
        body_timeout (float): Seconds a request's body may take (408 after).
        request_timeout (float, optional): Seconds from a request's parsing to its last token.
        max_batch (int): Requests decoded together (continuous batching; 1: one at a time).
    """
    from mmllava.apis.openai_media import MediaResolver
    from mmllava.apis.openai_service import ChatCompletionService

    limits = dict(media_limits or {})
    if max_image_pixels is not None:
        limits['max_image_pixels'] = max_image_pixels
    media = MediaResolver(allowed_local_media, **limits)
    service = ChatCompletionService(model, model_id, media, request_timeout=request_timeout,
                                    max_batch=max_batch, max_queue=max_pending)
    app = build_app(service, max_request_bytes, max_pending, prepare_workers, body_timeout)
    return LlavaServer(app, host, port, log_level, header_timeout)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line: MODEL and the load options, then the server's bind and bounds."""
    from mmllava.utils.cli import add_model_arguments, make_parser
    parser = make_parser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (default '
                        '127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=8000, help='port (0: any free port)')
    parser.add_argument('--max-request-bytes', type=int, default=MAX_REQUEST_BYTES,
                        help='larger request bodies are refused with 413 (default 20 MiB)')
    # Defaults of mmllava.apis.openai_media, written out so that --help imports nothing
    # heavy (tests/test_tools/test_serve.py checks that they agree).
    for flag, default, what in (
            ('--max-image-pixels', 4096 * 4096, 'images with more pixels'),
            ('--max-clip-bytes', 20 * 2**20, 'larger clip files'),
            ('--max-clip-frames', 3000, 'clips with more frames'),
            ('--max-frame-pixels', 3840 * 2160, 'clips with larger frames'),
            ('--max-decode-pixels', 2**31, 'requests whose images and clip frames hold more '
             'pixels in all')):
        parser.add_argument(flag, type=int, default=default,
                            help=f'{what} are refused with 413 (default {default})')
    parser.add_argument('--max-pending', type=int, default=MAX_PENDING,
                        help='chat requests under way at once; more are answered 429 with '
                        f'Retry-After (default {MAX_PENDING})')
    parser.add_argument('--max-batch', type=int, default=MAX_BATCH, help='requests decoded '
                        f'together (continuous batching; 1: one at a time; default {MAX_BATCH})')
    parser.add_argument('--prepare-workers', type=int, default=PREPARE_WORKERS, help='threads '
                        f'that decode visuals and tokenize (default {PREPARE_WORKERS})')
    parser.add_argument('--header-timeout', type=float, default=HEADER_TIMEOUT_S, help='seconds '
                        f'a request\'s headers may take (default {HEADER_TIMEOUT_S:g})')
    parser.add_argument('--body-timeout', type=float, default=BODY_TIMEOUT_S, help='seconds '
                        f'a request\'s body may take (default {BODY_TIMEOUT_S:g})')
    parser.add_argument('--request-timeout', type=float, default=REQUEST_TIMEOUT_S,
                        help='seconds from a request\'s arrival to its last token: waiting past '
                        'it answers 503, generating past it ends the answer (finish_reason '
                        f'"length"; default {REQUEST_TIMEOUT_S:g})')
    parser.add_argument('--allowed-local-media', default=None, metavar='DIR',
                        help='read local image / clip paths (and file:// URLs) under DIR '
                        '(default: none are read)')
    parser.add_argument('--model-id', default=None,
                        help='the name /v1/models lists (default: the zoo name or the config '
                        'file name)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Load the model, bind, print ``Serving MODEL_ID on URL`` and serve until stopped."""
    args = parse_args(argv)
    from mmllava.apis import ModelHub, load_model

    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit,
                          decoder=args.decoder, decode_dtype=args.decode_dtype)
    model_id = args.model_id or (args.model if ModelHub.has(args.model) else Path(args.model).stem)
    limits = dict(max_clip_bytes=args.max_clip_bytes, max_clip_frames=args.max_clip_frames,
                  max_frame_pixels=args.max_frame_pixels,
                  max_decode_pixels=args.max_decode_pixels)
    server = build_server(model, model_id, args.host, args.port, args.max_request_bytes,
                          args.max_image_pixels, args.allowed_local_media, media_limits=limits,
                          max_pending=args.max_pending, prepare_workers=args.prepare_workers,
                          header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                          request_timeout=args.request_timeout, max_batch=args.max_batch)
    print(f'Serving {model_id} on {server.url}', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
