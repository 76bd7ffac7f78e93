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
otherwise. One answer is generated at a time (requests queue on a lock), so each response is
its own request's; the generation runs in worker threads, so the server keeps answering (e.g.
``/v1/models``) meanwhile, and a client that leaves a stream stops its generation.

This file is the HTTP layer only (FastAPI on uvicorn; ``pip install -e ".[serve]"``): the
protocol is :mod:`mmllava.apis.openai_protocol`, the answers
:class:`mmllava.apis.openai_service.ChatCompletionService`'s, that is :func:`mmllava.apis.chat`'s.
"""
import argparse
import logging
import socket
from pathlib import Path
from typing import List, Optional

MAX_REQUEST_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
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


def build_app(service, max_request_bytes: int = MAX_REQUEST_BYTES):
    """The FastAPI app in front of a :class:`ChatCompletionService`.

    Blocking work (reading images, generating) runs in worker threads, never on the event
    loop, so requests that need no model are answered while a generation runs.

    Args:
        service: A :class:`mmllava.apis.openai_service.ChatCompletionService`
            (``app.state.service``).
        max_request_bytes (int): Larger request bodies are answered 413 unread.
    """
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    from mmllava.apis.openai_protocol import SSE_DONE, APIError, parse_json_body, sse_event

    app = FastAPI(title='mmllava', docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)  # no docs pages: they would load scripts online
    app.state.service = service
    app.add_middleware(_StripTrailingSlash)

    def error(err: APIError, close: bool = False) -> JSONResponse:
        # close: the body was left unread, so the connection cannot carry another request.
        headers = {'Connection': 'close'} if close else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    async def read_body(request: Request) -> bytes:
        """The body, if it is sent with a Content-Length within the bound."""
        if request.headers.get('transfer-encoding', '').lower() == 'chunked':
            raise APIError(411, 'Send a Content-Length (chunked bodies are not accepted)')
        try:
            length = int(request.headers.get('content-length', ''))
        except ValueError:
            raise APIError(411, 'Content-Length is required')
        if length > max_request_bytes:
            raise APIError(413, f'The request body is {length} bytes, more than the '
                           f'{max_request_bytes} this server accepts (--max-request-bytes)',
                           code='request_too_large')
        return await request.body()

    class EventStream(StreamingResponse):
        """Server-sent events of a service stream's bodies, ending with ``data: [DONE]``.

        The stream is closed however the response ends (done, client gone, error), which
        releases the model's lock and stops a generation nobody reads.
        """

        def __init__(self, first: dict, events):
            self.events = events
            super().__init__(self._body(first), media_type='text/event-stream',
                             headers={'Cache-Control': 'no-cache'})

        async def _body(self, first: dict):
            yield sse_event(first)
            while (event := await run_in_threadpool(next, self.events, None)) is not None:
                yield sse_event(event)
            yield SSE_DONE

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                with anyio.CancelScope(shield=True):  # runs even when cancelled
                    await run_in_threadpool(self.events.close)

    async def answer(chat_request):
        if not chat_request.stream:
            return JSONResponse(await run_in_threadpool(service.complete, chat_request))
        events = service.stream(chat_request)
        # The first body comes once the lock is held and the answer started: a refused
        # conversation still gets its status and a JSON error.
        first = await run_in_threadpool(next, events)
        return EventStream(first, events)

    @app.get('/v1/models')
    async def models():
        return JSONResponse(service.models())

    @app.get('/health')
    @app.get('/v1/health')
    async def health():
        return JSONResponse(dict(status='ok'))

    @app.post('/v1/chat/completions')
    async def chat_completions(request: Request):
        try:
            raw = await read_body(request)
        except APIError as err:
            return error(err, close=True)
        try:
            # JSON and images of up to --max-request-bytes: decoded off the event loop too.
            chat_request = await run_in_threadpool(lambda: service.parse(parse_json_body(raw)))
            return await answer(chat_request)
        except APIError as err:
            return error(err)
        except Exception as e:  # the server keeps serving; the client learns what happened
            logger.exception('error while answering')
            return error(APIError.internal(e))

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
        return error(APIError(404, f'No route {method} /{path}', code='not_found'))

    return app


class LlavaServer:
    """uvicorn serving an app on a socket bound (and listening) when this is made.

    Binding first gives the real port before serving (``port=0``: any free port), and
    requests that arrive before :meth:`serve_forever` wait in the backlog.

    Args:
        app: The ASGI app (:func:`build_app`).
        host (str): The address to bind.
        port (int): The port.
        log_level (str): uvicorn's log level (``info`` logs one line per request).
    """

    def __init__(self, app, host: str = '127.0.0.1', port: int = 8000,
                 log_level: str = 'info'):
        import uvicorn

        self.app = app
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family)
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, lifespan='off', server_header=False,
                                headers=[('server', 'mmllava-serve')],
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        self.uvicorn = uvicorn.Server(config)

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
                 max_image_pixels: int = MAX_IMAGE_PIXELS,
                 allowed_local_media: Optional[str] = None,
                 log_level: str = 'info') -> LlavaServer:
    """Bind a server for a model (``serve_forever()`` runs it; port 0 picks a free port).

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists.
        host (str): The address to bind (127.0.0.1: this machine only).
        port (int): The port.
        max_request_bytes (int): Larger request bodies are answered 413 unread.
        max_image_pixels (int): Larger images are answered 413 undecoded.
        allowed_local_media (str, optional): The folder local paths may be read from.
        log_level (str): uvicorn's log level.
    """
    from mmllava.apis.openai_media import MediaResolver
    from mmllava.apis.openai_service import ChatCompletionService

    media = MediaResolver(allowed_local_media, max_image_pixels)
    app = build_app(ChatCompletionService(model, model_id, media), max_request_bytes)
    return LlavaServer(app, host, port, log_level)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line: MODEL and the load options, then the server's bind and bounds."""
    from mmllava.utils.cli import add_model_arguments, make_parser
    parser = make_parser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=8000, help='port (0: any free port)')
    parser.add_argument('--max-request-bytes', type=int, default=MAX_REQUEST_BYTES,
                        help='larger request bodies are refused with 413 (default 20 MiB)')
    parser.add_argument('--max-image-pixels', type=int, default=MAX_IMAGE_PIXELS,
                        help='images with more pixels are refused with 413')
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

    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit)
    model_id = args.model_id or (args.model if ModelHub.has(args.model) else Path(args.model).stem)
    server = build_server(model, model_id, args.host, args.port, args.max_request_bytes,
                          args.max_image_pixels, args.allowed_local_media)
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
