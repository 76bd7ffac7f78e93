"""tools/test.py end to end: a tiny converted llava-hf model on a VQAv2-format fixture."""
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_llava import run_test_tool, write_tiny_eval_config
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'eval'


@pytest.fixture(scope='module')
def converted():
    from fixtures_llava import shared_build
    return Path(shared_build()['converted']['llava-hf'])


def write_eval_config(tmp_path: Path, converted: Path) -> Path:
    images = tmp_path / 'val2014'
    images.mkdir()
    rng = np.random.default_rng(0)
    for image_id in (1, 2):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
            images / f'COCO_val2014_{image_id:012d}.jpg')
    dataset = dict(type='VQAv2Dataset', data_root=str(DATA),
                   question_file='vqav2_val_questions.json',
                   ann_file='vqav2_val_annotations.json', img_prefix=str(images))
    return write_tiny_eval_config(tmp_path / 'vqav2_eval.py', converted, dataset,
                                  dict(type='VQAAccuracy'), batch_size=3, max_new_tokens=3)


def test_test_tool_end_to_end(tmp_path, converted):
    config = write_eval_config(tmp_path, converted)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['vqa/num_samples'] == 4
    assert 0 <= metrics['vqa/acc'] <= 100
    assert {'vqa/acc_number', 'vqa/acc_other', 'vqa/acc_yes_no'} <= set(metrics)
    rows = json.loads(preds.read_text())
    assert sorted(r['question_id'] for r in rows) == [1001, 1002, 1003, 1004]
    assert all(isinstance(r['text'], str) and 'USER' in r['prompt'] for r in rows)
    # The same predictions scored offline give the same numbers.
    from mmllava.evaluation.offline import evaluate_predictions
    offline = evaluate_predictions('vqa', preds, [DATA / 'vqav2_val_annotations.json'])
    assert offline['vqa/acc'] == pytest.approx(metrics['vqa/acc'])


def test_checkpoint_that_does_not_fit_is_refused(tmp_path, converted):
    import torch
    from safetensors.torch import save_file
    config = write_eval_config(tmp_path, converted)
    bad = tmp_path / 'bad.safetensors'
    save_file({'projector.weight': torch.zeros(2, 2)}, str(bad))
    proc = run_test_tool(config, bad, tmp_path / 'work')
    assert proc.returncode != 0
    assert 'missing keys' in proc.stderr
