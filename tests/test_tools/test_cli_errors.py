"""Everyday mistakes on the command line end in one line on stderr, never a traceback.

Each case runs the script as a user does (a subprocess): ``error: bad argument (...)`` and exit
status 2 for a wrong argument, ``error: <what> (<file>): <why>`` and exit status 1 for a wrong
input; ``MMLLAVA_DEBUG=1`` (or ``--debug``) shows the traceback instead.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_llava import run_script

from mmllava.utils.video_io import write_mp4

ROOT = Path(__file__).resolve().parents[2]
MODEL = 'llava-tiny_mocap-actions'  # the default model: its weights ship in resources/


def run(tmp_path, *argv, **env):
    proc = subprocess.run(
        [sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env=dict(os.environ, MMLLAVA_HOME=str(tmp_path / 'home'),
                               PYTHONPATH=str(ROOT), **env))
    return proc.returncode, proc.stderr.strip()


def one_line(status, err, expected_status, *parts):
    assert status == expected_status, err[-3000:]
    assert 'Traceback' not in err and len(err.splitlines()) == 1, err[-3000:]
    assert err.startswith('error: '), err
    for part in parts:
        assert part in err, err


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('mistakes')
    jpeg = (ROOT / 'demo' / 'demo.jpg').read_bytes()
    (tmp / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 3])
    (tmp / 'empty.mp4').write_bytes(b'')
    frames = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    write_mp4(str(tmp / 'whole.mp4'), frames)
    clip = (tmp / 'whole.mp4').read_bytes()
    (tmp / 'cut.mp4').write_bytes(clip[:len(clip) // 3])
    return tmp


IMAGE_DEMO = ROOT / 'demo' / 'image_demo.py'
VIDEO_DEMO = ROOT / 'demo' / 'video_demo.py'


@pytest.mark.slow
def test_scripts_as_a_user_runs_them(files):
    """Subprocesses: what the user's terminal shows, exit status included."""
    one_line(*run(files, IMAGE_DEMO, files / 'nope.jpg', MODEL), 1,
             f'error: file not found ({files / "nope.jpg"}): no such image file')
    one_line(*run(files, ROOT / 'tools' / 'dataset_converters' / 'render_mocap_actions.py',
                  '--out', files / 'm', '--size', '63'), 2,
             'error: bad argument (', '--size must be even')
    one_line(*run(files, IMAGE_DEMO, 'a.jpg', MODEL, '--max-new-tokens', 'ten'), 2,
             "invalid int value: 'ten'")
    one_line(*run(files, ROOT / 'tools' / 'train.py', 'nope.py'), 1,
             'error: file not found (nope.py)')
    # The action config before its data is rendered: the list it needs, not 500 lines of log.
    one_line(*run(files, ROOT / 'tools' / 'test.py',
                  ROOT / 'configs' / 'llava_action' / f'{MODEL}.py',
                  ROOT / 'resources' / MODEL / 'model.safetensors'), 1,
             'action list not found', 'test_list_videos.txt')
    status, err = run(files, VIDEO_DEMO, files / 'nope.mp4', MODEL, '--debug')
    assert status == 1 and err.splitlines()[-1].startswith('FileNotFoundError: '), err


def in_process(capsys, script, *argv):
    """The script's main through run_cli in this process (no interpreter start per case)."""
    status = run_script(script, argv)
    return status, capsys.readouterr().err.strip()


def test_broken_files_models_and_devices(files, capsys, monkeypatch):
    monkeypatch.setenv('MMLLAVA_HOME', str(files / 'home'))
    image_demo, video_demo = 'demo/image_demo.py', 'demo/video_demo.py'
    one_line(*in_process(capsys, image_demo, files / 'cut.jpg', MODEL), 1,
             f"cannot read image '{files / 'cut.jpg'}'", 'truncated')
    for name in ('empty.mp4', 'cut.mp4'):
        one_line(*in_process(capsys, video_demo, files / name, MODEL), 1,
                 f"cannot read video '{files / name}'")
    one_line(*in_process(capsys, image_demo, ROOT / 'demo' / 'demo.jpg', 'llava-7b-v1.5_vqa'),
             1, "The weights of 'llava-7b-v1.5_vqa' are not on disk",
             'tools/model_converters/llava_to_mmllava.py')
    one_line(*in_process(capsys, image_demo, ROOT / 'demo' / 'demo.jpg', 'no-such-model'), 1,
             'no-such-model')
    if not torch.cuda.is_available():
        one_line(*in_process(capsys, video_demo, files / 'whole.mp4', MODEL, '--device',
                             'cuda:0'), 1, '--device cuda:0: this machine has no CUDA GPU')
    one_line(*in_process(capsys, 'tools/analysis_tools/eval_predictions.py', '--metric', 'vqa',
                         '--pred', files / 'p.json', '--ann', files / 'a.json'), 1,
             f'error: file not found ({files / "a.json"})')
    monkeypatch.setenv('MMLLAVA_DEBUG', '1')
    with pytest.raises(ValueError, match='cannot read image'):
        run_script(image_demo, [files / 'cut.jpg', MODEL])
