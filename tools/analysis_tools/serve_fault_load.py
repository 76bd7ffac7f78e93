"""Load and fault run of tools/serve.py: valid clients answered while attackers run (loopback).

The server is started as a subprocess on 127.0.0.1 with the bounds below, then:

1. sequential: each valid request once, alone; its greedy answer is the expected one;
2. quiet: ``--valid-clients`` threads send valid requests for ``--quiet`` seconds (latency
   without attack);
3. attack: the same valid clients, and ``--attackers`` threads sending every bad request of
   :data:`ATTACKS` in turn, for ``--duration`` seconds;
4. settle: the server's memory once the attackers are gone.

Every valid answer must equal its sequential one and every attack must get one of the
answers its kind allows (:data:`ATTACKS`). The report (JSON, ``--out``) gives requests by kind
and outcome, valid answers right, p50/p99 latency with and without the attack, and the
server's resident memory at the start, at its peak and at the end (``/proc``; Linux).

Example::

    python tools/analysis_tools/serve_fault_load.py configs/llava/llava-tiny_vqa.py \\
        --duration 60 --out work_dirs/fault_load.json
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / 'tools' / 'serve.py'
TIMEOUT_S = 2.0  # the server's header and body timeouts in this run
MAX_REQUEST_BYTES = 2 * 2**20
MAX_IMAGE_PIXELS = 256 * 256
MAX_FRAME_PIXELS = 64 * 64
MAX_CLIP_FRAMES = 64
MAX_TOKENS = 8
QUESTION = 'What is the person doing?'
SAMPLE_S = 5.0  # seconds between samples of the server's memory

#: Attack kind -> the outcomes it may get: an HTTP status, or ``'closed'`` (the server closed
#: the connection without a reply) and ``'left'`` (the client left before any reply).
ATTACKS = {
    'slow_headers': {408},
    'slow_body': {408},
    'negative_length': {400},
    'malformed_length': {400},
    'length_over_limit': {413},
    'chunked_over_limit': {413},
    'clip_frames_too_large': {413},
    'clip_too_many_frames': {413},
    'image_too_large': {413},
    'text_over_context': {400},
    'garbage_bytes': {400, 'closed'},
    'deep_json': {400},
    'stream_as_string': {400},
    'local_path': {400, 403},
    'leave_while_streaming': {'left'},
    'leave_before_reply': {'left'},
}


# ------------------------------------------------------------------------------ requests
def _png(size, flat: bool = False) -> bytes:
    import io

    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    pixels = np.random.RandomState(size[0]).randint(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels * 0 if flat else pixels).save(buf, 'PNG')  # flat: a few KB
    return buf.getvalue()


def _mp4(frames: int, size) -> bytes:
    import tempfile

    import numpy as np

    from mmllava.utils.video_io import write_mp4
    pixels = np.random.RandomState(frames).randint(0, 255, (frames, size[1], size[0], 3),
                                                   np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        write_mp4(f'{folder}/c.mp4', pixels)
        return Path(f'{folder}/c.mp4').read_bytes()


def _uri(data: bytes, mime: str) -> str:
    import base64
    return f'data:{mime};base64,' + base64.b64encode(data).decode()


def _chat(*parts, **fields) -> dict:
    content = [dict(type='text', text=QUESTION)] if not parts else [*parts]
    return dict(dict(messages=[dict(role='user', content=content)], max_tokens=MAX_TOKENS,
                     temperature=0), **fields)


def build_requests() -> Dict[str, dict]:
    """The valid requests (by name) and the attack bodies' media, built once."""
    image = dict(type='image_url', image_url=dict(url=_uri(_png((32, 24)), 'image/png')))
    clip = dict(type='video_url', video_url=dict(url=_uri(_mp4(8, (32, 32)), 'video/mp4')))
    text = dict(type='text', text=QUESTION)
    return dict(
        valid=dict(text=_chat(), image=_chat(image, text), clip=_chat(clip, text),
                   stream=_chat(stream=True)),
        big_frames=_chat(dict(type='video_url', video_url=dict(
            url=_uri(_mp4(4, (128, 128)), 'video/mp4'))), text),
        many_frames=_chat(dict(type='video_url', video_url=dict(
            url=_uri(_mp4(MAX_CLIP_FRAMES + 8, (16, 16)), 'video/mp4'))), text),
        big_image=_chat(dict(type='image_url', image_url=dict(
            url=_uri(_png((2048, 2048), flat=True), 'image/png'))), text))


def _head(length, extra: bytes = b'') -> bytes:
    return (b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json'
            b'\r\nConnection: close\r\n' + extra
            + (b'' if length is None else b'Content-Length: %s\r\n' % str(length).encode())
            + b'\r\n')


def _post(body) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _head(len(data)) + data


def _status(reply: bytes):
    if not reply:
        return 'closed'
    try:
        return int(reply.split(b' ', 2)[1])
    except (IndexError, ValueError):
        return 'closed'


class Client:
    """Raw HTTP/1.1 over loopback: whole replies, or the attacks' partial sends."""

    def __init__(self, address, media: dict):
        self.address = address
        self.media = media

    def exchange(self, data: bytes, wait: float = 60) -> bytes:
        """Send ``data`` and read the whole reply (until the server closes)."""
        with socket.create_connection(self.address, timeout=wait) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early (413) and closed: its reply may be there
            reply = b''
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        return reply

    def valid(self, body: dict) -> str:
        """The answer text of a valid request (a stream's deltas joined); raises on an error."""
        connection = http.client.HTTPConnection(*self.address, timeout=60)
        try:  # http.client reads the chunked replies of streams
            connection.request('POST', '/v1/chat/completions', json.dumps(body),
                               {'Content-Type': 'application/json'})
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f'valid request answered {response.status}: {payload[:200]!r}')
        if not body.get('stream'):
            return json.loads(payload)['choices'][0]['message']['content']
        text = ''
        for line in payload.decode().splitlines():
            if line.startswith('data: ') and line != 'data: [DONE]':
                for choice in json.loads(line[6:])['choices']:
                    text += choice['delta'].get('content', '')
        return text

    def attack(self, kind: str):
        """One request of ``kind`` (:data:`ATTACKS`); returns its outcome."""
        media = self.media
        if kind == 'slow_headers':
            return _status(self.exchange(_head(None)[:-4]))  # never ends its headers
        if kind == 'slow_body':
            return _status(self.exchange(_head(100) + b'{"messages": '))
        if kind == 'negative_length':
            return _status(self.exchange(_head(-1) + b'{}'))
        if kind == 'malformed_length':
            return _status(self.exchange(_head('12abc') + b'{}'))
        if kind == 'length_over_limit':
            return _status(self.exchange(_head(MAX_REQUEST_BYTES + 1) + b'{'))
        if kind == 'chunked_over_limit':
            chunk = b'%x\r\n%s\r\n' % (2**16, b' ' * 2**16)
            data = _head(None, b'Transfer-Encoding: chunked\r\n') + chunk * (
                MAX_REQUEST_BYTES // 2**16 + 2)
            return _status(self.exchange(data))
        if kind == 'clip_frames_too_large':
            return _status(self.exchange(_post(media['big_frames'])))
        if kind == 'clip_too_many_frames':
            return _status(self.exchange(_post(media['many_frames'])))
        if kind == 'image_too_large':
            return _status(self.exchange(_post(media['big_image'])))
        if kind == 'text_over_context':
            return _status(self.exchange(_post(_chat(dict(type='text', text='run ' * 100_000)))))
        if kind == 'garbage_bytes':
            return _status(self.exchange(os.urandom(512) + b'\r\n\r\n'))
        if kind == 'deep_json':
            return _status(self.exchange(_post(b'[' * 50_000 + b']' * 50_000)))
        if kind == 'stream_as_string':
            return _status(self.exchange(_post(_chat(stream='false'))))
        if kind == 'local_path':
            part = dict(type='image_url', image_url=dict(url='/etc/passwd'))
            return _status(self.exchange(_post(_chat(part, dict(type='text', text=QUESTION)))))
        if kind in ('leave_while_streaming', 'leave_before_reply'):
            body = _chat(stream=kind == 'leave_while_streaming', max_tokens=64)
            with socket.create_connection(self.address, timeout=60) as sock:
                sock.sendall(_post(body))
                if kind == 'leave_while_streaming':
                    sock.recv(1024)  # the first bytes of the stream, then leave
            return 'left'
        raise ValueError(f'unknown attack {kind!r}')


# -------------------------------------------------------------------------------- server
def start_server(model: str, checkpoint: Optional[str] = None, log: Optional[str] = None,
                 extra: Optional[List[str]] = None):
    """``tools/serve.py MODEL`` on a free loopback port with this run's bounds (and ``extra``
    flags): (process, (host, port)); its stderr goes to ``log`` (or nowhere)."""
    cmd = [sys.executable, str(SERVE), model, '--port', '0',
           '--header-timeout', str(TIMEOUT_S), '--body-timeout', str(TIMEOUT_S),
           '--max-request-bytes', str(MAX_REQUEST_BYTES),
           '--max-image-pixels', str(MAX_IMAGE_PIXELS),
           '--max-frame-pixels', str(MAX_FRAME_PIXELS),
           '--max-clip-frames', str(MAX_CLIP_FRAMES), '--max-pending', '64',
           '--request-timeout', '60']
    if checkpoint:
        cmd += ['--checkpoint', checkpoint]
    cmd += list(extra or [])
    stderr = open(log, 'w') if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    if log:
        stderr.close()  # the child has its own copy
    line = ' '
    while line and not line.startswith('Serving '):  # the load's log comes first
        line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f'the server did not start (exit code {proc.wait()})')
    # Drain the access log: a full pipe would stall the server's event loop.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    url = urlparse(line.split()[-1])
    return proc, (url.hostname, url.port)


def memory_mib(pid: int) -> Dict[str, float]:
    """Resident memory now (``VmRSS``) and at its peak (``VmHWM``) of a process, in MiB."""
    fields = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                fields[key] = int(value.split()[0]) / 1024
    return dict(rss=round(fields['VmRSS'], 1), peak=round(fields['VmHWM'], 1))


# ----------------------------------------------------------------------------------- run
def _percentiles(latencies: List[float]) -> dict:
    if not latencies:
        return dict(n=0)
    ordered = sorted(latencies)

    def at(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return dict(n=len(ordered), p50_s=at(0.5), p99_s=at(0.99), max_s=round(ordered[-1], 3))


def _loop(stop: threading.Event, work, offset: int = 0):
    i = offset
    while not stop.is_set():
        work(i)
        i += 1


def run(model: str, checkpoint: Optional[str] = None, duration: float = 30,
        quiet: float = 10, valid_clients: int = 2, attackers: int = 6,
        log: Optional[str] = None) -> dict:
    """Run the four phases (module doc) and return the report."""
    media = build_requests()
    valid = media['valid']
    proc, address = start_server(model, checkpoint, log)
    client = Client(address, media)
    try:
        expected = {name: client.valid(body) for name, body in valid.items()}
        names = sorted(valid)
        lock = threading.Lock()

        def phase(seconds: float, attack: bool) -> dict:
            stop = threading.Event()
            latencies, wrong, outcomes = [], [], {}

            def send_valid(i):
                name = names[i % len(names)]
                start = time.perf_counter()
                try:
                    answer = client.valid(valid[name])
                except Exception as e:  # an answer that is not 200 is counted, not raised
                    answer = f'<{e}>'
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if answer != expected[name]:
                        wrong.append(dict(request=name, got=answer[:200],
                                          expected=expected[name]))

            kinds = sorted(ATTACKS)

            def send_attack(i):
                kind = kinds[i % len(kinds)]
                try:
                    outcome = client.attack(kind)
                except Exception as e:  # counted: an outcome no attack allows
                    outcome = f'client error {type(e).__name__}'
                with lock:
                    counts = outcomes.setdefault(kind, {})
                    counts[str(outcome)] = counts.get(str(outcome), 0) + 1

            threads = [threading.Thread(target=_loop, args=(stop, send_valid, i))
                       for i in range(valid_clients)]
            if attack:
                threads += [threading.Thread(target=_loop,
                                             args=(stop, send_attack, i * len(kinds) // attackers))
                            for i in range(attackers)]
            for thread in threads:
                thread.start()
            samples, end = [], time.monotonic() + seconds
            while time.monotonic() < end:  # the server's memory, every few seconds
                time.sleep(min(SAMPLE_S, max(0.0, end - time.monotonic())))
                samples.append(memory_mib(proc.pid)['rss'])
            stop.set()
            for thread in threads:
                thread.join()
            return dict(latency=_percentiles(latencies), wrong=wrong, outcomes=outcomes,
                        rss=samples)

        quiet_phase = phase(quiet, attack=False)
        memory_start = memory_mib(proc.pid)
        attack_phase = phase(duration, attack=True)
        time.sleep(TIMEOUT_S + 1)  # the attackers' last connections time out
        after = {name: client.valid(body) for name, body in valid.items()}
        memory_end = memory_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    unexpected = {kind: counts for kind, counts in attack_phase['outcomes'].items()
                  if not set(counts) <= {str(o) for o in ATTACKS[kind]}}
    return dict(
        settings=dict(duration_s=duration, quiet_s=quiet, valid_clients=valid_clients,
                      attackers=attackers, header_body_timeout_s=TIMEOUT_S,
                      max_new_tokens=MAX_TOKENS),
        expected=expected,
        valid_quiet=dict(quiet_phase['latency'], wrong=len(quiet_phase['wrong'])),
        valid_attack=dict(attack_phase['latency'], wrong=len(attack_phase['wrong'])),
        wrong_answers=quiet_phase['wrong'] + attack_phase['wrong'],
        answers_after_equal=after == expected,
        attacks=attack_phase['outcomes'],
        attacks_sent=sum(sum(c.values()) for c in attack_phase['outcomes'].values()),
        unexpected_outcomes=unexpected,
        memory_mib=dict(start=memory_start['rss'], end=memory_end['rss'],
                        peak=memory_end['peak'], during_attack=attack_phase['rss']))


def parse_args(argv=None):
    from mmllava.utils.cli import make_parser
    parser = make_parser(description=__doc__.splitlines()[0])
    parser.add_argument('model', help='a zoo name or a config, as tools/serve.py takes it')
    parser.add_argument('--checkpoint', default=None, help='weights for a config')
    parser.add_argument('--duration', type=float, default=30,
                        help='seconds of attack (default 30)')
    parser.add_argument('--quiet', type=float, default=10,
                        help='seconds of valid load alone before it (default 10)')
    parser.add_argument('--valid-clients', type=int, default=2)
    parser.add_argument('--attackers', type=int, default=6)
    parser.add_argument('--out', default=None, help='write the JSON report here too')
    parser.add_argument('--server-log', default=None, help="write the server's stderr here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args.model, args.checkpoint, args.duration, args.quiet, args.valid_clients,
                 args.attackers, args.server_log)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + '\n')
    ok = not report['wrong_answers'] and not report['unexpected_outcomes'] \
        and report['answers_after_equal']
    return 0 if ok else 1


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
