"""tools/serve.py as a client sees it: a server started here, spoken to over real HTTP."""
import argparse
import base64
import http.client
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmllava.apis import get_model
from mmllava.apis.chat import chat, prepare_chat_inputs
from mmllava.engine.checkpoint import save_weights
from mmllava.utils.cli import add_model_arguments

ROOT = Path(__file__).resolve().parents[2]
# A failure's kind, never its message (it may name the server's files).
INTERNAL = 'Internal error (RuntimeError): the server log has the details'
CONFIG = str(ROOT / 'configs/llava/llava-tiny_vqa.py')
SERVE = ROOT / 'tools/serve.py'
MAX_BYTES = 300_000
MAX_PIXELS = 100_000
GEN = dict(max_tokens=8)


def _png(seed: int, size=(64, 64)) -> bytes:
    array = np.random.RandomState(seed).randint(0, 255, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, 'PNG')
    return buf.getvalue()


def _uri(data: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(data).decode()


def _user(*parts) -> dict:
    return dict(messages=[dict(role='user', content=list(parts))], **GEN)


def _image_part(url: str) -> dict:
    return dict(type='image_url', image_url=dict(url=url))


def _text(text: str) -> dict:
    return dict(type='text', text=text)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """The server on the tiny model (seeded weights from a file), and the same model here."""
    tmp = tmp_path_factory.mktemp('serve')
    torch.manual_seed(0)
    model = get_model(CONFIG)
    weights = tmp / 'tiny.safetensors'
    save_weights(model.state_dict(), weights)
    allowed = tmp / 'allowed'
    allowed.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    # No --host: the default must be the loopback address.
    proc = subprocess.Popen(
        [sys.executable, str(SERVE), CONFIG, '--checkpoint', str(weights), '--port', '0',
         '--max-request-bytes', str(MAX_BYTES), '--max-image-pixels', str(MAX_PIXELS),
         '--allowed-local-media', str(allowed)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    banner = None
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith('Serving '):
            banner = line.strip()
            break
    if banner is None:
        proc.kill()
        pytest.fail(f'the server did not start (exit code {proc.poll()})')
    url = banner.rsplit(' ', 1)[-1]
    yield dict(url=url, banner=banner, model=model, allowed=allowed, tmp=tmp)
    proc.terminate()
    proc.wait(timeout=30)


def _request(server, path, body=None, raw: bytes = None, method=None, timeout=60):
    """(status, parsed JSON or raw text) of a request; errors are answers too."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server['url'] + path, data=data, method=method,
                                 headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text, ctype = resp.status, resp.read().decode(), resp.headers['Content-Type']
    except urllib.error.HTTPError as e:
        status, text, ctype = e.code, e.read().decode(), e.headers['Content-Type']
    return status, (json.loads(text) if ctype == 'application/json' else text)


def _expected(server, question: str, *images) -> str:
    content = ''.join('<image>\n' for _ in images) + question
    pil = [Image.open(io.BytesIO(data)) for data in images]
    return chat(server['model'], [dict(role='user', content=content)], images=pil,
                max_new_tokens=GEN['max_tokens'])


def _assert_error(status, body, expected_status, param=None):
    assert status == expected_status, body
    err = body['error']
    assert set(err) == {'message', 'type', 'param', 'code'}
    assert err['type'] == 'invalid_request_error' and err['message']
    if param is not None:
        assert err['param'] == param


def _serve_module():
    """tools/serve.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location('serve_tool', SERVE)
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    return serve


def _external_address():
    """This machine's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(('10.255.255.255', 1))
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith('127.') or address == '0.0.0.0' else address


def test_models_and_loopback_default(server):
    assert server['url'].startswith('http://127.0.0.1:')
    status, body = _request(server, '/models')
    assert status == 200 and body['object'] == 'list'
    assert [m['id'] for m in body['data']] == ['llava-tiny_vqa']
    assert _serve_module().parse_args(['m']).host == '127.0.0.1'
    # Another address of this machine does not reach the server.
    address = _external_address()
    if address is not None:
        port = int(server['url'].rsplit(':', 1)[1].split('/')[0])
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_completion_equals_chat(server):
    image = _png(1)
    status, body = _request(server, '/chat/completions',
                            _user(_image_part(_uri(image)), _text('What is it?')))
    assert status == 200, body
    assert body['object'] == 'chat.completion' and body['model'] == 'llava-tiny_vqa'
    choice = body['choices'][0]
    assert choice['message']['role'] == 'assistant'
    assert choice['message']['content'] == _expected(server, 'What is it?', image)
    assert choice['finish_reason'] in ('stop', 'length')
    prompt = prepare_chat_inputs(server['model'],
                                 [dict(role='user', content='<image>\nWhat is it?')],
                                 [Image.open(io.BytesIO(image))])['inputs']['input_ids']
    usage = body['usage']
    assert usage['prompt_tokens'] == prompt.shape[1]
    assert 0 < usage['completion_tokens'] <= GEN['max_tokens']
    assert usage['total_tokens'] == usage['prompt_tokens'] + usage['completion_tokens']


def test_stream_joins_to_the_same_text(server):
    body = _user(_image_part(_uri(_png(2))), _text('Describe the image.'))
    status, whole = _request(server, '/chat/completions', body)
    assert status == 200
    status, text = _request(server, '/chat/completions',
                            dict(body, stream=True, stream_options=dict(include_usage=True)))
    assert status == 200 and isinstance(text, str)
    events = [e for e in text.split('\n\n') if e]
    assert all(e.startswith('data: ') for e in events)
    assert events[-1] == 'data: [DONE]'
    chunks = [json.loads(e[len('data: '):]) for e in events[:-1]]
    assert all(c['object'] == 'chat.completion.chunk' for c in chunks)
    assert len({c['id'] for c in chunks}) == 1
    deltas = [c['choices'][0]['delta'] for c in chunks if c['choices']]
    assert deltas[0]['role'] == 'assistant'
    pieces = [d.get('content', '') for d in deltas]
    assert ''.join(pieces) == whole['choices'][0]['message']['content']
    assert sum(bool(p) for p in pieces) >= 2  # streamed, not one block
    assert chunks[-2]['choices'][0]['finish_reason'] == whole['choices'][0]['finish_reason']
    assert chunks[-1]['usage'] == whole['usage']


def test_size_bounds_413(server):
    huge = json.dumps(_user(_text('x' * MAX_BYTES))).encode()
    _assert_error(*_request(server, '/chat/completions', raw=huge), 413)
    buf = io.BytesIO()
    Image.new('RGB', (400, 400), (200, 30, 30)).save(buf, 'PNG')  # 160000 pixels, 1 kB
    big_image = buf.getvalue()
    status, body = _request(server, '/chat/completions',
                            _user(_image_part(_uri(big_image)), _text('What is it?')))
    _assert_error(status, body, 413, 'messages[0].content[0].image_url')
    assert _request(server, '/models')[0] == 200


def _bad_requests(server):
    tiny = _uri(_png(4, size=(8, 8)))
    outside = server['tmp'] / 'outside.png'
    outside.write_bytes(_png(5))
    return [
        ('malformed JSON', dict(raw=b'{"messages": [}'), 400, None),
        ('not an object', dict(body=[1, 2]), 400, None),
        ('missing messages', dict(body=dict(max_tokens=4)), 400, 'messages'),
        ('empty messages', dict(body=dict(messages=[])), 400, 'messages'),
        ('unknown role', dict(body=dict(messages=[dict(role='robot', content='hi')])), 400,
         'messages[0].role'),
        ('http url', dict(body=_user(_image_part('http://example.com/a.png'), _text('q'))),
         400, 'messages[0].content[0].image_url'),
        ('undecodable image', dict(body=_user(
            _image_part('data:image/png;base64,' + base64.b64encode(b'not an image').decode()),
            _text('q'))), 400, 'messages[0].content[0].image_url'),
        ('bad base64', dict(body=_user(_image_part('data:image/png;base64,@@@'), _text('q'))),
         400, 'messages[0].content[0].image_url'),
        ('too many images', dict(body=_user(*[_image_part(tiny)] * 40, _text('q'))), 400,
         'messages'),
        ('local file outside the allowed folder', dict(body=_user(
            _image_part(str(server['allowed'] / '..' / 'outside.png')), _text('q'))), 403,
         'messages[0].content[0].image_url'),
        ('bad temperature', dict(body=dict(_user(_text('q')), temperature='hot')), 400,
         'temperature'),
        ('last message not the user', dict(body=dict(messages=[
            dict(role='user', content='hi'), dict(role='assistant', content='hello')])), 400,
         'messages'),
    ]


def test_bad_input_is_4xx_and_the_server_keeps_serving(server):
    for name, request, status, param in _bad_requests(server):
        got, body = _request(server, '/chat/completions', **request)
        assert isinstance(body, dict), (name, body)
        try:
            _assert_error(got, body, status, param)
        except AssertionError as e:
            raise AssertionError(f'{name}: {e}') from e
    # Still serving, and serving right.
    image = _png(6)
    status, body = _request(server, '/chat/completions',
                            _user(_image_part(_uri(image)), _text('What is it?')))
    assert status == 200
    assert body['choices'][0]['message']['content'] == _expected(server, 'What is it?', image)


def test_local_file_under_the_allowed_folder(server):
    image = _png(7)
    path = server['allowed'] / 'seven.png'
    path.write_bytes(image)
    expected = _expected(server, 'What is it?', image)
    for url in (str(path), path.as_uri()):
        status, body = _request(server, '/chat/completions',
                                _user(_image_part(url), _text('What is it?')))
        assert status == 200, body
        assert body['choices'][0]['message']['content'] == expected


def test_sampling(server):
    image = _png(8)
    body = _user(_image_part(_uri(image)), _text('What is it?'))
    sampling = dict(temperature=1.0, top_p=0.95, seed=11)

    def answer(**fields):
        status, out = _request(server, '/chat/completions', dict(body, **fields))
        assert status == 200, out
        assert 0 < out['usage']['completion_tokens'] <= GEN['max_tokens']
        return out['choices'][0]['message']['content']

    sampled = answer(**sampling)
    assert answer(**sampling) == sampled  # seeded: reproducible
    # temperature and top_p reach generate: the same draw as sampling here, which (seeded,
    # so not by chance) is not the greedy answer.
    torch.manual_seed(sampling['seed'])
    here = chat(server['model'], [dict(role='user', content='<image>\nWhat is it?')],
                images=[Image.open(io.BytesIO(image))], max_new_tokens=GEN['max_tokens'],
                do_sample=True, temperature=1.0, top_p=0.95)
    greedy = _expected(server, 'What is it?', image)
    assert sampled == here and sampled != greedy
    # A top_p that keeps only the likeliest token samples the greedy answer.
    assert answer(**dict(sampling, top_p=1e-9)) == greedy


def test_concurrent_requests_are_not_crossed(server):
    # Requests whose answers differ, or a crossing would go unseen (random weights answer
    # alike now and then, so pick them from a few candidates).
    pool = ['What is it?', 'Describe the image.', 'What color is the sky?',
            'How many people are there?', 'Where is this?', 'What is written here?']
    questions, images, expected = [], [], []
    for i, question in enumerate(pool * 2):
        image = _png(10 + i)
        answer = _expected(server, question, image)
        if answer not in expected:
            questions.append(question)
            images.append(image)
            expected.append(answer)
        if len(expected) == 4:
            break
    assert len(expected) >= 3
    results = [None] * len(questions)

    def ask(i):
        body = _user(_image_part(_uri(images[i])), _text(questions[i]))
        stream = i % 2 == 1  # mix whole answers and streams
        status, out = _request(server, '/chat/completions', dict(body, stream=stream))
        if stream:
            chunks = [json.loads(e[6:]) for e in out.split('\n\n') if e and e != 'data: [DONE]']
            results[i] = ''.join(c['choices'][0]['delta'].get('content', '') for c in chunks)
        else:
            results[i] = out['choices'][0]['message']['content']

    for _ in range(2):
        threads = [threading.Thread(target=ask, args=(i, )) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert results == expected


def test_help_imports_nothing_heavy_and_has_the_demos_model_options():
    run = subprocess.run([sys.executable, '-X', 'importtime', str(SERVE), '--help'],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and '--allowed-local-media' in run.stdout
    imported = {line.rsplit('|', 1)[-1].strip() for line in run.stderr.splitlines()}
    assert not imported & {'torch', 'fastapi', 'mmengine', 'mmpretrain', 'transformers'}
    # The model options are the demos' own (mmllava.utils.cli), not a copy.
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    options = [a.option_strings[0] for a in parser._actions[1:] if a.option_strings]
    assert options and all(option in run.stdout for option in options)


def _connect(server) -> http.client.HTTPConnection:
    host, port = server['url'].split('//')[1].split('/')[0].rsplit(':', 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _raw(server, method, path, body=b'', headers=None, conn=None):
    """(status, headers, JSON) of ``method /path``; ``conn`` reuses a keep-alive connection."""
    conn = conn or _connect(server)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    if body:
        conn.send(body)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.headers, (json.loads(data) if data else None), conn


def _raw_status(server, request: bytes) -> int:
    """The status of a hand-written request (headers as no client library would send)."""
    host, port = server['url'].split('//')[1].split('/')[0].rsplit(':', 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b''
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b' ', 2)[1])


def test_http_edges(server):
    chat_path = '/v1/chat/completions'
    # A chunked body is read up to the bound: this one is read, and is not JSON.
    status, headers, body, _ = _raw(server, 'POST', chat_path, b'5\r\n{"a":\r\n0\r\n\r\n',
                                    {'Transfer-Encoding': 'chunked'})
    _assert_error(status, body, 400)
    assert body['error']['code'] == 'invalid_json'
    chunk = b' ' * 65536
    many = (b'%x\r\n' % len(chunk) + chunk + b'\r\n') * (MAX_BYTES // len(chunk) + 2)
    status, headers, body, _ = _raw(server, 'POST', chat_path, many + b'0\r\n\r\n',
                                    {'Transfer-Encoding': 'chunked'})
    _assert_error(status, body, 413)
    assert body['error']['code'] == 'request_too_large' and headers['Connection'] == 'close'
    status, _, body, _ = _raw(server, 'POST', chat_path)  # no Content-Length
    _assert_error(status, body, 411)
    assert body['error']['message'] == 'Send a Content-Length (or a chunked body)'
    for length in ('-1', 'abc', '1e3', '+5'):  # read no body: a 400, whoever answers it
        assert _raw_status(server, f'POST {chat_path} HTTP/1.1\r\nHost: x\r\n'
                           f'Content-Length: {length}\r\n\r\n{{}}'.encode()) == 400, length
    huge = b'{' + b' ' * MAX_BYTES + b'}'
    status, headers, body, _ = _raw(server, 'POST', chat_path, huge,
                                    {'Content-Length': str(len(huge))})
    _assert_error(status, body, 413)
    assert body['error']['code'] == 'request_too_large' and headers['Connection'] == 'close'
    # Unknown routes are 404 in OpenAI's format; the connection stays usable.
    status, _, body, conn = _raw(server, 'POST', '/v1/nothing', b'{}', {'Content-Length': '2'})
    _assert_error(status, body, 404)
    assert (body['error']['message'], body['error']['code']) == ('No route POST /v1/nothing',
                                                                 'not_found')
    status, _, body, _ = _raw(server, 'GET', '/v1/models/', conn=conn)  # a trailing slash too
    assert status == 200 and body['data'][0]['id'] == 'llava-tiny_vqa'
    status, _, body, _ = _raw(server, 'GET', chat_path)
    _assert_error(status, body, 404)
    assert body['error']['message'] == 'No route GET /v1/chat/completions'
    _assert_error(*_raw(server, 'PUT', '/v1/models')[:3:2], 405)
    for path in ('/health', '/v1/health'):
        assert _raw(server, 'GET', path)[::2] == (200, dict(status='ok'))
    status, body = _request(server, '/chat/completions', dict(_user(_text('hi')), model='gpt-4'))
    _assert_error(status, body, 404, 'model')
    assert body['error']['code'] == 'model_not_found'

