"""``pip install .`` (a wheel, not the checkout) gives a working zoo: configs, tools and the
default model's weights travel in ``mmllava/.mim``."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_zoo_and_runs_the_default_model(tmp_path):
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / 'src'
    for name in files:  # a clean copy: the build writes mmllava/.mim and build/ into it
        path = ROOT / name
        if path.is_file() and not name.startswith(('data/', 'work_dirs/')):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(path.read_bytes())
    wheels = tmp_path / 'wheels'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(src), '--no-deps',
                    '--no-build-isolation', '-q', '-w', str(wheels)], check=True,
                   capture_output=True, timeout=600)
    (wheel, ) = wheels.glob('mmllava-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ('mmllava/.mim/model-index.yml',
                   'mmllava/.mim/configs/llava_action/llava-tiny_mocap-actions.py',
                   'mmllava/.mim/configs/_base_/models/llava-tiny_mocap-actions.py',
                   'mmllava/.mim/resources/llava-tiny_mocap-actions/model.safetensors',
                   'mmllava/.mim/resources/llava-tiny_mocap-actions/tokenizer.model',
                   'mmllava/.mim/tools/train.py'):
        assert needed in names, needed
    site = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
                    str(site), str(wheel)], check=True, capture_output=True, timeout=600)
    code = '\n'.join([
        'import numpy as np, mmllava',
        'from mmllava.apis import get_model, inference_model, list_models',
        "assert mmllava.__file__.startswith(%r), mmllava.__file__" % str(site),
        "assert 'llava-tiny_mocap-actions' in list_models()",
        "model = get_model('llava-tiny_mocap-actions', pretrained=True)",
        'clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)',
        'result = inference_model(model, clip)',
        "print('ANSWER', result['pred_class'])",
    ])
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={'PYTHONPATH': str(site),
                                                       'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'ANSWER ' in proc.stdout
