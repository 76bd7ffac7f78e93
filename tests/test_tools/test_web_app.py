"""demo/web_app.py driven as a person uses it: headless Chromium on a local server.

Needs gradio and playwright (the Python package: it drives an installed browser, nothing is
downloaded) and Debian's chromium (``apt-get install chromium``); skipped without them. The
browser is found as ``$MMLLAVA_CHROMIUM`` or ``chromium`` / ``chromium-browser`` on the PATH.
A screenshot is saved to ``work_dirs/test_artifacts/web_app.png`` (or
``$MMLLAVA_TEST_ARTIFACTS``).
"""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs/llava/llava-tiny_vqa.py')
IMAGE = ROOT / 'demo/demo.jpg'
CLIP = ROOT / 'tests/data/real_clips/arm_wrestling.mp4'
TIMEOUT = 60  # seconds for any one step (start, upload, answer)


def _chromium():
    given = os.environ.get('MMLLAVA_CHROMIUM')
    if given:
        return given if Path(given).exists() else None
    return shutil.which('chromium') or shutil.which('chromium-browser')


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec('gradio') is None,
                       reason='gradio is not installed (pip install gradio)'),
    pytest.mark.skipif(importlib.util.find_spec('playwright') is None,
                       reason='playwright is not installed (pip install playwright; no browser '
                       'download needed)'),
    pytest.mark.skipif(CHROMIUM is None,
                       reason='no chromium found (apt-get install chromium, or set '
                       'MMLLAVA_CHROMIUM)'),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp('web_app')
    log = folder / 'server.log'
    # Seeded weights: unseeded random ones now and then answer only byte-fallback tokens,
    # and a stream of those shows no clean prefix (incomplete UTF-8 is held back).
    import torch

    from mmllava.apis import get_model
    from mmllava.engine.checkpoint import save_weights
    torch.manual_seed(0)
    weights = folder / 'tiny.safetensors'
    save_weights(get_model(TINY).state_dict(), weights)
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1')
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / 'demo/web_app.py'), TINY, '--checkpoint', str(weights),
             '--port', str(port), '--max-new-tokens', '48'], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f'the app exited with {proc.returncode}:\n{log.read_text()}')
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0:
                break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f'the app did not listen on {url} in {TIMEOUT} s:\n{log.read_text()}')
        time.sleep(0.5)
    yield url, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope='module')
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=['--no-sandbox', '--disable-dev-shm-usage'])
        page = browser.new_page(viewport={'width': 1100, 'height': 1000})
        page.set_default_timeout(TIMEOUT * 1000)
        page.goto(server[0], timeout=TIMEOUT * 1000)
        page.wait_for_selector('#chat-input textarea')
        yield page
        browser.close()


# Every text the last answer bubble shows, recorded on each change of the page.
RECORD_BOT_TEXTS = """() => {
    window.botTexts = [];
    const record = () => {
        const bots = document.querySelectorAll('#chatbot [data-testid="bot"]');
        if (bots.length) window.botTexts.push(bots[bots.length - 1].innerText);
    };
    new MutationObserver(record).observe(document.querySelector('#chatbot'),
        {subtree: true, childList: true, characterData: true});
}"""


def ask(page, text, files=()):
    """Attach files, send ``text``; wait for the answer; return it and the texts it showed."""
    bots = page.locator('#chatbot [data-testid="bot"]')
    before = bots.count()
    box = page.locator('#chat-input')
    if files:
        box.locator('input[type=file]').set_input_files([str(f) for f in files])
        # The upload shows a thumbnail in the box once it reached the server.
        box.locator('img, video, .thumbnail-item').first.wait_for()
    page.evaluate(RECORD_BOT_TEXTS)
    box.locator('textarea').fill(text)
    box.locator('textarea').press('Enter')
    page.wait_for_function(
        f'document.querySelectorAll(\'#chatbot [data-testid="bot"]\').length > {before}')
    # Done when the text has stopped changing for a while (the tiny model is fast).
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        current = bots.nth(before).inner_text()
        if current != last:
            last, stable_since = current, time.monotonic()
        elif current.strip() and time.monotonic() - stable_since > 2:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f'no stable answer in {TIMEOUT} s')
    shown = [t for t in page.evaluate('window.botTexts') if t.strip()]
    return last.strip(), shown


def save_screenshot(page, tmp_path) -> Path:
    folder = Path(os.environ.get('MMLLAVA_TEST_ARTIFACTS', ROOT / 'work_dirs/test_artifacts'))
    shot = tmp_path / 'web_app.png'
    page.screenshot(path=str(shot), full_page=True)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, folder / 'web_app.png')
    return folder / 'web_app.png'


def test_upload_ask_and_see_streamed_answer(page, server, tmp_path):
    answer, shown = ask(page, 'What is the person doing?', files=[IMAGE])
    assert answer, server[1].read_text()
    assert not answer.startswith('Error'), answer
    # The user's turn shows the uploaded image and the question.
    user = page.locator('#chatbot [data-testid="user"]')
    assert user.locator('img').count() >= 1
    assert 'What is the person doing?' in user.last.inner_text()
    # Streamed: the bubble showed growing prefixes of the answer before the whole of it.
    # (Markdown may re-render a partial text, so one clean prefix is enough.)
    partial = [t.strip() for t in shown if t.strip() and t.strip() != answer]
    assert any(answer.startswith(t) for t in partial), f'no partial answer shown: {shown}'

    follow, _ = ask(page, 'Why?')  # text only: the image stays in context
    assert follow and not follow.startswith('Error')
    shot = save_screenshot(page, tmp_path)
    assert shot.stat().st_size > 10_000


def test_new_conversation_with_a_clip(page, server):
    page.locator('#reset').click()
    page.wait_for_function(
        'document.querySelectorAll(\'#chatbot [data-testid="bot"]\').length == 0')
    answer, _ = ask(page, 'What are they doing?', files=[CLIP])
    assert answer and not answer.startswith('Error'), server[1].read_text()
    assert page.locator('#chatbot [data-testid="user"] video').count() >= 1
