"""SEEDBenchDataset on a fixture in the release's format: prompts, selection, video sources,
SEED-Bench's frame choice, likelihood ranking, the configs, and tools/test.py end to end."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmllava.datasets import SEEDBenchDataset, SEEDBenchLoadVisuals
from mmllava.datasets.seed_bench import _video_frame_indices, seed_frame_indices

ROOT = Path(__file__).parents[2]
ANN = ROOT / 'tests' / 'data' / 'seed_bench' / 'SEED-Bench.json'
IMAGE_IDS = ['1454426_2591111986', '1454427_2591111987', '1454428_2591111988',
             '1454429_2591111989', '1454430_2591111990']
VIDEO_QIDS = {'v1': 10, 'v4': 10, 'v2': 11, 'v3': 12, 'v5': 12}


def make_root(tmp_path, frames=False, llava_frames=False):
    """The release's folders under tmp_path: images, and the video questions' frames."""
    root = tmp_path / 'seed_bench'
    (root / 'SEED-Bench-image').mkdir(parents=True)
    shutil.copy(ANN, root / 'SEED-Bench.json')
    for n, name in enumerate(IMAGE_IDS):
        Image.new('RGB', (12, 10), (40 * n, 90, 200)).save(root / 'SEED-Bench-image' / name,
                                                            format='JPEG')
    if llava_frames:
        (root / 'SEED-Bench-video-image').mkdir()
        for qid, dim in VIDEO_QIDS.items():
            Image.new('RGB', (12, 10), (9, 9, 9)).save(
                root / 'SEED-Bench-video-image' / f'{dim}_{qid}.png')
    if frames:
        sub = {10: 'ssv2_8_frame', 11: 'kitchen_8_frame', 12: 'breakfast_8_frame'}
        for qid, dim in VIDEO_QIDS.items():
            folder = root / 'v1_video' / f'task{dim}' / sub[dim] / qid
            folder.mkdir(parents=True)
            for i in range(1, 9):
                Image.new('RGB', (8, 8), (30 * i, 0, 0)).save(folder / f'{i}.png')
    return root


def build(root, **kwargs):
    return SEEDBenchDataset(ann_file='SEED-Bench.json', data_root=str(root), **kwargs)


def infos(dataset):
    return {dataset.get_data_info(i)['question_id']: dataset.get_data_info(i)
            for i in range(len(dataset))}


def test_letter_prompt_and_fields(tmp_path):
    root = make_root(tmp_path, llava_frames=True)
    samples = infos(build(root))
    assert len(samples) == 10
    s = samples['1003']
    assert s['messages'] == [dict(role='user', content=(
        "<image>\nHow many towels are in the image?\nA. One\nB. Two\nC. Three\nD. Four\n"
        "Answer with the option's letter from the given choices directly."))]
    assert s['images'] == [str(root / 'SEED-Bench-image' / '1454429_2591111989')]
    assert (s['gt_answer'], s['category'], s['data_type']) == ('C', 'Instances Counting', 'image')
    assert s['choices'] == ['One', 'Two', 'Three', 'Four'] and 'answer_candidates' not in s
    # LLaVA's middle frames: the video question asked as an image of its extracted frame.
    v = samples['v2']
    assert v['images'] == [str(root / 'SEED-Bench-video-image' / '11_v2.png')]
    assert v['messages'][0]['content'].startswith('<image>\nPlease anticipate what action')
    assert (v['category'], v['data_type']) == ('Action Prediction', 'video')


def test_selection_by_dims_and_data_type(tmp_path):
    root = make_root(tmp_path, llava_frames=True)
    assert sorted(infos(build(root, dims=[10]))) == ['v1', 'v4']
    assert sorted(infos(build(root, dims=['Scene Understanding', 12]))) == [
        '1001', '1002', '1005', 'v3', 'v5']
    assert sorted(infos(build(root, data_type='image'))) == ['1001', '1002', '1003', '1004',
                                                             '1005']
    assert sorted(infos(build(root, data_type='video'))) == sorted(VIDEO_QIDS)
    assert sorted(infos(build(root, data_type='video', dims=[11, 1]))) == ['v2']
    with pytest.raises(ValueError, match=r"dims \[13\] are not dimensions"):
        build(root, dims=[13])
    with pytest.raises(ValueError, match='data_type must be one of'):
        build(root, data_type='audio')


def test_likelihood_switch_carries_answer_candidates(tmp_path):
    root = make_root(tmp_path, llava_frames=True)
    s = infos(build(root, rank_options=True))['1003']
    assert s['answer_candidates'] == ['One', 'Two', 'Three', 'Four']
    # SEED-Bench's own prompt: the question alone, the choice texts are what is scored.
    assert s['messages'][0]['content'] == '<image>\nHow many towels are in the image?'


def test_missing_image_is_a_scored_miss(tmp_path):
    root = make_root(tmp_path, llava_frames=True)
    (root / 'SEED-Bench-image' / IMAGE_IDS[0]).unlink()
    samples = infos(build(root))
    assert 'file not found' in samples['1001']['invalid_sample']
    assert 'invalid_sample' not in samples['1002']


def test_released_frames_as_clip_or_middle_frame(tmp_path):
    root = make_root(tmp_path, frames=True)
    s = infos(build(root, video_source='frames', video_prefix='v1_video', dims=[12]))['v3']
    folder = root / 'v1_video' / 'task12' / 'breakfast_8_frame' / 'v3'
    assert s['seed_video']['frames'] == [str(folder / f'{i}.png') for i in range(1, 9)]
    assert s['messages'][0]['content'].startswith('<video>\n') and s['images'] == []
    out = SEEDBenchLoadVisuals(num_frames=8, num_image_tokens=4).transform(dict(s))
    assert [int(f[0, 0, 0]) for f in out['images']] == [30 * i for i in range(1, 9)]
    assert out['visual_kinds'] == ['video'] and out['visual_frames'] == [8]
    middle = infos(build(root, video_source='frames', video_prefix='v1_video', dims=[12],
                         video_frames='middle'))['v3']
    assert middle['messages'][0]['content'].startswith('<image>\n')
    out = SEEDBenchLoadVisuals(num_frames=8, num_image_tokens=4).transform(dict(middle))
    assert [int(f[0, 0, 0]) for f in out['images']] == [120]  # 4.png, get_index(8, 1) = 3


def test_seed_frame_choice_by_hand():
    # get_index(29, 4): s = 28/4 = 7, int(3.5) = 3, 3 + round(7i).
    assert seed_frame_indices(29, 4).tolist() == [3, 10, 17, 24]
    assert seed_frame_indices(3, 8).tolist() == [0, 1, 2]  # fewer frames than asked: all
    # Dimension 10, whole clip of 30 frames: get_index(30 - 1, 4).
    assert _video_frame_indices(30, 15.0, None, 4).tolist() == [3, 10, 17, 24]
    # Dimension 11, [1.0, 1.6] s at 15 fps: frames 15 to 24, get_index(9, 4) = 1,3,5,7.
    assert _video_frame_indices(30, 15.0, [1.0, 1.6], 4).tolist() == [16, 18, 20, 22]
    # Dimension 12, frames [3, 18]: get_index(15, 4): s = 3.5, int(1.75) = 1, 1 + round(3.5i)
    # with NumPy's half-to-even rounding (0, 4, 7, 10), from frame 3.
    assert _video_frame_indices(30, 15.0, [3, 18], 4).tolist() == [4, 8, 11, 14]
    assert _video_frame_indices(30, 15.0, [3, 18], 1).tolist() == [10]  # middle: 3 + 7


def test_source_video_segment_is_decoded_at_seeds_frames(tmp_path):
    from mmllava.utils.video_io import write_mp4
    root = make_root(tmp_path)
    clip = np.repeat(np.arange(30, dtype=np.uint8)[:, None, None, None] * 8, 16, 1)
    clip = np.ascontiguousarray(np.repeat(np.repeat(clip, 16, 2), 3, 3))  # frame i: grey 8i
    path = root / 'videos' / 'P03' / 'P03_24.mp4'
    path.parent.mkdir(parents=True)
    write_mp4(str(path), clip, fps=15)
    s = infos(build(root, video_source='videos', video_prefix='videos', dims=[11]))['v2']
    assert s['seed_video'] == dict(path=str(path), segment=[1.0, 1.6], dimension=11,
                                   mode='clip')
    out = SEEDBenchLoadVisuals(num_frames=4, num_image_tokens=4).transform(dict(s))
    greys = [int(round(float(f.mean()) / 8)) for f in out['images']]
    assert greys == [16, 18, 20, 22]
    # A missing source video is a miss at init (test mode), not an error.
    missing = infos(build(root, video_source='videos', video_prefix='videos', dims=[12]))
    assert all('file not found' in s['invalid_sample'] for s in missing.values())


@pytest.mark.parametrize('config', ['configs/llava/llava-7b-v1.5_seed_bench_eval.py'])
def test_eval_config_builds(config, tmp_path):
    from mmengine.config import Config

    from mmllava.registry import DATASETS, METRICS
    cfg = Config.fromfile(str(ROOT / config))
    root = make_root(tmp_path, llava_frames=True)
    dataset_cfg = dict(cfg.test_dataloader.dataset, data_root=str(root))
    assert dataset_cfg['pipeline'][0]['type'] == 'SEEDBenchLoadVisuals'
    dataset_cfg['pipeline'] = []
    assert len(DATASETS.build(dataset_cfg)) == 10
    from mmllava.evaluation.metrics import SEEDBenchMetric
    metric = METRICS.build(cfg.test_evaluator)
    assert isinstance(metric, SEEDBenchMetric) and metric.letter_rule == 'exact'
    assert cfg.test_dataloader.dataset.video_source == 'llava_frames'  # as LLaVA evaluates


@pytest.mark.slow
def test_seed_bench_test_tool_matches_offline_scoring(tmp_path):
    """tools/test.py with the tiny model, ranking the choices: the run's metrics = offline's."""
    from fixtures_llava import run_test_tool, shared_build, write_tiny_eval_config

    from mmllava.evaluation.offline import evaluate_predictions
    converted = Path(shared_build()['converted']['llava-hf'])
    root = make_root(tmp_path, llava_frames=True)
    dataset = dict(type='SEEDBenchDataset', data_root=str(root), ann_file='SEED-Bench.json',
                   rank_options=True)
    config = write_tiny_eval_config(tmp_path / 'seed_eval.py', converted, dataset,
                                    dict(type='SEEDBenchMetric', prefix='seed'),
                                    batch_size=10, max_new_tokens=1)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['seed/num_samples'] == 10 and metrics['seed/ranked'] == 1
    rows = json.loads(preds.read_text())
    assert all(len(r['pred_scores']) == 4 for r in rows)
    offline = evaluate_predictions('seed_bench', preds, [root / 'SEED-Bench.json'])
    keys = [k for k in metrics if k.startswith('seed/') and k != 'seed/num_missing']
    assert {'seed/image', 'seed/video', 'seed/overall', 'seed/Action Recognition'} <= set(keys)
    for key in keys:
        assert offline[key] == pytest.approx(metrics[key]), key


def test_late_segment_is_decoded_after_a_seek(tmp_path):
    """A segment far into a video (EPIC-KITCHENS): decoded from a seek, the same frames."""
    from mmllava.datasets import seed_bench
    from mmllava.utils.video_io import write_mp4
    clip = np.repeat(np.arange(60, dtype=np.uint8)[:, None, None, None] * 4, 16, 1)
    clip = np.ascontiguousarray(np.repeat(np.repeat(clip, 16, 2), 3, 3))  # frame i: grey 4i
    path = tmp_path / 'long.mp4'
    write_mp4(str(path), clip, fps=10)
    # [4.0, 5.5] s at 10 fps: frames 40 to 55, get_index(15, 4) = 1, 5, 8, 11 -> 41, 45, 48, 51.
    wanted = seed_bench._video_frame_indices(60, 10.0, [4.0, 5.5], 4)
    assert wanted.tolist() == [41, 45, 48, 51]
    seeked = seed_bench._decode_indices(str(path), wanted, fps=10.0)
    assert [int(round(float(f.mean()) / 4)) for f in seeked] == [41, 45, 48, 51]
    sequential = seed_bench._decode_indices(str(path), wanted)  # no fps: no seek
    assert all(np.array_equal(a, b) for a, b in zip(seeked, sequential))
