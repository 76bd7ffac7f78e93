"""MMBenchDataset on tiny TSVs in the released format: LLaVA's prompts, the rotations, the
circular copies of the released files, base64 pictures, and the eval configs."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mmengine.config import Config

from mmllava.datasets import MMBenchDataset
from mmllava.datasets.annotations import AnnotationError
from mmllava.datasets.invalid_samples import INVALID_SAMPLE
from mmllava.datasets.mmbench import decode_image, read_mmbench_tsv
from mmllava.registry import DATASETS, METRICS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'mmbench'
TINY = DATA / 'mmbench_dev_tiny.tsv'  # no copies: rotated here
CIRCULAR = DATA / 'mmbench_dev_circular_tiny.tsv'  # copies at index + k * 1e6, as released
MC = "Answer with the option's letter from the given choices directly."


def infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_rotations_prompts_and_answers():
    data = infos(MMBenchDataset(ann_file=str(TINY)))
    # 4 + 3 + 2 options: every rotation asked, in order.
    assert [(s['question_id'], s['index'], s['rotation']) for s in data] == [
        ('0', 0, 0), ('0_r1', 0, 1), ('0_r2', 0, 2), ('0_r3', 0, 3),
        ('1', 1, 0), ('1_r1', 1, 1), ('1_r2', 1, 2), ('2', 2, 0), ('2_r1', 2, 1)]
    assert all(s['sample_id'] == s['question_id'] for s in data)
    # LLaVA's model_vqa_mmbench.py: hint + '\n' + question, '\n{L}. {option}', the suffix.
    assert data[0]['messages'] == [dict(role='user', content=(
        '<image>\nThe picture shows one shape.\nWhat is the color of the square?\n'
        f'A. red\nB. green\nC. blue\nD. yellow\n{MC}'))]
    # Rotation 1: options[1:] + options[:1]; the answer (blue, C) follows to B.
    assert data[1]['messages'][0]['content'] == (
        '<image>\nThe picture shows one shape.\nWhat is the color of the square?\n'
        f'A. green\nB. blue\nC. yellow\nD. red\n{MC}')
    assert [s['gt_answer'] for s in data] == ['C', 'B', 'A', 'D', 'A', 'C', 'B', 'A', 'B']
    assert data[3]['choices'] == ['yellow', 'red', 'green', 'blue']
    # NaN hint (empty cell): no hint line; D empty: three options.
    assert data[5]['messages'][0]['content'] == (
        '<image>\nWhich option describes the picture?\n'
        f'A. a dot\nB. nothing\nC. a stripe\n{MC}')
    assert data[5]['question'] == ('Which option describes the picture?\n'
                                   'A. a dot\nB. nothing\nC. a stripe')
    # hint "none": no hint either (LLaVA's is_none).
    assert data[8]['messages'][0]['content'] == (
        f'<image>\nIs the image bright?\nA. no\nB. yes\n{MC}')
    assert data[0]['category'] == 'attribute_recognition'
    assert data[0]['l2_category'] == 'finegrained_perception (instance-level)'
    # The picture is decoded from base64, in memory: row 0 is a blue square.
    image = data[2]['images'][0]
    assert image.size == (8, 8) and np.asarray(image.convert('RGB'))[0, 0].tolist() == [0, 0, 255]


def test_not_circular_asks_each_question_once():
    data = infos(MMBenchDataset(ann_file=str(TINY), circular=False, prompt_suffix=''))
    assert [s['question_id'] for s in data] == ['0', '1', '2']
    assert data[2]['messages'][0]['content'] == '<image>\nIs the image bright?\nA. yes\nB. no'


def test_released_circular_copies_are_asked_as_written():
    data = infos(MMBenchDataset(ann_file=str(CIRCULAR)))
    assert [(s['question_id'], s['rotation'], s['gt_answer']) for s in data] == [
        ('0', 0, 'B'), ('5', 0, 'C'), ('1000000', 0, 'A'), ('1000005', 0, 'B'),
        ('2000005', 0, 'A')]
    assert data[3]['messages'][0]['content'] == (
        f'<image>\nA sign in a street.\nWhat does the sign say?\nA. go\nB. wait\nC. stop\n{MC}')
    # Row 1000000's "image" is "0": the picture of row 0 (VLMEvalKit's copies).
    assert np.array_equal(np.asarray(data[2]['images'][0]), np.asarray(data[0]['images'][0]))
    once = infos(MMBenchDataset(ann_file=str(CIRCULAR), circular=False))
    assert [s['question_id'] for s in once] == ['0', '5']


def test_test_split_without_answers(tmp_path):
    df = pd.read_csv(TINY, sep='\t').drop(columns=['answer'])
    df.to_csv(tmp_path / 'test.tsv', sep='\t', index=False)
    data = infos(MMBenchDataset(ann_file=str(tmp_path / 'test.tsv')))
    assert len(data) == 9 and all(s['gt_answer'] is None for s in data)


def _write_tsv(path, rows):
    cols = ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'answer', 'category', 'image']
    lines = ['\t'.join(cols)] + ['\t'.join(str(r.get(c, '')) for c in cols) for r in rows]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_unreadable_or_missing_picture_is_a_miss(tmp_path):
    good = read_mmbench_tsv(str(TINY))[0].image
    path = _write_tsv(tmp_path / 'bad.tsv', [
        dict(index=0, question='q', A='x', B='y', answer='A', image='bm90IGFuIGltYWdl'),
        dict(index=1, question='q', A='x', B='y', answer='B', image=''),
        dict(index=2, question='q', A='x', B='y', answer='B', image=good)])
    dataset = MMBenchDataset(ann_file=path, circular=False)
    data = infos(dataset)
    assert 'does not decode' in data[0][INVALID_SAMPLE] and 'row 0' in data[0][INVALID_SAMPLE]
    assert 'no image' in data[1][INVALID_SAMPLE]
    assert INVALID_SAMPLE not in data[2]
    with pytest.raises(ValueError, match='no image'):
        MMBenchDataset(ann_file=path, fail_on_invalid=True)
    with pytest.raises(ValueError, match='no image'):
        decode_image('')


@pytest.mark.parametrize('rows, message', [
    ([dict(index=0, question='q', A='x', answer='A', image='x')], 'needs "A" and "B"'),
    ([dict(index=0, question='q', A='x', B='y', answer='C', image='x')], 'must be one of'),
    ([dict(index='a', question='q', A='x', B='y', image='x')], 'must be an integer'),
    ([dict(index=1, question='q', A='x', B='y', image='x')] * 2, 'appears twice'),
    ([dict(index=1000003, question='q', A='x', B='y', image='x')], 'circular copy of question 3'),
    ([dict(index=1, question='q', A='x', B='y', image='7')], 'neither base64'),
])
def test_malformed_tsv(tmp_path, rows, message):
    with pytest.raises(AnnotationError, match=message):
        read_mmbench_tsv(_write_tsv(tmp_path / 'x.tsv', rows))


def test_missing_column(tmp_path):
    (tmp_path / 'x.tsv').write_text('index\tquestion\tA\n0\tq\tx\n')
    with pytest.raises(AnnotationError, match="no column 'B', 'image'"):
        read_mmbench_tsv(str(tmp_path / 'x.tsv'))
    with pytest.raises(FileNotFoundError, match='not found'):
        MMBenchDataset(ann_file=str(tmp_path / 'none.tsv'))


@pytest.mark.parametrize('config', ['configs/_base_/datasets/mmbench_eval.py',
                                    'configs/llava/llava-7b-v1.5_mmbench_eval.py'])
def test_configs_build(config):
    cfg = Config.fromfile(str(ROOT / config))
    ds = cfg.test_dataloader.dataset
    assert ds.type == 'MMBenchDataset' and ds.ann_file == 'mmbench_dev_20230712.tsv'
    assert ds.get('circular', True) is True
    dataset = DATASETS.build(dict(ds, data_root='', ann_file=str(TINY), pipeline=[]))
    assert len(dataset) == 9
    metric = METRICS.build(cfg.test_evaluator)
    assert type(metric).__name__ == 'MMBenchMetric' and not metric.prefix
    if 'llava/' in config:
        assert cfg.model.generation_cfg.do_sample is False
        json.dumps(cfg.model.generation_cfg.to_dict())
