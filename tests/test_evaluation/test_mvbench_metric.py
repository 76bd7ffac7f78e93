"""MVBenchMetric: the notebook's check_ans per task, its mean, likelihood ranking; scored by
hand on records and on prediction files in the documented formats."""
import json

import pytest

from mmllava.datasets.annotations import AnnotationError
from mmllava.evaluation.metrics import MVBenchMetric
from mmllava.evaluation.metrics.base import MetricInputError
from mmllava.evaluation.metrics.mvbench import check_answer, reference_answer
from mmllava.evaluation.offline import evaluate_predictions

# (task, candidates, answer, generation, option scores or label, invalid)
CASES = [
    ('action_sequence', ['Opened the door.', 'Sat on the bed.', 'Took the cup.'],
     'Sat on the bed.', 'B) Sat on the bed.', [0.1, 0.8, 0.1], False),   # right; ranked B right
    ('action_sequence', ['Ran.', 'Ate.'], 'Ran.', 'B) Ate.', [0.2, 0.8], False),  # wrong, wrong
    ('action_sequence', ['x', 'y', 'z'], 'z', '', [0.5, 0.2, 0.3], False),  # "(" right; A wrong
    ('action_antonym', ['pushing', 'pulling', 'not sure'], 'pulling', 'B', [0.1, 0.6, 0.3],
     False),                                                   # "(B" in "(b)": right; right
    ('action_antonym', ['lifting', 'dropping', 'not sure'], 'not sure', None, None, True),
    ('episodic_reasoning', ['Traffic', 'Overslept', 'Lost keys', 'Bus'], 'Bus',
     'D). Bus\nBecause he missed it.', 3, False),               # "(d)." -> "(d)": right; right
]
LETTERS = 'ABCD'


def ids():
    seen = {}
    out = []
    for task, *_ in CASES:
        out.append(f'{task}/{seen.get(task, 0)}')
        seen[task] = seen.get(task, 0) + 1
    return out


def records():
    out = []
    for qid, (task, cands, answer, pred, ranked, invalid) in zip(ids(), CASES):
        r = dict(id=qid, pred=pred, gt=f'({LETTERS[cands.index(answer)]}) {answer}',
                 category=task, choices=cands, invalid=invalid)
        if isinstance(ranked, list):
            r['scores'] = ranked
        elif ranked is not None:
            r['label'] = ranked
        out.append(r)
    return out


# By hand. Generation: action_sequence 2/3 (the empty one counts, as in the notebook),
# action_antonym 1/2, episodic_reasoning 1/1. Likelihood: 1/3, 1/2, 1/1.
EXPECTED = {
    'mvbench/action_sequence': 200 / 3, 'mvbench/action_antonym': 50.0,
    'mvbench/episodic_reasoning': 100.0, 'mvbench/mean': (200 / 3 + 50 + 100) / 3,
    'mvbench/overall': 400 / 6,
    'mvbench/likelihood/action_sequence': 100 / 3, 'mvbench/likelihood/action_antonym': 50.0,
    'mvbench/likelihood/episodic_reasoning': 100.0,
    'mvbench/likelihood/mean': (100 / 3 + 50 + 100) / 3, 'mvbench/likelihood/overall': 50.0,
    'mvbench/num_samples': 6, 'mvbench/num_empty': 1, 'mvbench/num_invalid': 1,
}


def scored(metric, recs):
    values = metric.compute_metrics(recs)
    return {f'{metric.prefix}/{k}': v for k, v in values.items()}


def test_check_ans_as_the_notebook():
    assert reference_answer('  B) Ate.\nmore') == '(B) Ate.'
    assert check_answer('(B) Ate.', '(B) Ate.')
    assert check_answer('(b', '(B) Ate.')            # a substring of "(b)"
    assert check_answer('(', '(C) z')                # the empty generation's quirk
    assert check_answer('(a).', '(A) x')             # dots dropped
    assert check_answer('(a)...and', '(A) x')        # "(a)" within the word
    assert not check_answer('(ab)', '(A) x')
    assert not check_answer('(The answer is A', '(A) x')  # no letter parsing beyond the word


def test_metric_by_hand():
    assert scored(MVBenchMetric(), records()) == pytest.approx(EXPECTED)
    generation_only = scored(MVBenchMetric(likelihood=False), records())
    assert not any('likelihood' in k for k in generation_only)
    assert generation_only['mvbench/mean'] == pytest.approx(EXPECTED['mvbench/mean'])


def test_metric_from_data_samples():
    metric = MVBenchMetric()
    samples = []
    for r in records():
        s = dict(question_id=r['id'], pred_answer=r['pred'], gt_answer=r['gt'],
                 category=r['category'], choices=r['choices'])
        if r['invalid']:
            s['invalid_sample'] = 'video not found'
        if 'scores' in r:
            s['pred_scores'] = r['scores']
            s['pred_label'] = 0  # the scores decide where both are given
        elif 'label' in r:
            s['pred_label'] = r['label']
        samples.append(s)
    metric.process(None, samples)
    assert scored(metric, metric.results) == pytest.approx(EXPECTED)


def test_metric_errors():
    recs = records()
    del recs[0]['scores']
    with pytest.raises(MetricInputError, match='no option scores while others do'):
        MVBenchMetric().compute_metrics(recs)
    plain = [{k: v for k, v in r.items() if k not in ('scores', 'label')} for r in records()]
    with pytest.raises(MetricInputError, match='rank_options=True'):
        MVBenchMetric(likelihood=True).compute_metrics(plain)
    assert 'likelihood/mean' not in MVBenchMetric().compute_metrics(plain)
    with pytest.raises(MetricInputError, match='no task'):
        MVBenchMetric().compute_metrics([dict(plain[0], category=None)])


def write_release(root):
    """The task files of CASES (bounds where the task has them), as json/<task>.json."""
    (root / 'json').mkdir(parents=True)
    tasks = {}
    for task, cands, answer, *_ in CASES:
        rec = dict(video='v.mp4', question='What?', candidates=cands, answer=answer)
        if task != 'action_antonym':
            rec.update(start=0.5, end=2.0)
        tasks.setdefault(task, []).append(rec)
    for task, recs in tasks.items():
        (root / 'json' / f'{task}.json').write_text(json.dumps(recs))
    return root


def prediction_lines():
    lines = []
    for qid, (task, _, _, pred, ranked, invalid) in zip(ids(), CASES):
        row = dict(question_id=qid, task=task, pred=pred)
        if invalid:
            row['invalid_sample'] = 'video not found'
        elif isinstance(ranked, list):
            row['pred_scores'] = ranked
        else:
            row['pred_label'] = ranked
        lines.append(row)
    return lines


def write_lines(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(path)


def test_offline_scoring_of_jsonl_and_test_out(tmp_path):
    root = write_release(tmp_path / 'MVBench')
    rows = prediction_lines()
    pred = write_lines(tmp_path / 'preds.jsonl', rows)
    expected = dict(EXPECTED, **{'mvbench/num_missing': 0})
    for ann in ([str(root)], [str(root / 'json')],
                sorted(str(p) for p in (root / 'json').iterdir())):
        assert evaluate_predictions('mvbench', pred, ann) == pytest.approx(expected)
    # tools/test.py --out: a JSON list with "text" and "pred_scores" (ties none here).
    out = [dict(question_id=r['question_id'], sample_id=r['question_id'], text=r['pred'],
                prompt='...', **({'invalid_sample': r['invalid_sample']}
                                 if 'invalid_sample' in r else {}),
                **({'pred_scores': r['pred_scores']} if 'pred_scores' in r else {}))
           for r in rows]
    out[-1]['pred_scores'] = [0.1, 0.1, 0.1, 0.7]  # the label as scores
    (tmp_path / 'out.json').write_text(json.dumps(out))
    assert evaluate_predictions('mvbench', str(tmp_path / 'out.json'), [str(root)],
                                prefix='mvb') == pytest.approx(
        {k.replace('mvbench/', 'mvb/'): v for k, v in expected.items()})


def test_offline_missing_and_malformed(tmp_path):
    root = write_release(tmp_path / 'MVBench')
    rows = prediction_lines()
    pred = write_lines(tmp_path / 'part.jsonl', rows[:-1])  # episodic_reasoning/0 missing
    with pytest.raises(AnnotationError, match=r"1 of 6 questions have no prediction: "
                                              r"'episodic_reasoning/0'"):
        evaluate_predictions('mvbench', pred, [str(root)])
    values = evaluate_predictions('mvbench', pred, [str(root)], allow_missing=True)
    assert values['mvbench/num_missing'] == 1
    assert values['mvbench/episodic_reasoning'] == 0.0
    assert values['mvbench/mean'] == pytest.approx((200 / 3 + 50 + 0) / 3)
    # Only the tasks run, as their files: scored without the others.
    part = evaluate_predictions('mvbench', write_lines(tmp_path / 'seq.jsonl', rows[:3]),
                                [str(root / 'json' / 'action_sequence.json')])
    assert part['mvbench/mean'] == pytest.approx(200 / 3)
    bad = [dict(rows[0], question_id='action_sequence/9')] + rows[1:]
    with pytest.raises(AnnotationError, match="do not have: 'action_sequence/9'"):
        evaluate_predictions('mvbench', write_lines(tmp_path / 'bad.jsonl', bad), [str(root)])
    bad = [dict(rows[0], task='action_antonym')] + rows[1:]
    with pytest.raises(AnnotationError, match=r'prediction #1: task'):
        evaluate_predictions('mvbench', write_lines(tmp_path / 'bad2.jsonl', bad), [str(root)])
    with pytest.raises(AnnotationError, match='no MVBench task file'):
        evaluate_predictions('mvbench', pred, [str(tmp_path)])
