"""SEEDBenchMetric and offline SEED-Bench scoring, on a fixture in the release's format.

tests/data/seed_bench/SEED-Bench.json holds 10 questions: Scene Understanding 1001 (A), 1002
(B), 1005 (A); Instances Counting 1003 (C); Text Understanding 1004 (D) (5 image questions);
Action Recognition v1 (A), v4 (A); Action Prediction v2 (B); Procedure Understanding v3 (C),
v5 (C) (5 video questions).
"""
import json
from pathlib import Path

import pytest

from mmllava.datasets.annotations import AnnotationError
from mmllava.evaluation.metrics import MetricInputError, SEEDBenchMetric
from mmllava.evaluation.offline import evaluate_predictions

ANN = Path(__file__).parents[1] / 'data' / 'seed_bench' / 'SEED-Bench.json'

# The generations, and by hand what each scores under LLaVA's exact rule:
PREDS = {
    '1001': 'A',   # right
    '1002': 'A',   # wrong
    '1005': 'A',   # right           -> Scene Understanding 2/3
    '1003': 'C.',  # exact: wrong (LLaVA compares text == answer); parse: right
    '1004': 'D',   # right           -> Text Understanding 1/1
    'v1': 'A',     # right
    'v4': 'B',     # wrong           -> Action Recognition 1/2
    'v2': 'B',     # right           -> Action Prediction 1/1
    'v3': 'C',     # unreadable clip below: a miss
    'v5': 'C',     # right           -> Procedure Understanding 1/2
}
DIMENSION = {'1001': 'Scene Understanding', '1002': 'Scene Understanding',
             '1005': 'Scene Understanding', '1003': 'Instances Counting',
             '1004': 'Text Understanding', 'v1': 'Action Recognition',
             'v4': 'Action Recognition', 'v2': 'Action Prediction',
             'v3': 'Procedure Understanding', 'v5': 'Procedure Understanding'}
GT = {'1001': 'A', '1002': 'B', '1005': 'A', '1003': 'C', '1004': 'D', 'v1': 'A', 'v4': 'A',
      'v2': 'B', 'v3': 'C', 'v5': 'C'}
EXACT = {
    'seed/Scene Understanding': 200 / 3, 'seed/Instances Counting': 0.0,
    'seed/Text Understanding': 100.0, 'seed/Action Recognition': 50.0,
    'seed/Action Prediction': 100.0, 'seed/Procedure Understanding': 50.0,
    # Over questions (SEED-Bench's and LLaVA's): image 3 of 5, video 3 of 5, all 6 of 10. The
    # mean over dimensions would be 55.6 (image), 66.7 (video), 61.1 (all).
    'seed/image': 60.0, 'seed/video': 60.0, 'seed/overall': 60.0,
}


def samples(with_type=True, labels=None):
    out = []
    for qid, pred in PREDS.items():
        s = dict(question_id=qid, pred_answer=pred, gt_answer=GT[qid], category=DIMENSION[qid])
        if with_type:
            s['data_type'] = 'video' if qid.startswith('v') else 'image'
        if qid == 'v3':
            s['invalid_sample'] = 'video not found'
        if labels is not None and qid != 'v3':
            s['pred_label'] = labels[qid]
        out.append(s)
    return out


def run(metric, data_samples):
    metric.process(None, data_samples)
    return {f'{metric.prefix}/{k}': v
            for k, v in metric.compute_metrics(metric.results).items()}


def check(values, expected):
    for key, value in expected.items():
        assert values[key] == pytest.approx(value), key


def test_metric_per_dimension_and_question_averages():
    values = run(SEEDBenchMetric(), samples())
    check(values, EXACT)
    assert values['seed/num_invalid'] == 1 and values['seed/num_samples'] == 10
    assert values['seed/ranked'] == 0
    # Without data_type on the samples, dimensions 10-12 are the video ones: same numbers.
    check(run(SEEDBenchMetric(), samples(with_type=False)), EXACT)


def test_metric_parse_rule_takes_dotted_letters():
    values = run(SEEDBenchMetric(letter_rule='parse'), samples())
    # 1003 "C." now right: Counting 1/1, image 4 of 5, all 7 of 10.
    check(values, {'seed/Instances Counting': 100.0, 'seed/image': 80.0, 'seed/video': 60.0,
                   'seed/overall': 70.0})


def test_metric_uses_ranking_when_the_run_ranked():
    # Labels (index of the choice ranked first) right for every image question and v2 only.
    labels = {'1001': 0, '1002': 1, '1005': 0, '1003': 2, '1004': 3, 'v1': 1, 'v4': 2,
              'v2': 1, 'v5': 0}
    values = run(SEEDBenchMetric(), samples(labels=labels))
    check(values, {'seed/image': 100.0, 'seed/video': 20.0, 'seed/overall': 60.0,
                   'seed/Action Recognition': 0.0, 'seed/Procedure Understanding': 0.0})
    assert values['seed/ranked'] == 1
    # use_ranking=False scores the generated letters of the same samples.
    check(run(SEEDBenchMetric(use_ranking=False), samples(labels=labels)), EXACT)
    partial = samples(labels=labels)
    del partial[0]['pred_label']
    with pytest.raises(MetricInputError, match='no ranking'):
        run(SEEDBenchMetric(), partial)


def write_lines(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def test_offline_scoring_both_answer_file_styles(tmp_path):
    # SEED's upload style {"question_id", "prediction"}; v3 has none (allow_missing: wrong).
    upload = write_lines(tmp_path / 'upload.jsonl', [
        dict(question_id=q, prediction=p) for q, p in PREDS.items() if q != 'v3'])
    values = evaluate_predictions('seed_bench', upload, [ANN], allow_missing=True)
    check(values, EXACT)
    assert values['seed/num_missing'] == 1
    with pytest.raises(AnnotationError, match='1 of 10 questions have no prediction'):
        evaluate_predictions('seed_bench', upload, [ANN])
    # LLaVA's answers file {"question_id", "text"}, v3 marked unreadable as tools/test.py does.
    llava = write_lines(tmp_path / 'llava.jsonl', [
        dict(question_id=q, text=p, **({'invalid_sample': 'gone'} if q == 'v3' else {}))
        for q, p in PREDS.items()])
    values = evaluate_predictions('seed_bench', llava, [ANN], prefix='seed1')
    check(values, {k.replace('seed/', 'seed1/'): v for k, v in EXACT.items()})
    assert values['seed1/num_invalid'] == 1 and values['seed1/num_missing'] == 0


def test_offline_scoring_of_ranked_predictions(tmp_path):
    # tools/test.py --out of a ranking run: the arg-max of pred_scores decides.
    rows = []
    for qid, pred in PREDS.items():
        scores = [0.1, 0.2, 0.3, 0.4]  # D first: right for 1004 only
        rows.append(dict(question_id=qid, sample_id=qid, text=pred, prompt='', pred_scores=scores))
    path = tmp_path / 'preds.json'
    path.write_text(json.dumps(rows))
    values = evaluate_predictions('seed_bench', path, [ANN])
    check(values, {'seed/Text Understanding': 100.0, 'seed/image': 20.0, 'seed/video': 0.0,
                   'seed/overall': 10.0, 'seed/ranked': 1})


@pytest.mark.parametrize('rows, match', [
    ([dict(question_id='1001', prediction='A')] * 2, 'more than once'),
    ([dict(question_id='9999', prediction='A')], 'does not have'),
    ([dict(prediction='A')], 'needs "question_id"'),
    ([dict(question_id='1001', prediction=3)], 'must be text'),
    ([dict(question_id='1001', text='A', pred_scores=[1, 2])], '4 numbers'),
])
def test_offline_scoring_rejects_bad_files(tmp_path, rows, match):
    path = write_lines(tmp_path / 'bad.jsonl', rows)
    with pytest.raises(AnnotationError, match=match):
        evaluate_predictions('seed_bench', path, [ANN], allow_missing=True)


def test_offline_scoring_rejects_a_bad_annotation_file(tmp_path):
    data = json.loads(ANN.read_text())
    data['questions'][0]['answer'] = 'E'
    bad = tmp_path / 'SEED-Bench.json'
    bad.write_text(json.dumps(data))
    preds = write_lines(tmp_path / 'p.jsonl', [dict(question_id='1001', prediction='A')])
    with pytest.raises(AnnotationError, match=r"question '1001': \"answer\" must be one of"):
        evaluate_predictions('seed_bench', preds, [bad], allow_missing=True)
    with pytest.raises(ValueError, match='one annotation file'):
        evaluate_predictions('seed_bench', preds, [ANN, ANN])
