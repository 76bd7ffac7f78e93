"""demo/chat.py driven as a person uses it: through a pseudo-terminal."""
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_llava import TINY_CONFIG as TINY

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / 'tests/data/real_clips/arm_wrestling.mp4'
PROMPT = 'USER: '
ANSWER = 'ASSISTANT: '

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == 'win32',
                                 reason='needs a POSIX pseudo-terminal')]


class Terminal:
    """A child process on a pseudo-terminal; output read with timestamps."""

    def __init__(self, args, timeout=60):
        self.master, slave = os.openpty()
        env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', TERM='dumb')
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                     env=env, close_fds=True, start_new_session=True)
        os.close(slave)
        self.timeout = timeout
        self.output = ''
        self.chunks = []  # (offset in output, text) of every read

    def _read(self, wait):
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return False
        try:
            data = os.read(self.master, 4096)
        except OSError:  # the child closed the terminal
            data = b''
        if not data:
            raise EOFError(f'terminal closed; output so far:\n{self.output}')
        text = data.decode('utf-8', errors='replace')
        self.chunks.append((len(self.output), text))
        self.output += text
        return True

    def expect(self, marker, start=0):
        """Read until ``marker`` appears after ``start``; return the index after it."""
        deadline = time.monotonic() + self.timeout
        while marker not in self.output[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f'{marker!r} did not appear in {self.timeout} s; output:\n'
                                   f'{self.output}')
            try:
                self._read(min(left, 0.5))
            except EOFError:
                if marker in self.output[start:]:
                    break
                raise
        return self.output.index(marker, start) + len(marker)

    def send(self, line):
        os.write(self.master, (line + '\n').encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self.master)


@pytest.fixture
def terminal():
    term = Terminal([sys.executable, str(ROOT / 'demo/chat.py'), TINY, '--max-new-tokens', '40'])
    yield term
    term.close()


def ask(term, text):
    """Send a message; return the answer text and its parts as each read brought them."""
    start = len(term.output)
    term.send(text)
    begin = term.expect(ANSWER, start)
    end = term.expect('\n' + PROMPT, begin) - len('\n' + PROMPT)
    answer = term.output[begin:end].strip()
    pieces = []
    for offset, chunk in term.chunks:
        part = chunk[max(begin - offset, 0):max(end - offset, 0)]
        if part.strip():
            pieces.append(part)
    return answer, pieces


def test_chat_in_a_terminal(terminal, tmp_path):
    term = terminal
    term.expect('random weights')
    term.expect(PROMPT)

    # A bad path: a clear message, and the chat goes on.
    start = len(term.output)
    term.send(f'/image {tmp_path}/missing.jpg')
    term.expect('error: No such file', start)
    term.expect(PROMPT, start)
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    start = len(term.output)
    term.send(f'/image {broken}')
    term.expect('error: cannot read image', start)
    term.expect(PROMPT, start)

    start = len(term.output)
    term.send(f'/image {ROOT / "demo/demo.jpg"}')
    term.expect('image attached', start)
    term.expect(PROMPT, start)
    answer, _ = ask(term, 'What is the person doing?')
    assert answer, term.output
    # That answers stream is asserted where it does not depend on chance
    # (tests/test_apis/test_chat.py::test_stream_joins_to_answer): here the unseeded random
    # weights may answer only byte pieces that form no character until the last one, and a
    # loaded machine may deliver several pieces in one read.

    follow, _ = ask(term, 'Why?')  # text only, the image stays in context
    assert follow

    start = len(term.output)
    term.send(f'/video {CLIP}')
    term.expect('video attached', start)
    clip_answer, _ = ask(term, 'And in this clip?')
    assert clip_answer

    start = len(term.output)
    term.send('/reset')
    term.expect('(new conversation)', start)
    term.expect(PROMPT, start)
    start = len(term.output)
    term.send('/nonsense')
    term.expect('unknown command /nonsense', start)
    term.expect(PROMPT, start)
    assert ask(term, 'Hello?')[0]  # text only after a reset: no visual at all

    term.send('/exit')
    assert term.proc.wait(timeout=30) == 0
    assert 'Traceback' not in term.output


def test_end_of_input_exits_cleanly(terminal):
    term = terminal
    term.expect(PROMPT)
    os.write(term.master, b'\x04')  # Ctrl-D at the prompt
    assert term.proc.wait(timeout=30) == 0
