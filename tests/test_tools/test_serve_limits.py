"""tools/serve.py against slow, lying and greedy clients (loopback, a server in this process
with short timeouts): 408 for late headers and bodies, 429 with Retry-After past the queue,
413 for clips, 400 for what the body says wrongly, and a client's leaving ends its work."""
import base64
import importlib.util
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_llava import serving_in_thread

from mmllava.apis import get_model

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / 'configs/llava/llava-tiny_vqa.py')
TIMEOUT = 1.0  # the server's header and body timeouts here
CHAT_OPEN = b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n'
CHAT = CHAT_OPEN + b'Connection: close\r\n'


def _serve_module():
    spec = importlib.util.spec_from_file_location('serve', ROOT / 'tools' / 'serve.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def live():
    serve = _serve_module()
    torch.manual_seed(0)
    model = get_model(CONFIG)
    # One request at a time (max_batch=1): the tests hold the model through its generate.
    srv = serve.build_server(model, 'tiny', port=0, log_level='warning', max_pending=2,
                             max_batch=1, header_timeout=TIMEOUT, body_timeout=TIMEOUT,
                             media_limits=dict(max_frame_pixels=32 * 32))
    with serving_in_thread(srv):
        yield dict(address=srv.server_address, model=model, service=srv.app.state.service,
                   app=srv.app, serve=serve)


def _send(live, data: bytes, wait=30.0):
    """Send raw bytes (a request that asks to close the connection after its reply); returns
    (status, headers text, body bytes) of the reply, or None."""
    with socket.create_connection(live['address'], timeout=wait) as sock:
        sock.sendall(data)
        reply = b''
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
    if not reply:
        return None
    head, _, body = reply.partition(b'\r\n\r\n')
    return int(head.split(b' ', 2)[1]), head.decode('latin-1'), body


def _post(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json'
            b'\r\nConnection: close\r\nContent-Length: %d\r\n\r\n' % len(data)) + data


def _error(reply) -> dict:
    return json.loads(reply[2])['error']


def test_late_headers_and_bodies_are_408(live):
    start = time.monotonic()
    status, _, _ = _send(live, CHAT_OPEN)
    assert status == 408 and TIMEOUT <= time.monotonic() - start < TIMEOUT + 5
    start = time.monotonic()
    reply = _send(live, CHAT
                  + b'Content-Length: 100\r\n\r\n{"messages": ')
    assert reply[0] == 408 and _error(reply)['code'] == 'request_timeout'
    assert time.monotonic() - start < TIMEOUT + 5
    # Many slow clients at once do not hold the server: all are cut, it still answers.
    socks = [socket.create_connection(live['address']) for _ in range(20)]
    for sock in socks:
        sock.sendall(b'GET /health HTTP/1.1\r\n')  # and nothing more
    time.sleep(TIMEOUT + 0.5)
    for sock in socks:
        sock.settimeout(5)
        assert sock.recv(100).startswith(b'HTTP/1.1 408')
        sock.close()
    assert _send(live, b'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')[0] == 200


def test_bodies_that_lie_or_nest_are_400(live):
    for body in (b'[' * 50_000 + b']' * 50_000, b'{"messages": "hi", "stream": "false"}',
                 b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}'):
        reply = _send(live, CHAT
                      + b'Content-Length: %d\r\n\r\n' % len(body) + body)
        assert reply[0] == 400, reply
    assert _send(live, CHAT
                 + b'Content-Length: -1\r\n\r\n{}')[0] == 400


def test_a_clip_too_large_to_decode_is_413(live, tmp_path):
    from mmllava.utils.video_io import write_mp4
    write_mp4(str(tmp_path / 'c.mp4'), np.zeros((4, 64, 64, 3), np.uint8))  # frames > 32x32
    clip = 'data:video/mp4;base64,' + base64.b64encode((tmp_path / 'c.mp4').read_bytes()).decode()
    reply = _send(live, _post(dict(messages=[dict(role='user', content=[
        dict(type='video_url', video_url=dict(url=clip)), dict(type='text', text='What?')])])))
    assert reply[0] == 413 and _error(reply)['code'] == 'video_too_large'
    assert _error(reply)['param'] == 'messages[0].content[0].video_url'


def _blocked_generate(live, monkeypatch):
    """Make generate wait for ``release``; ``entered`` is set once it runs."""
    entered, release = threading.Event(), threading.Event()
    real = live['model'].generate

    def blocked(*args, **kwargs):
        entered.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(live['model'], 'generate', blocked)
    return entered, release


def test_past_the_queue_is_429_and_a_leaver_frees_its_place(live, monkeypatch):
    entered, release = _blocked_generate(live, monkeypatch)
    ask = _post(dict(messages=[dict(role='user', content='hi')], max_tokens=2))
    first = []
    asker = threading.Thread(target=lambda: first.append(_send(live, ask)))
    asker.start()
    assert entered.wait(30)
    # A second request waits for the model; its client gives up: the place is freed.
    waiting = socket.create_connection(live['address'])
    waiting.sendall(ask)
    deadline = time.monotonic() + 10
    while live['app'].state.pending < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live['app'].state.pending == 2
    reply = _send(live, ask)  # the third: past max_pending=2
    assert reply[0] == 429 and 'Retry-After: ' in reply[1].replace('retry-after', 'Retry-After')
    assert _error(reply)['code'] == 'server_busy'
    waiting.close()
    deadline = time.monotonic() + 10
    while live['app'].state.pending > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live['app'].state.pending == 1  # the leaver's wait ended without an answer
    release.set()
    asker.join(60)
    assert first[0][0] == 200
    assert live['app'].state.pending == 0 and not live['service'].lock.locked()


def test_a_long_text_does_not_wait_for_the_model(live, monkeypatch):
    entered, release = _blocked_generate(live, monkeypatch)
    first = []
    asker = threading.Thread(target=lambda: first.append(_send(live, _post(dict(
        messages=[dict(role='user', content='hi')], max_tokens=2)))))
    asker.start()
    assert entered.wait(30)
    try:
        start = time.monotonic()
        reply = _send(live, _post(dict(messages=[dict(role='user', content='x' * 2_000_000)])))
        assert reply[0] == 400 and _error(reply)['code'] == 'context_length_exceeded'
        assert 'truncate' not in _error(reply)['message']
        assert time.monotonic() - start < 5 and live['service'].lock.locked()
    finally:
        release.set()
        asker.join(60)
    assert first[0][0] == 200


def test_command_line_defaults_are_the_resolvers(live):
    from mmllava.apis import openai_media
    args = live['serve'].parse_args(['tiny'])
    for name in ('max_image_pixels', 'max_clip_bytes', 'max_clip_frames', 'max_frame_pixels',
                 'max_decode_pixels'):
        assert getattr(args, name) == getattr(openai_media, name.upper()), name
