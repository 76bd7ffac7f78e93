"""tools/serve.py one request at a time (``--max-batch 1``, and the path for models our
decoder does not run): the model behind a lock, tested with its generate replaced (blocked,
slowed, broken) in a server run in this process."""
import json
import socket
import threading
import time

import pytest
from fixtures_llava import serving_in_thread
from test_serve import (
    INTERNAL,
    _connect,
    _image_part,
    _png,
    _request,
    _serve_module,
    _text,
    _uri,
    _user,
    server,  # noqa: F401 (the fixture)
)


@pytest.fixture
def live(server):  # noqa: F811
    """The server in this process (uvicorn in a thread): a test may slow or break generate.
    One request at a time (``max_batch=1``): generate is what these tests replace."""
    serve = _serve_module()
    srv = serve.build_server(server['model'], 'llava-tiny_vqa', port=0, log_level='warning',
                             max_batch=1)
    with serving_in_thread(srv):
        yield dict(server, url=srv.url, service=srv.app.state.service)


def test_models_answer_while_a_generation_runs(live, monkeypatch):
    model, service = live['model'], live['service']
    entered, release = threading.Event(), threading.Event()
    real = model.generate

    def blocked(*args, **kwargs):
        entered.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, 'generate', blocked)
    body = _user(_image_part(_uri(_png(3))), _text('What is it?'))
    for stream in (False, True):
        entered.clear()
        release.clear()
        result = []
        asker = threading.Thread(target=lambda: result.append(
            _request(live, '/chat/completions', dict(body, stream=stream))))
        asker.start()
        assert entered.wait(30)
        # The event loop is free: these are answered while generate is blocked.
        status, models = _request(live, '/models', timeout=5)
        assert status == 200 and models['data'][0]['id'] == 'llava-tiny_vqa'
        assert _request(live, '/health', timeout=5) == (200, dict(status='ok'))
        assert service.lock.locked() and asker.is_alive()
        release.set()
        asker.join(60)
        assert result and result[0][0] == 200, result
    assert not service.lock.locked()


def test_a_client_leaving_a_stream_stops_its_generation(live, monkeypatch):
    model, service = live['model'], live['service']
    steps = []
    real = model.generate

    def slow(*args, **kwargs):
        stops = kwargs['eos_token_id']

        def step(input_ids, scores):
            steps.append(1)
            time.sleep(0.05)
            scores[:, stops] = float('-inf')  # it never ends by itself
            return scores

        kwargs['logits_processor'].append(step)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, 'generate', slow)
    conn = _connect(live)
    body = json.dumps(dict(_user(_image_part(_uri(_png(3))), _text('Go on.')), stream=True,
                           max_tokens=400)).encode()
    conn.request('POST', '/v1/chat/completions', body, {'Content-Type': 'application/json'})
    resp = conn.getresponse()
    assert resp.status == 200
    contents = 0
    while contents < 2:  # two pieces: the generation is under way
        line = resp.fp.readline().decode()
        if line.startswith('data: {'):
            contents += 'content' in json.loads(line[6:])['choices'][0]['delta']
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert service.lock.acquire(timeout=15), 'the generation went on without a reader'
    service.lock.release()
    done = len(steps)
    time.sleep(0.3)
    assert len(steps) == done < 200
    # The next request is served.
    monkeypatch.setattr(model, 'generate', real)
    assert _request(live, '/chat/completions', _user(_text('hi')))[0] == 200


def test_a_failing_generation_is_a_500_or_an_error_event(live, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('boom')

    monkeypatch.setattr(live['model'], 'generate', broken)
    body = _user(_text('hi'))
    assert _request(live, '/chat/completions', body) == (500, dict(error=dict(
        message=INTERNAL, type='server_error', param=None, code=None)))
    status, text = _request(live, '/chat/completions', dict(body, stream=True))
    assert status == 200  # the status was sent with the first chunk: the error is an event
    events = [e for e in text.split('\n\n') if e]
    assert events[-1] == 'data: [DONE]'
    assert json.loads(events[-2][len('data: '):])['error']['message'] == INTERNAL
    assert not live['service'].lock.locked()

