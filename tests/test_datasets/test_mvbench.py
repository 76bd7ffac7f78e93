"""MVBench: the release's files read as the authors' notebook reads them (task table, frame
indices, prompt), and tools/test.py on the tiny model scored as offline."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmllava.datasets import MVBenchDataset
from mmllava.datasets.mvbench import MVBENCH_SYSTEM, mvbench_frame_indices
from mmllava.datasets.transforms import LoadVisuals
from mmllava.evaluation.metrics import MVBenchMetric

# Three tasks of the release: a video task with bounds, a frame-folder task with bounds (3
# fps), a video task without bounds (its second video is missing: a scored miss).
SEQ = [dict(video='clip1.mp4', question='What did the person do first?',
            candidates=['Opened the door.', 'Sat on the bed.', 'Took the cup.'],
            answer='Sat on the bed.', start=1.0, end=3.5),
       dict(video='clip2.mp4', question='What happened next?',
            candidates=['Ran.', 'Ate.'], answer='Ran.', start=0.0, end=9.0)]
EPISODIC = [dict(video='s01e01_seg01', question='Why is he late?',
                 candidates=['Traffic', 'Overslept', 'Lost keys', 'Bus'], answer='Bus',
                 start=2.0, end=5.0)]
ANTONYM = [dict(video='100.webm', question='What is the action?',
                candidates=['pushing', 'pulling', 'not sure'], answer='pulling'),
           dict(video='missing.webm', question='What is the action?',
                candidates=['lifting', 'dropping', 'not sure'], answer='not sure')]
TASKS = ['action_sequence', 'episodic_reasoning', 'action_antonym']


def flat_clip(n, value=lambda i: 5 * i):
    """(n, 32, 32, 3) frames, frame i a flat grey of ``value(i)``: decodable back to i."""
    return np.stack([np.full((32, 32, 3), value(i), np.uint8) for i in range(n)])


def make_mvbench_root(root: Path) -> Path:
    """A tiny MVBench release: json/<task>.json and video/<prefix>/..."""
    from mmllava.utils.video_io import write_mp4
    (root / 'json').mkdir(parents=True)
    for task, recs in zip(TASKS, (SEQ, EPISODIC, ANTONYM)):
        (root / 'json' / f'{task}.json').write_text(json.dumps(recs))
    star = root / 'video' / 'star' / 'Charades_v1_480'
    star.mkdir(parents=True)
    write_mp4(str(star / 'clip1.mp4'), flat_clip(50), fps=10)  # 5 s
    write_mp4(str(star / 'clip2.mp4'), flat_clip(20), fps=10)
    frames = root / 'video' / 'tvqa' / 'frames_fps3_hq' / 's01e01_seg01'
    frames.mkdir(parents=True)
    for k in range(1, 21):  # 00001.jpg ... 00020.jpg, file k a grey of 10 * k
        Image.fromarray(np.full((32, 32, 3), 10 * k, np.uint8)).save(frames / f'{k:05d}.jpg')
    ssv2 = root / 'video' / 'ssv2_video'
    ssv2.mkdir(parents=True)
    write_mp4(str(ssv2 / '100.mp4'), flat_clip(12), fps=12)
    (ssv2 / '100.mp4').rename(ssv2 / '100.webm')  # PyAV reads it by its content
    return root


@pytest.fixture
def root(tmp_path):
    return make_mvbench_root(tmp_path / 'MVBench')


def grey_levels(frames):
    return [int(round(float(f.mean()))) for f in frames]


def test_frame_indices_by_hand():
    # Video, 50 frames at 10 fps, bound 1.0-3.5 s: start 10, end 35, segments of 6.25.
    assert mvbench_frame_indices(50, 10.0, 4, (1.0, 3.5)) == [13, 19, 25, 32]
    # No bound: start 0, end 49 (the last frame), segments of 12.25 (np.round(24.5) == 24).
    assert mvbench_frame_indices(50, 10.0, 4) == [6, 18, 30, 43]
    # Frame folder of 20 files at 3 fps, bound 2-5 s: files 6..15 -> files 7, 9, 11, 14.
    assert mvbench_frame_indices(20, None, 4, (2.0, 5.0), 'frame') == [6, 8, 10, 13]
    # GIF at 25 fps whatever it states: 10 frames, bound 0.1-0.3 s: round(2.5) == 2, 8.
    assert mvbench_frame_indices(10, 7.0, 4, (0.1, 0.3), 'gif') == [2, 4, 5, 6]
    assert mvbench_frame_indices(10, None, 4, None, 'gif') == [1, 3, 5, 8]
    with pytest.raises(ValueError, match='frame rate'):
        mvbench_frame_indices(10, None, 4)


def test_samples_prompt_and_frames(root):
    ds = MVBenchDataset(data_root=str(root), tasks=TASKS)
    assert len(ds) == 5
    info = ds.get_data_info(0)
    assert info['question_id'] == 'action_sequence/0'
    assert info['category'] == 'action_sequence'
    assert info['gt_answer'] == '(B) Sat on the bed.'
    assert info['answer_prefix'] == 'Best option:('
    question = ('Question: What did the person do first?\nOptions:\n(A) Opened the door.\n'
                '(B) Sat on the bed.\n(C) Took the cup.\nOnly give the best option.')
    # The notebook's system_llm=True: the system text in its slot and again before the question.
    assert info['messages'] == [dict(role='system', content=MVBENCH_SYSTEM),
                                dict(role='user', content=f'<video>\n{MVBENCH_SYSTEM}{question}')]
    once = MVBenchDataset(data_root=str(root), tasks=TASKS, repeat_system=False)
    assert once.get_data_info(0)['messages'][1]['content'] == f'<video>\n{question}'
    assert MVBENCH_SYSTEM.endswith('accurately addresses the question.\n')
    assert 'answer_candidates' not in info
    load = LoadVisuals(num_frames=4, num_image_tokens=2)
    out = load(dict(info))
    assert grey_levels(out['images']) == pytest.approx([65, 95, 125, 160], abs=3)  # 5 * idx
    frames = load(dict(ds.get_data_info(2)))  # episodic reasoning: files 7, 9, 11, 14
    assert grey_levels(frames['images']) == pytest.approx([70, 90, 110, 140], abs=3)
    assert frames['img_paths'][0].endswith('s01e01_seg01')
    # The miss: its video is absent, the sample is kept and marked.
    missing = ds.get_data_info(4)
    assert missing['question_id'] == 'action_antonym/1' and missing.get('invalid_sample')


def test_prompt_through_the_template_and_ranked_options(root):
    from mmllava.conversation import SentencePieceTokenizer
    from mmllava.datasets.transforms import TokenizeConversation
    tok = SentencePieceTokenizer(str(Path(__file__).parents[2] / 'resources/tiny-tokenizer'))
    ds = MVBenchDataset(data_root=str(root), tasks=['action_antonym'], rank_options=True,
                        repeat_system=True)
    info = ds.get_data_info(0)
    assert info['answer_candidates'] == ['A) pushing', 'B) pulling', 'C) not sure']
    out = TokenizeConversation(tok, 'vicuna_v1', num_image_tokens=1,
                               add_generation_prompt=True)(info)
    question = ('Question: What is the action?\nOptions:\n(A) pushing\n(B) pulling\n'
                '(C) not sure\nOnly give the best option.')
    assert out['prompt'] == (f'{MVBENCH_SYSTEM} USER: <video>\n{MVBENCH_SYSTEM}{question} '
                             'ASSISTANT: Best option:(')
    assert len(out['candidate_ids']) == 3


def test_gif_and_missing_task_folder(tmp_path, root):
    from mmllava.datasets.mvbench import _frame_indices
    frames = [Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)) for i in range(10)]
    frames[0].save(tmp_path / 'a.gif', save_all=True, append_images=frames[1:], duration=100)
    from functools import partial
    out = LoadVisuals(num_frames=4, num_image_tokens=1)(dict(
        videos=[str(tmp_path / 'a.gif')], images=[], messages=[dict(role='user',
                                                                   content='<video>')],
        frame_index_fn=partial(_frame_indices, bound=(0.1, 0.3), data_type='gif')))
    assert grey_levels(out['images']) == [40, 80, 100, 120]  # frames 2, 4, 5, 6
    (root / 'json' / 'action_count.json').write_text(json.dumps(ANTONYM))
    with pytest.raises(FileNotFoundError, match="task 'action_count': video folder"):
        MVBenchDataset(data_root=str(root), tasks=['action_count'])
    with pytest.raises(FileNotFoundError) as error:
        MVBenchDataset(data_root=str(root))  # all 20 by default: the absent ones named
    assert "task 'object_shuffle': task file" in str(error.value)
    assert "task 'action_sequence'" not in str(error.value)
    with pytest.raises(ValueError, match='unknown tasks'):
        MVBenchDataset(data_root=str(root), tasks=['nope'])


def test_malformed_records(root):
    from mmllava.datasets.annotations import AnnotationError
    bad = dict(SEQ[0], answer='Flew away.')
    (root / 'json' / 'action_sequence.json').write_text(json.dumps([SEQ[1], bad]))
    with pytest.raises(AnnotationError, match=r'action_sequence.json: record #1: "answer"'):
        MVBenchDataset(data_root=str(root), tasks=['action_sequence'])
    (root / 'json' / 'action_sequence.json').write_text(json.dumps([dict(SEQ[0], end=None)]))
    with pytest.raises(AnnotationError, match='record #0: task .* "start" and "end"'):
        MVBenchDataset(data_root=str(root), tasks=['action_sequence'])


@pytest.mark.parametrize('config', ['llava-onevision-qwen2-7b-ov_mvbench_eval.py',
                                    'llava-video-7b-qwen2_mvbench_eval.py'])
def test_eval_configs_build(root, config):
    from mmengine.config import Config

    from mmllava.registry import DATASETS, METRICS, TRANSFORMS
    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs/llava_onevision' / config))
    loader = cfg.test_dataloader
    steps = [step['type'] for step in loader.dataset.pipeline]
    assert steps == ['LoadVisuals', 'ResizeSquare', 'TokenizeConversation', 'PackLlavaInputs']
    assert loader.dataset.pipeline[2]['template'] == 'qwen_1_5'
    ds = DATASETS.build(dict(loader.dataset, data_root=str(root), tasks=TASKS, pipeline=[]))
    assert len(ds) == 5 and ds.answer_prefix == 'Best option:('
    load = TRANSFORMS.build(loader.dataset.pipeline[0])
    assert len(load(ds.get_data_info(0))['images']) == 16
    assert isinstance(METRICS.build(cfg.test_evaluator), MVBenchMetric)


@pytest.mark.slow
def test_test_tool_matches_offline_scoring(tmp_path, root):
    """tools/test.py with the tiny model, option ranking on: both accuracies as offline."""
    from fixtures_llava import NUM_IMAGE_TOKENS, run_test_tool, shared_build, write_tiny_eval_config

    from mmllava.evaluation.offline import evaluate_predictions
    converted = Path(shared_build()['converted']['llava-hf'])
    # The tiny model's context is 256 tokens: a short system text (the prompt is tested above).
    dataset = dict(type='MVBenchDataset', data_root=str(root), tasks=TASKS, rank_options=True,
                   system_prompt='Watch.\n')
    load = dict(type='LoadVisuals', num_frames=2, num_image_tokens=NUM_IMAGE_TOKENS)
    config = write_tiny_eval_config(tmp_path / 'mvbench_eval.py', converted, dataset,
                                    dict(type='MVBenchMetric'), batch_size=5,
                                    max_new_tokens=3, load_step=load)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    rows = json.loads(preds.read_text())
    assert sorted(r['question_id'] for r in rows) == sorted(
        [f'action_sequence/{i}' for i in range(2)] + ['episodic_reasoning/0'] +
        [f'action_antonym/{i}' for i in range(2)])
    assert all(r['prompt'].endswith(' ASSISTANT: Best option:(') for r in rows
               if not r.get('invalid_sample'))
    assert metrics['mvbench/num_samples'] == 5 and metrics['mvbench/num_invalid'] == 1
    for key in ('mean', 'overall', 'likelihood/mean', *TASKS, *(f'likelihood/{t}' for t in TASKS)):
        assert 0 <= metrics[f'mvbench/{key}'] <= 100, key
    offline = evaluate_predictions('mvbench', str(preds), [str(root)])
    for key, value in metrics.items():
        if key.startswith('mvbench/'):
            assert offline[key] == pytest.approx(value), key
    assert offline['mvbench/num_missing'] == 0
