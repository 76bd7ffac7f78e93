"""Throughput of tools/serve.py with 1, 4 and 8 concurrent clients, batched and one at a time.

For each ``--max-batch`` (default: 1, then 8) the server is started as a subprocess on
loopback (:func:`serve_fault_load.start_server`), warmed up, and then for each client count
that many threads send streamed chat requests (each a different random image, greedy,
``--max-tokens``) for ``--seconds``. Reported per (max_batch, clients): the aggregate
completion tokens per second (``usage.completion_tokens`` over the wall time), requests
answered, and p50 / p99 time to first token (the first content chunk). Every answer is
checked against the same request answered alone by the same server before the load
(``wrong_answers``): continuous batching must not change an answer.

Example::

    python tools/analysis_tools/serve_throughput.py configs/llava/llava-tiny_vqa.py \\
        --out work_dirs/serve_throughput.json
"""
import base64
import io
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_fault_load import start_server  # noqa: E402

CLIENTS = (1, 4, 8)


def _image_uri(seed: int) -> str:
    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, 'PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def _body(seed: int, max_tokens: int) -> bytes:
    content = [dict(type='image_url', image_url=dict(url=_image_uri(seed))),
               dict(type='text', text='Describe what the person is doing, in detail.')]
    return json.dumps(dict(messages=[dict(role='user', content=content)], stream=True,
                           max_tokens=max_tokens, temperature=0,
                           stream_options=dict(include_usage=True))).encode()


def ask(address, body: bytes) -> dict:
    """One streamed request: its answer, completion tokens, time to first token, latency."""
    import http.client
    start = time.perf_counter()
    conn = http.client.HTTPConnection(*address, timeout=300)
    try:
        conn.request('POST', '/v1/chat/completions', body,
                     {'Content-Type': 'application/json'})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f'HTTP {resp.status}: {resp.read()[:200]!r}')
        text, tokens, first = [], 0, None
        for line in resp:
            line = line.decode().strip()
            if not line.startswith('data: {'):
                continue
            event = json.loads(line[6:])
            if event.get('usage'):
                tokens = event['usage']['completion_tokens']
            for choice in event.get('choices', []):
                piece = choice['delta'].get('content')
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
        end = time.perf_counter()
        return dict(answer=''.join(text), tokens=tokens, ttft=(first or end) - start,
                    latency=end - start)
    finally:
        conn.close()


def _percentile(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def load(address, clients: int, seconds: float, bodies: List[bytes], expected: List[str]):
    """``clients`` threads asking in turn for ``seconds``; the row of that run."""
    results, wrong, lock = [], [], threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            out = ask(address, bodies[i % len(bodies)])
            with lock:
                results.append(out)
                if out['answer'] != expected[i % len(bodies)]:
                    wrong.append(i % len(bodies))
            i += clients
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k, )) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttft = [r['ttft'] for r in results]
    return dict(clients=clients, requests=len(results), seconds=round(wall, 2),
                tokens_per_s=round(sum(r['tokens'] for r in results) / wall, 2),
                ttft_p50_s=round(statistics.median(ttft), 4),
                ttft_p99_s=round(_percentile(ttft, 0.99), 4), wrong_answers=len(wrong))


def run(model: str, checkpoint: Optional[str] = None, batches=(1, 8), clients=CLIENTS,
        seconds: float = 20, max_tokens: int = 32, log=print) -> list:
    """Every (max_batch, clients) row; see the module's docstring."""
    bodies = [_body(seed, max_tokens) for seed in range(16)]
    rows = []
    for max_batch in batches:
        proc, address = start_server(model, checkpoint, extra=['--max-batch', str(max_batch)])
        try:
            ask(address, bodies[0])  # warm-up
            # Each request alone first: the answers this server must give under load (its
            # own: a config without a checkpoint has random weights of its own).
            expected = [ask(address, body)['answer'] for body in bodies]
            for n in clients:
                row = dict(max_batch=max_batch, **load(address, n, seconds, bodies, expected))
                log(json.dumps(row))
                rows.append(row)
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


def main(argv=None) -> list:
    from mmllava.utils.cli import make_parser
    parser = make_parser(description=__doc__.splitlines()[0])
    parser.add_argument('model', help='a zoo name or a config (as tools/serve.py takes it)')
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--seconds', type=float, default=20, help='per client count')
    parser.add_argument('--max-tokens', type=int, default=32)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8],
                        help='--max-batch values to run the server with')
    parser.add_argument('--out', help='write the rows as JSON')
    args = parser.parse_args(argv)
    rows = run(args.model, args.checkpoint, args.batches, CLIENTS, args.seconds,
               args.max_tokens)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + '\n')
    return rows


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
