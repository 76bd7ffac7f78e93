"""ActionAccuracy and ``eval_predictions.py --metric action``, against values by hand."""
import json

import pytest
import torch
from fixtures_llava import run_script
from mmpretrain.structures import DataSample

from mmllava.evaluation import ActionAccuracy
from mmllava.evaluation.metrics import MetricInputError

CLASSES = ['walking', 'walking backward', 'running', 'jumping']


def records(preds, labels, scores=None):
    return [dict(id=i, pred=p, gt=g, scores=None if scores is None else scores[i])
            for i, (p, g) in enumerate(zip(preds, labels))]


def test_text_only_scoring_by_hand():
    metric = ActionAccuracy(CLASSES)
    # right, right (case and period), wrong class, invalid, right, empty
    preds = ['walking', 'Running.', 'jumping', 'dancing', 'walking backward', '']
    labels = [0, 2, 1, 3, 1, 0]
    out = metric.compute_metrics(records(preds, labels))
    assert out['exact_match'] == pytest.approx(100 * 3 / 6)
    assert out['top1'] == out['exact_match']
    assert out['invalid_rate'] == pytest.approx(100 * 2 / 6)
    # per class: walking 1/2, walking backward 1/2, running 1/1, jumping 0/1
    assert out['mean_class_acc'] == pytest.approx(100 * (0.5 + 0.5 + 1 + 0) / 4)
    assert 'top5' not in out and out['num_empty'] == 1


def test_ranked_scores_give_topk():
    metric = ActionAccuracy(CLASSES, topk=(1, 2))
    scores = [[0.1, 0.9, 0.0, 0.0],   # label 1: top1 hit
              [0.5, 0.4, 0.3, 0.2],   # label 1: top2 hit only
              [0.0, 0.1, 0.2, 0.9]]   # label 2: top2 hit only
    out = metric.compute_metrics(records(['x', 'walking', 'running'], [1, 1, 2], scores))
    assert out['top1'] == pytest.approx(100 / 3)
    assert out['top2'] == pytest.approx(100.0)
    assert out['exact_match'] == pytest.approx(100 / 3)  # 'running' == label 2
    assert out['invalid_rate'] == pytest.approx(100 / 3)
    assert out['mean_class_acc'] == pytest.approx(100 * (0.5 + 0) / 2)


def test_answer_is_the_named_class_else_the_ranked_one():
    from mmllava.evaluation.metrics import answer_label, normalize_action
    index = {normalize_action(c): i for i, c in enumerate(CLASSES)}
    ranked_running = [0.1, 0.2, 0.6, 0.1]
    assert answer_label('Walking backward.', ranked_running, index) == 1  # the text wins
    assert answer_label('moonwalking', ranked_running, index) == 2  # names none: ranking
    assert answer_label('', ranked_running, index) == 2
    assert answer_label('jumping', None, index) == 3 and answer_label('x', None, index) == -1
    assert answer_label('x', [0.3, 0.3, 0.2, 0.2], index) == 0  # ties: the first, as top-k
    metric = ActionAccuracy(CLASSES)
    # text right / ranking wrong, text names none / ranking right, both wrong
    rows = records(['walking backward', 'hm', 'running'], [1, 2, 0],
                   [ranked_running, ranked_running, ranked_running])
    out = metric.compute_metrics(rows)
    assert out['answer_acc'] == pytest.approx(200 / 3)
    assert out['top1'] == pytest.approx(100 / 3) and out['exact_match'] == pytest.approx(100 / 3)


def test_process_reads_data_samples():
    metric = ActionAccuracy(CLASSES)
    sample = DataSample().set_gt_label(2)
    sample.set_field('running', 'pred_answer')
    sample.set_field(torch.tensor([0.1, 0.2, 0.6, 0.1]), 'pred_scores')
    sample.set_metainfo(dict(sample_id='clip_0'))
    metric.process(None, [sample])
    out = metric.compute_metrics(metric.results)
    assert out['top1'] == 100.0 and out['exact_match'] == 100.0


def test_bad_labels_and_partial_scores_named():
    metric = ActionAccuracy(CLASSES)
    with pytest.raises(MetricInputError, match="'a'"):
        metric.compute_metrics([dict(id='a', pred='walking', gt=7)])
    with pytest.raises(MetricInputError, match='no class scores'):
        metric.compute_metrics(records(['walking', 'walking'], [0, 0], None)[:1]
                               + [dict(id=1, pred='walking', gt=0, scores=[1, 0, 0, 0])])
    with pytest.raises(ValueError, match='same after normalization'):
        ActionAccuracy(['Walking', 'walking.'])


def test_eval_predictions_action(tmp_path, capsys):
    """The tool's main through run_cli, in this process (as its __main__ runs it)."""
    (tmp_path / 'label_map.txt').write_text('\n'.join(CLASSES) + '\n')
    (tmp_path / 'test_list_videos.txt').write_text('a.mp4 0\nb.mp4 1\nc.mp4 2\n')
    preds = [dict(question_id='a.mp4', text='walking'), dict(question_id='b.mp4', text='walking'),
             dict(question_id='c.mp4', text='running')]
    (tmp_path / 'preds.jsonl').write_text('\n'.join(json.dumps(p) for p in preds))
    tool = 'tools/analysis_tools/eval_predictions.py'
    assert run_script(tool, ['--metric', 'action', '--pred', tmp_path / 'preds.jsonl',
                             '--ann', tmp_path / 'test_list_videos.txt',
                             '--out', tmp_path / 'm.json']) == 0
    metrics = json.loads((tmp_path / 'm.json').read_text())
    assert metrics['action/top1'] == pytest.approx(200 / 3)
    assert metrics['action/mean_class_acc'] == pytest.approx(200 / 3)
    assert metrics['action/invalid_rate'] == 0
    # A label outside the label map: the file and line are named, in one line.
    (tmp_path / 'bad.txt').write_text('a.mp4 0\nb.mp4 9\n')
    capsys.readouterr()
    assert run_script(tool, ['--metric', 'action', '--pred', tmp_path / 'preds.jsonl',
                             '--ann', tmp_path / 'bad.txt']) == 1
    err = capsys.readouterr().err
    assert 'bad.txt:2: label 9 is outside' in err and len(err.splitlines()) == 1


def test_pairs_per_class_and_confusion_matrix_picture(tmp_path):
    out_png = tmp_path / 'cm' / 'confusion_matrix.png'
    metric = ActionAccuracy(CLASSES, topk=(1,), pairs=[('walking', 'walking backward')],
                            per_class=True, confusion_matrix=str(out_png))
    # ranking picks: 0 (right), 0 (wrong: label 1), 1 (right), 3 (right)
    scores = [[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0.2, 0.8, 0, 0], [0, 0, 0.1, 0.9]]
    out = metric.compute_metrics(records(['walking'] * 4, [0, 1, 1, 3], scores))
    assert out['pair_acc/walking|walking backward'] == pytest.approx(100 * 2 / 3)
    assert out['class_acc/walking'] == 100.0 and out['class_acc/walking backward'] == 50.0
    assert out['class_acc/jumping'] == 100.0 and 'class_acc/running' not in out
    from PIL import Image
    with Image.open(out_png) as image:
        assert image.format == 'PNG' and min(image.size) > 300
    with pytest.raises(ValueError, match='not two of the classes'):
        ActionAccuracy(CLASSES, pairs=[('walking', 'flying')])


def test_unreadable_clips_are_misses_everywhere(tmp_path):
    metric = ActionAccuracy(CLASSES, topk=(1, 2), confusion_matrix=str(tmp_path / 'cm.png'))
    # Two readable clips ranked (right, right) and two unreadable ones: no scores, no text.
    # The second unreadable one is "answered" with its true class name and a score row that
    # would rank it right: an invalid record is a miss whatever it holds.
    rows = [dict(id=0, pred='walking', gt=0, scores=[0.9, 0.1, 0, 0]),
            dict(id=1, pred='running', gt=2, scores=[0, 0.1, 0.8, 0.1]),
            dict(id=2, pred='', gt=1, scores=None, invalid=True),
            dict(id=3, pred='jumping', gt=3, scores=[0, 0, 0, 1.0], invalid=True)]
    out = metric.compute_metrics(rows)
    assert out['top1'] == 50 and out['top2'] == 50
    assert out['exact_match'] == 50 and out['invalid_rate'] == 50
    # per class: walking 1/1, running 1/1, walking backward 0/1, jumping 0/1
    assert out['mean_class_acc'] == 50
    assert out['num_invalid'] == 2 and out['num_samples'] == 4 and out['num_empty'] == 0
    # Without any scores (text only) the same records give the same misses.
    out = ActionAccuracy(CLASSES).compute_metrics(
        [dict(r, scores=None) for r in rows])
    assert out['top1'] == 50 and out['mean_class_acc'] == 50
    # A readable clip without scores beside ranked ones is still an error.
    with pytest.raises(MetricInputError, match=r'no class scores while others do: \[2\]'):
        metric.compute_metrics(rows[:2] + [dict(rows[2], invalid=False)])


def test_process_reads_invalid_samples():
    metric = ActionAccuracy(CLASSES)
    sample = DataSample().set_gt_label(0)
    sample.set_field('', 'pred_answer')
    sample.set_metainfo(dict(sample_id='broken', invalid_sample='cannot read video x.mp4'))
    metric.process(None, [sample])
    assert metric.results[0]['invalid'] is True
    assert metric.compute_metrics(metric.results)['num_invalid'] == 1
