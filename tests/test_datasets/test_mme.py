"""MMEDataset on a release folder in the official layouts, its config, tools/test.py end to end.

The fixture ``tests/data/mme/MME_Benchmark_release_version`` has four subtasks: existence (two
images, image/.txt pairs, one .txt with CRLF line ends), artwork (two images, ``images/`` +
``questions_answers_YN/``), celebrity (one image, ``images/`` layout, its first question with
the two spaces before "Please answer yes or no." that some official files have) and
code_reasoning (one .png, pairs). 12 questions in all.
"""
import json
import shutil
from pathlib import Path

import pytest
from mmengine.config import Config

from mmllava.datasets import MMEDataset
from mmllava.datasets.annotations import AnnotationError
from mmllava.registry import DATASETS, METRICS

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / 'tests' / 'data' / 'mme' / 'MME_Benchmark_release_version'
SHORT = 'Answer the question using a single word or phrase.'


def samples(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_reads_both_layouts_with_llava_prompt():
    data = {s['question_id']: s for s in samples(MMEDataset(data_root=str(RELEASE)))}
    assert len(data) == 12
    # Perception subtasks first, in calculation.py's order, then cognition; files sorted.
    assert list(data)[:2] == ['existence/000000015517.jpg#1', 'existence/000000015517.jpg#2']
    assert list(data)[-1] == 'code_reasoning/0020.png#2'
    # Pairs layout: the image next to its .txt; the CRLF file reads the same.
    s = data['existence/000000015517.jpg#1']
    assert s['images'] == [str(RELEASE / 'existence' / '000000015517.jpg')]
    assert s['messages'] == [dict(role='user', content=(
        f'<image>\nIs there a cow in this image?\n{SHORT}'))]
    assert (s['gt_answer'], s['category']) == ('No', 'existence')
    assert s['question'] == 'Is there a cow in this image? Please answer yes or no.'
    # images/ + questions_answers_YN/ layout.
    s = data['artwork/9405.jpg#2']
    assert s['images'] == [str(RELEASE / 'artwork' / 'images' / '9405.jpg')]
    assert s['messages'][0]['content'] == (
        f'<image>\nIs this artwork created by milani, aureliano?\n{SHORT}')
    # Two spaces before the instruction: LLaVA's prompt has none left (llava_mme.jsonl).
    s = data['celebrity/tt0096320_shot_0085_img_0.jpg#1']
    assert s['messages'][0]['content'] == (
        '<image>\nIs the actor inside the red bounding box called Arnold Schwarzenegger?\n'
        f'{SHORT}')
    # The cognition subtasks' images are .png.
    assert data['code_reasoning/0020.png#1']['images'][0].endswith('code_reasoning/0020.png')
    assert sum(s['gt_answer'] == 'Yes' for s in data.values()) == 6


def test_subtasks_and_mme_prompt():
    dataset = MMEDataset(ann_file='MME_Benchmark_release_version', data_root=str(RELEASE.parent),
                         subtasks=['code_reasoning'], keep_instruction=True, prompt_suffix='')
    got = [s['messages'][0]['content'] for s in samples(dataset)]
    assert got == ['<image>\nIs a python code shown in the picture? Please answer yes or no.',
                   '<image>\nIs a c++ code shown in the picture? Please answer yes or no.']
    # One subtask folder alone works too.
    assert len(MMEDataset(ann_file=str(RELEASE / 'artwork'))) == 4
    with pytest.raises(ValueError, match='unknown subtasks'):
        MMEDataset(data_root=str(RELEASE), subtasks=['ocr'])  # the folder is 'OCR'
    with pytest.raises(AnnotationError, match=r"no subtask folder \['OCR'\]"):
        MMEDataset(data_root=str(RELEASE), subtasks=['OCR'])


def test_missing_image_is_a_scored_miss(tmp_path):
    root = tmp_path / 'MME_Benchmark_release_version'
    shutil.copytree(RELEASE, root)
    (root / 'artwork' / 'images' / '14777.jpg').unlink()
    dataset = MMEDataset(data_root=str(root), pipeline=[])
    missing = [s for s in samples(dataset) if s.get('invalid_sample')]
    assert [s['question_id'] for s in missing] == ['artwork/14777.jpg#1', 'artwork/14777.jpg#2']
    assert '14777.jpg' in missing[0]['invalid_sample']
    with pytest.raises(ValueError, match='image file not found'):
        MMEDataset(data_root=str(root), fail_on_invalid=True)


@pytest.mark.parametrize('text, error', [
    ('Is there a cat? Please answer yes or no.\n', 'expected "question<TAB>answer"'),
    ('Is there a cat? Please answer yes or no.\tMaybe\nIs there a dog?\tNo\n',
     'must be Yes or No'),
    ('Is there a cat? Please answer yes or no.\tYes\n', 'two questions'),
])
def test_malformed_txt(tmp_path, text, error):
    folder = tmp_path / 'existence'
    shutil.copytree(RELEASE / 'existence', folder)
    (folder / '000000494427.txt').write_text(text)
    with pytest.raises(AnnotationError, match=error) as info:
        MMEDataset(ann_file=str(folder))
    assert '000000494427.txt' in str(info.value)


def test_images_layout_needs_questions_folder(tmp_path):
    shutil.copytree(RELEASE / 'artwork' / 'images', tmp_path / 'artwork' / 'images')
    with pytest.raises(AnnotationError, match='no questions_answers_YN'):
        MMEDataset(ann_file=str(tmp_path / 'artwork'))


def test_eval_config_builds(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'llava' / 'llava-7b-v1.5_mme_eval.py'))
    assert cfg.model.generation_cfg.do_sample is False
    assert cfg.model.generation_cfg.max_new_tokens <= 16
    dataset = cfg.test_dataloader.dataset
    assert dataset.test_mode and dataset.type == 'MMEDataset'
    assert dataset.prompt_suffix == SHORT
    dataset.update(data_root=str(RELEASE), pipeline=[])
    assert len(DATASETS.build(dataset)) == 12
    metric = METRICS.build(cfg.test_evaluator)
    assert not metric.prefix and metric.rule == 'mme'  # bare keys


@pytest.mark.slow
def test_mme_test_tool_matches_offline_scoring(tmp_path):
    """tools/test.py with the tiny model on the fixture: the metrics equal the offline
    scoring of its --out file."""
    from fixtures_llava import run_test_tool, shared_build, write_tiny_eval_config

    from mmllava.evaluation.offline import evaluate_predictions
    converted = Path(shared_build()['converted']['llava-hf'])
    config = write_tiny_eval_config(tmp_path / 'mme_eval.py', converted,
                                    dict(type='MMEDataset', data_root=str(RELEASE)),
                                    dict(type='MMEMetric'), batch_size=6, max_new_tokens=2)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['num_samples'] == 12
    for key in ('perception', 'cognition', 'existence', 'artwork', 'celebrity',
                'code_reasoning'):
        assert 0 <= metrics[key] <= 200 * (10 if key == 'perception' else 4), key
    assert metrics['OCR'] is None  # no OCR questions in the fixture: NaN, written null
    offline = evaluate_predictions('mme', preds, [RELEASE])
    assert offline['num_missing'] == 0
    for key, value in metrics.items():
        if key in offline:
            assert offline[key] == (pytest.approx(value) if value is not None
                                    else pytest.approx(float('nan'), nan_ok=True)), key
    assert {'perception', 'cognition', 'code_reasoning'} <= set(offline) & set(metrics)
