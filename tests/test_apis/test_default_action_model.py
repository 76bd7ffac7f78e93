"""The shipped default model, llava-tiny_mocap-actions: zoo entry, weights, clips in, actions out.

The clips are rendered here with a seed the model never saw (seed 7; training used seed 0, the
published test seed 1), on the test split's held-out camera azimuths.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmllava.apis import ModelHub, get_model, inference_model, list_models
from mmllava.apis.pipeline import closed_set_classes
from mmllava.datasets.mocap_actions import CLASS_NAMES, MOCAP_ACTION_QUESTION

ROOT = Path(__file__).resolve().parents[2]
NAME = 'llava-tiny_mocap-actions'


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    pytest.importorskip('pybullet')
    from fixtures_llava import load_tool_module
    render_mocap_actions = load_tool_module(
        'tools/dataset_converters/mocap_actions').render_mocap_actions
    out = tmp_path_factory.mktemp('mocap_seed7')
    render_mocap_actions(str(out), seed=7, clips_per_class=2, write_frames=False)
    lines = (out / 'test_list_videos.txt').read_text().split('\n')
    return [(out / 'videos' / p, int(label)) for p, label in (ln.split() for ln in lines if ln)]


@pytest.fixture(scope='module')
def model():
    return get_model(NAME, pretrained=True)


def test_zoo_entry_names_shipped_weights_and_tokenizer():
    assert NAME in list_models('mocap')
    weights = ModelHub.weights_path(NAME)
    assert weights.suffix == '.safetensors' and weights.stat().st_size <= 20 * 2**20
    assert (weights.parent / 'tokenizer.model').exists()
    meta = yaml.safe_load((ROOT / 'configs' / 'llava_action' / 'metafile.yml').read_text())
    entry = next(m for m in meta['Models'] if m['Name'] == NAME)
    assert entry['Weights'] == 'resources/llava-tiny_mocap-actions/model.safetensors'
    assert 'measured by us' in entry['Results'][0]['Source']


@pytest.mark.slow
def test_default_question_and_class_answers(model, clips):
    """No question: the model asks its own (the benchmark's closed-set question) and answers
    with a class name, and ranks the classes. Random weights would get about 1 in 15 right."""
    assert model.default_question == MOCAP_ACTION_QUESTION
    assert closed_set_classes(model.cfg) == list(CLASS_NAMES)
    results = inference_model(model, [str(path) for path, _ in clips])
    for result in results:
        assert result['pred_answer'] in CLASS_NAMES
        assert MOCAP_ACTION_QUESTION in result['prompt'] and '<video>' in result['prompt']
        assert result['pred_class'] == CLASS_NAMES[result['pred_label']]
        assert result['pred_class'] == result['pred_answer']  # the text names a class
    top1 = np.mean([r['pred_label'] == label for r, (_, label) in zip(results, clips)])
    assert top1 >= 0.5, f'top-1 {top1:.2f} on {len(clips)} unseen clips'


def test_by_zoo_name_with_an_array(clips):
    from mmllava.datasets.transforms import load_video_frames
    frames = np.stack(load_video_frames(str(clips[0][0]), num_frames=16))
    result = inference_model(NAME, frames)
    assert result['pred_answer'] in CLASS_NAMES and len(result['pred_scores']) == 15


@pytest.mark.slow
def test_video_demo_prints_answer_and_saves_frames(clips, tmp_path):
    out = tmp_path / 'demo.png'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'demo' / 'video_demo.py'), str(clips[0][0]), NAME,
         '--out', str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    answer = next(ln for ln in proc.stdout.splitlines() if ln.startswith('answer: '))
    assert answer[len('answer: '):] in CLASS_NAMES
    assert 'top-3: ' in proc.stdout
    from PIL import Image
    with Image.open(out) as image:
        assert image.width > 8 * 64  # eight sampled frames side by side
    bad = subprocess.run(
        [sys.executable, str(ROOT / 'demo' / 'video_demo.py'), str(tmp_path / 'nope.mp4'), NAME],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and 'nope.mp4' in bad.stdout + bad.stderr


@pytest.mark.slow
def test_decoders_agree_on_the_default_model(model, clips):
    """Our decode loop answers as transformers' generate; with its bf16 decode steps, the
    answers to an open question (24 tokens each, no early stop) agree with fp32's on >= 95%
    of their tokens (position by position, as the benchmark's token agreement)."""
    paths = [str(path) for path, _ in clips[::2]]
    ours = inference_model(model, paths)
    theirs = inference_model(model, paths, decoder='transformers')
    assert [r['pred_answer'] for r in ours] == [r['pred_answer'] for r in theirs]
    question = 'Describe what the person does, step by step.'
    answers = {dtype: [r['pred_answer'] for r in inference_model(
        model, paths, [question] * len(paths), decode_dtype=dtype, max_new_tokens=24,
        min_new_tokens=24)] for dtype in ('float32', 'bfloat16', 'int8')}
    for dtype in ('bfloat16', 'int8'):
        equal = total = 0
        for a, b in zip(answers['float32'], answers[dtype]):
            a, b = (model.tokenizer.encode(t) for t in (a, b))
            equal += sum(x == y for x, y in zip(a, b))
            total += max(len(a), len(b))
        same = sum(a == b for a, b in zip(answers['float32'], answers[dtype]))
        print(f'{dtype} decode: {equal}/{total} tokens, {same}/{len(paths)} answers equal to '
              'fp32')
        if dtype == 'bfloat16':
            assert total >= 15 * len(paths) and equal / total >= 0.95, (equal, total)
