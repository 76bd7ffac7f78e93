"""tools/test.py end to end: a tiny converted llava-hf model on VQAv2, POPE and action-list
fixtures, readable or not (unreadable clips and images are scored misses)."""
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


@pytest.mark.slow
def test_test_tool_end_to_end(tmp_path, converted):
    config = write_eval_config(tmp_path, converted)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'invalid_samples.txt').write_text('7\tstale, from an earlier run\n')
    proc = run_test_tool(config, converted / 'model.safetensors', work,
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['vqa/num_samples'] == 4
    # Every image read: the count is there, 0, and the list describes this run (empty).
    assert metrics['invalid_samples'] == 0 and metrics['vqa/num_invalid'] == 0
    assert (work / 'invalid_samples.txt').read_text() == ''
    assert 0 <= metrics['vqa/acc'] <= 100
    assert {'vqa/acc_number', 'vqa/acc_other', 'vqa/acc_yes_no'} <= set(metrics)
    rows = json.loads(preds.read_text())
    assert sorted(r['question_id'] for r in rows) == [1001, 1002, 1003, 1004]
    assert all(isinstance(r['text'], str) and 'USER' in r['prompt'] for r in rows)
    # The same predictions scored offline give the same numbers.
    from mmllava.evaluation.offline import evaluate_predictions
    offline = evaluate_predictions('vqa', preds, [DATA / 'vqav2_val_annotations.json'])
    assert offline['vqa/acc'] == pytest.approx(metrics['vqa/acc'])


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_is_refused(tmp_path, converted):
    import torch
    from safetensors.torch import save_file
    config = write_eval_config(tmp_path, converted)
    bad = tmp_path / 'bad.safetensors'
    save_file({'projector.weight': torch.zeros(2, 2)}, str(bad))
    proc = run_test_tool(config, bad, tmp_path / 'work')
    assert proc.returncode != 0
    assert 'missing keys' in proc.stderr


# ------------------------------------------------------------------ unreadable samples
ACTIONS = ['walking', 'running', 'jumping']


def write_action_eval_config(tmp_path: Path, converted: Path) -> Path:
    """A video list of 2 good clips, a 0-byte mp4, a truncated mp4 and a missing path."""
    pytest.importorskip('av')
    from fixtures_llava import NUM_IMAGE_TOKENS

    from mmllava.utils.video_io import write_mp4
    videos = tmp_path / 'videos'
    videos.mkdir()
    rng = np.random.default_rng(0)
    for name in ('a', 'b'):
        write_mp4(str(videos / f'{name}.mp4'),
                  rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    data = (videos / 'a.mp4').read_bytes()
    (videos / 'cut.mp4').write_bytes(data[:len(data) // 2])
    (videos / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'test_list.txt').write_text(
        'a.mp4 0\nempty.mp4 1\ncut.mp4 2\nb.mp4 1\nnope.mp4 0\n')
    dataset = dict(type='ActionListDataset', data_root=str(tmp_path), ann_file='test_list.txt',
                   label_map=ACTIONS, img_prefix='videos')
    load = dict(type='LoadVisuals', num_frames=2, num_image_tokens=NUM_IMAGE_TOKENS)
    config = write_tiny_eval_config(tmp_path / 'action_eval.py', converted, dataset,
                                    dict(type='ActionAccuracy'),
                                    batch_size=5, max_new_tokens=2, load_step=load)
    return Path(config)  # the dataset's classes: ranked by the model, scored by the metric


@pytest.mark.slow
def test_unreadable_clips_are_misses_not_a_stop(tmp_path, converted):
    config = write_action_eval_config(tmp_path, converted)
    metrics_file, work = tmp_path / 'metrics.json', tmp_path / 'work'
    proc = run_test_tool(config, converted / 'model.safetensors', work,
                         '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['invalid_samples'] == 3
    assert metrics['action/num_invalid'] == 3 and metrics['action/num_samples'] == 5
    assert metrics['action/top1'] <= 40 and metrics['action/exact_match'] <= 40
    assert metrics['action/invalid_rate'] >= 60  # the three answer nothing
    lines = (work / 'invalid_samples.txt').read_text().splitlines()
    reasons = dict(line.split('\t') for line in lines)
    assert sorted(reasons) == ['cut', 'empty', 'nope']
    videos = tmp_path / 'videos'
    assert f"cannot read video '{videos / 'empty.mp4'}'" in reasons['empty']
    assert f"cannot read video '{videos / 'cut.mp4'}'" in reasons['cut']
    assert reasons['nope'] == f"{tmp_path / 'test_list.txt'}:5: file not found: " \
                              f"'{videos / 'nope.mp4'}'"
    log = proc.stdout + proc.stderr
    assert "Invalid sample 'cut' (scored as a miss)" in log and str(videos / 'cut.mp4') in log
    assert '3 invalid samples' in log


@pytest.mark.slow
def test_fail_on_invalid_stops_at_the_first(tmp_path, converted):
    config = write_action_eval_config(tmp_path, converted)
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--cfg-options', 'test_dataloader.dataset.fail_on_invalid=True')
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]  # one line, after the run's own log
    assert last.startswith('error: bad input (tools/test.py): ') and 'Traceback' not in proc.stderr
    assert f"test_list.txt:5: file not found: '{tmp_path / 'videos' / 'nope.mp4'}'" in last


@pytest.mark.slow
def test_unreadable_images_of_a_benchmark(tmp_path, converted):
    """POPE with a good, a truncated and a missing JPEG: FN and FP, not a stop; offline
    scoring of the predictions agrees."""
    images = tmp_path / 'val2014'
    images.mkdir()
    rng = np.random.default_rng(0)
    for image_id in (1, 2):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
            images / f'COCO_val2014_{image_id:012d}.jpg')
    cut = images / 'COCO_val2014_000000000002.jpg'
    cut.write_bytes(cut.read_bytes()[:300])  # image 3 is missing
    dataset = dict(type='POPEDataset', data_root=str(DATA), ann_file='coco_pope_random.json',
                   img_prefix=str(images))
    config = write_tiny_eval_config(tmp_path / 'pope_eval.py', converted, dataset,
                                    dict(type='POPEMetric'), batch_size=3, max_new_tokens=2)
    preds, metrics_file, work = tmp_path / 'preds.json', tmp_path / 'm.json', tmp_path / 'work'
    proc = run_test_tool(config, converted / 'model.safetensors', work, '--out', preds,
                         '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['invalid_samples'] == 2 and metrics['pope/num_invalid'] == 2
    # Question 2 (label no, truncated) is a false positive, 3 (label yes, missing) a false
    # negative, whatever the tiny model answers for question 1 (label yes).
    assert metrics['pope/acc'] <= 100 / 3 + 1e-6 and metrics['pope/recall'] <= 50
    reasons = dict(line.split('\t') for line in
                   (work / 'invalid_samples.txt').read_text().splitlines())
    assert sorted(reasons) == ['2', '3']
    assert f"cannot read image '{cut}'" in reasons['2']
    assert 'image file not found' in reasons['3'] and 'COCO_val2014_000000000003' in reasons['3']
    from mmllava.evaluation.offline import evaluate_predictions
    offline = evaluate_predictions('pope', preds, [DATA / 'coco_pope_random.json'])
    assert offline['pope/num_invalid'] == 2
    assert offline['pope/acc'] == pytest.approx(metrics['pope/acc'])
    assert offline['pope/f1'] == pytest.approx(metrics['pope/f1'])



def test_invalid_samples_gathered_across_ranks(tmp_path, monkeypatch):
    """InvalidSamplesHook with two ranks (all_gather_object stubbed): one list, without the
    sample a padding sampler gave both ranks, and the count in the metrics."""
    from types import SimpleNamespace

    import mmengine.dist
    from mmengine.logging import MMLogger
    from mmpretrain.structures import DataSample

    from mmllava.engine.test_hooks import InvalidSamplesHook

    def sample(sample_id, reason=None):
        return DataSample(metainfo=dict(sample_id=sample_id, **(
            {'invalid_sample': reason} if reason else {})))

    runner = SimpleNamespace(work_dir=str(tmp_path), logger=MMLogger.get_instance('hook_test'))
    hook = InvalidSamplesHook()
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, outputs=[sample('a'), sample('b', 'cannot read\nvideo b')])
    other_rank = [('c', 'video not found: c.mp4'), ('b', 'cannot read video b')]  # b: padding
    monkeypatch.setattr(mmengine.dist, 'all_gather_object', lambda obj: [obj, other_rank])
    metrics = {'action/top1': 50.0}
    hook.after_test_epoch(runner, metrics)
    assert metrics['invalid_samples'] == 2
    assert (tmp_path / 'invalid_samples.txt').read_text() == (
        'b\tcannot read video b\nc\tvideo not found: c.mp4\n')
