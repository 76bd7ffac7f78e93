"""Continuous batching behind tools/serve.py (the default, ``--max-batch 8``): rows share a
batch and leave it when their client does. The answers of batched requests are checked
against the same requests alone in test_serve.py (``test_concurrent_requests_are_not_crossed``
runs against the batching server) and in tools/analysis_tools/serve_throughput.py."""
import json
import socket
import threading
import time

import test_serve as http  # the HTTP helpers of tools/serve.py's own tests
from fixtures_llava import serving_in_thread
from test_serve import server  # noqa: F401 (the fixture)


def test_batched_rows_leave_when_their_client_does(server):  # noqa: F811
    """Continuous batching (the default): two streams share the batch; the one whose client
    leaves ends at its next token, the other goes on to its own end."""
    serve = http._serve_module()
    model = server['model']
    srv = serve.build_server(model, 'llava-tiny_vqa', port=0, log_level='warning', max_batch=4)
    batcher = srv.app.state.service.batcher
    assert batcher is not None
    stops = model.tokenizer.eos_token_id

    def never_stop(module, args, output):
        time.sleep(0.02)
        output = output.clone()
        output[..., stops] = float('-inf')
        return output

    hook = model.llm.get_output_embeddings().register_forward_hook(never_stop)
    try:
        with serving_in_thread(srv):
            live = dict(server, url=srv.url)
            image = http._image_part(http._uri(http._png(4)))
            body = dict(http._user(image, http._text('Go on.')), stream=True, max_tokens=400)
            conn = http._connect(live)
            conn.request('POST', '/v1/chat/completions', json.dumps(body).encode(),
                         {'Content-Type': 'application/json'})
            resp = conn.getresponse()
            assert resp.status == 200
            other = []
            asker = threading.Thread(target=lambda: other.append(http._request(
                live, '/chat/completions', dict(body, stream=False, max_tokens=30))))
            asker.start()
            deadline = time.time() + 30
            while batcher.active_rows < 2 and time.time() < deadline:
                time.sleep(0.01)
            assert batcher.active_rows == 2  # both rows in one batch
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
            asker.join(60)
            status, answer = other[0]
            assert status == 200 and answer['usage']['completion_tokens'] == 30
            deadline = time.time() + 15
            while batcher.active_rows and time.time() < deadline:
                time.sleep(0.01)
            assert batcher.active_rows == 0, 'the row went on without a reader'
    finally:
        hook.remove()
