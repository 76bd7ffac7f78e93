"""MMEMetric and offline MME scoring, scored by hand on the release-format fixture.

The fixture (tests/data/mme/MME_Benchmark_release_version) has 12 questions: existence (2
images), artwork (2 images), celebrity (1 image) and code_reasoning (1 image). The answers
below are chosen to exercise MME's calculation.py parsing (lower-cased; "yes"/"no" as is, else
the first four characters must hold "yes", else "no", else the answer is "other", wrong):

existence   494427#1 laptop  gt Yes  "Yes"                  -> yes   right
            494427#2 plant   gt No   "No."                  -> no    right  (image: both)
            15517#1  cow     gt No   "Yes, there is a cow"  -> yes   wrong
            15517#2  bus     gt Yes  "yes"                  -> yes   right
            acc 3/4 = 75, acc+ 1/2 = 50                                     -> 125
artwork     14777#1  relig.  gt Yes  "The answer is yes"    -> other wrong ("the ")
            14777#2  hist.   gt No   "Not"                  -> no    right
            9405#1   courbet gt Yes  " YES"                 -> yes   right
            9405#2   milani  gt No   "no"                   -> no    right  (image: both)
            acc 3/4 = 75, acc+ 1/2 = 50                                     -> 125
celebrity   #1               gt Yes  "y"                    -> other wrong
            #2               gt No   "N"                    -> other wrong
            acc 0, acc+ 0                                                   -> 0
code_reas.  #1 python        gt Yes  "Yes"                  -> yes   right
            #2 c++           gt No   "Yes"                  -> yes   wrong
            acc 1/2 = 50, acc+ 0                                            -> 50

perception = 125 + 125 + 0 = 250; cognition = 50.
With lmms-eval's rule (a lone "y"/"n" counts) celebrity is 200 and perception 450.
"""
import json
import math
import shutil
from pathlib import Path

import pytest

from mmllava.datasets import MMEDataset
from mmllava.datasets.annotations import AnnotationError
from mmllava.evaluation.metrics import MMEMetric
from mmllava.evaluation.metrics.base import MetricInputError
from mmllava.evaluation.metrics.mme import parse_mme_answer, write_mme_results
from mmllava.evaluation.offline import evaluate_predictions

RELEASE = Path(__file__).resolve().parents[2] / 'tests' / 'data' / 'mme' / \
    'MME_Benchmark_release_version'
ANSWERS = {
    'existence/000000494427.jpg#1': 'Yes', 'existence/000000494427.jpg#2': 'No.',
    'existence/000000015517.jpg#1': 'Yes, there is a cow', 'existence/000000015517.jpg#2': 'yes',
    'artwork/14777.jpg#1': 'The answer is yes', 'artwork/14777.jpg#2': 'Not',
    'artwork/9405.jpg#1': ' YES', 'artwork/9405.jpg#2': 'no',
    'celebrity/tt0096320_shot_0085_img_0.jpg#1': 'y',
    'celebrity/tt0096320_shot_0085_img_0.jpg#2': 'N',
    'code_reasoning/0020.png#1': 'Yes', 'code_reasoning/0020.png#2': 'Yes',
}
EXPECTED = dict(existence=125.0, artwork=125.0, celebrity=0.0, code_reasoning=50.0,
                perception=250.0, cognition=50.0)


def fixture_samples():
    dataset = MMEDataset(data_root=str(RELEASE))
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def run_metric(metric, answers=ANSWERS, invalid=()):
    """Data samples as the model gives them (metainfo, gt_answer, pred_answer)."""
    for s in fixture_samples():
        sample = dict(question_id=s['question_id'], category=s['category'],
                      question=s['question'], gt_answer=s['gt_answer'],
                      pred_answer=answers.get(s['question_id']))
        if s['question_id'] in invalid:
            sample['invalid_sample'] = 'image file not found'
        metric.process(None, [sample])
    return metric.compute_metrics(metric.results)


def test_parse_answer_official_rule():
    assert [parse_mme_answer(t) for t in ('Yes', 'no', 'Yes.', 'No, it is not', 'Not', 'None',
                                          'y', 'n', 'The answer is yes', '', 'nah')] == \
        ['yes', 'no', 'yes', 'no', 'no', 'no', 'other', 'other', 'other', 'other', 'other']
    assert [parse_mme_answer(t, 'lmms_eval') for t in ('y', 'N.', ' yes ', 'x')] == \
        ['yes', 'no', 'yes', 'other']


def test_hand_scored():
    values = run_metric(MMEMetric())
    for key, expected in EXPECTED.items():
        assert values[key] == pytest.approx(expected), key
    assert values['existence/acc'] == 75.0 and values['existence/acc_plus'] == 50.0
    assert values['code_reasoning/acc'] == 50.0 and values['code_reasoning/acc_plus'] == 0.0
    # Subtasks without questions are NaN (null in JSON), never a silent 0; keys are bare.
    assert math.isnan(values['OCR']) and math.isnan(values['text_translation'])
    assert values['num_samples'] == 12 and values['num_invalid'] == 0
    assert not any(k.startswith('mme/') for k in values)


def test_lmms_eval_rule_and_prefix():
    metric = MMEMetric(rule='lmms_eval', prefix='mme')
    metric.results.clear()
    for s in fixture_samples():
        metric.process(None, [dict(question_id=s['question_id'], category=s['category'],
                                   gt_answer=s['gt_answer'],
                                   pred_answer=ANSWERS[s['question_id']])])
    values = metric.evaluate(12)
    assert values['mme/celebrity'] == 200.0 and values['mme/perception'] == 450.0


def test_invalid_sample_is_wrong():
    # code_reasoning#1 was right ("Yes"); unreadable, it is wrong: acc 0, acc+ 0.
    values = run_metric(MMEMetric(), invalid={'code_reasoning/0020.png#1'})
    assert values['code_reasoning'] == 0.0 and values['cognition'] == 0.0
    assert values['num_invalid'] == 1 and values['perception'] == 250.0


def test_bad_records():
    metric = MMEMetric()
    metric.process(None, [dict(question_id='ocr/1.jpg#1', category='ocr', gt_answer='Yes',
                               pred_answer='Yes')])
    with pytest.raises(MetricInputError, match="category 'ocr'"):
        metric.compute_metrics(metric.results)
    with pytest.raises(ValueError, match='unknown rule'):
        MMEMetric(rule='otter')


def calculation_py(results_dir: Path, task: str) -> float:
    """MME's eval_tool/calculation.py on one result file: consecutive lines pair an image;
    ``img, question, gt, pred = line.split('\\t')``, lower-cased, parse_pred_ans."""
    lines = open(results_dir / f'{task}.txt').readlines()
    right, both = 0, 0
    for i in range(0, len(lines), 2):
        ok = 0
        for line in lines[i:i + 2]:
            _, _, gt, pred = line.split('\t')
            pred = pred.lower()
            label = pred if pred in ('yes', 'no') else (
                'yes' if 'yes' in pred[:4] else 'no' if 'no' in pred[:4] else 'other')
            ok += gt.lower() == label
        right += ok
        both += ok == 2
    return 100 * right / len(lines) + 100 * both / (len(lines) // 2)


def test_results_dir_for_official_calculation(tmp_path):
    answers = dict(ANSWERS, **{'artwork/9405.jpg#2': 'no\tindeed\nreally'})
    values = run_metric(MMEMetric(results_dir=str(tmp_path)), answers)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'artwork.txt', 'celebrity.txt', 'code_reasoning.txt', 'existence.txt']
    lines = (tmp_path / 'artwork.txt').read_text().splitlines()
    assert lines[-1] == ('9405.jpg\tIs this artwork created by milani, aureliano? Please answer '
                         'yes or no.\tNo\tno indeed really')
    for task in ('existence', 'artwork', 'celebrity', 'code_reasoning'):
        assert calculation_py(tmp_path, task) == pytest.approx(values[task]), task
    # An unreadable image's prediction is empty: "other" for calculation.py too.
    out = tmp_path / 'direct'
    write_mme_results([dict(id='OCR/1.jpg#1', category='OCR', question='Is it "a"?', gt='Yes',
                            pred='Yes', invalid=True),
                       dict(id='OCR/1.jpg#2', category='OCR', question='Is it "b"?', gt='No',
                            pred='No')], str(out))
    assert (out / 'OCR.txt').read_text().splitlines()[0] == '1.jpg\tIs it "a"?\tYes\t'
    assert calculation_py(out, 'OCR') == 50.0 + 0.0


def jsonl(path: Path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def test_offline_formats(tmp_path):
    samples = {s['question_id']: s for s in fixture_samples()}
    rows = []
    for qid, answer in ANSWERS.items():
        s = samples[qid]
        image = qid.rsplit('#', 1)[0].split('/', 1)[1]
        if s['category'] in ('artwork', 'celebrity'):  # LLaVA's answers (model_vqa_loader.py)
            # (celebrity #1 has two spaces before "Please answer yes or no." in the release)
            rows.append(dict(question_id=f'{s["category"]}/images/{image}', text=answer,
                             prompt=s['messages'][0]['content'].replace('<image>\n', '')))
        elif qid == 'existence/000000494427.jpg#1':  # tools/test.py --out
            rows.append(dict(question_id=qid, sample_id=qid, text=answer, prompt='...'))
        else:  # the JSONL of the issue, official question and image path
            rows.append(dict(category=s['category'], image=s['images'][0],
                             question=s['question'], prediction=answer))
    values = evaluate_predictions('mme', jsonl(tmp_path / 'p.jsonl', rows), [str(RELEASE)])
    for key, expected in EXPECTED.items():
        assert values[key] == pytest.approx(expected), key
    assert values['num_missing'] == 0 and math.isnan(values['OCR'])
    # Subtask folders as --ann, a prefix.
    values = evaluate_predictions('mme', tmp_path / 'p.jsonl',
                                  [str(RELEASE / t) for t in ('existence', 'artwork',
                                                              'celebrity', 'code_reasoning')],
                                  prefix='mme')
    assert values['mme/perception'] == 250.0


def test_offline_missing_invalid_and_errors(tmp_path):
    rows = [dict(question_id=q, text=a) for q, a in ANSWERS.items()
            if q != 'code_reasoning/0020.png#1']
    pred = jsonl(tmp_path / 'p.jsonl', rows)
    with pytest.raises(AnnotationError, match='1 of 12 annotated questions have no prediction'):
        evaluate_predictions('mme', pred, [str(RELEASE)])
    values = evaluate_predictions('mme', pred, [str(RELEASE)], allow_missing=True)
    assert values['num_missing'] == 1 and values['code_reasoning'] == 0.0
    rows[0]['invalid_sample'] = 'image file not found'  # existence 494427#1, was right
    values = evaluate_predictions('mme', jsonl(tmp_path / 'q.jsonl', rows), [str(RELEASE)],
                                  allow_missing=True)
    assert values['existence'] == pytest.approx(50 + 0) and values['num_invalid'] == 1
    # A question the release does not have; the same question twice; a malformed row.
    bad = [dict(category='existence', image='000000494427.jpg', question='Is there a dog?',
                prediction='No')]
    with pytest.raises(AnnotationError, match='do not have'):
        evaluate_predictions('mme', jsonl(tmp_path / 'b.jsonl', bad), [str(RELEASE)])
    twice = [dict(category='existence', image='x/000000494427.jpg', prediction='No',
                  question='Is there a laptop in this image?'),
             dict(question_id='existence/000000494427.jpg#1', text='Yes')]
    with pytest.raises(AnnotationError, match='predicted more than once'):
        evaluate_predictions('mme', jsonl(tmp_path / 't.jsonl', twice), [str(RELEASE)])
    with pytest.raises(AnnotationError, match=r'prediction #1: image missing'):
        evaluate_predictions('mme', jsonl(tmp_path / 'm.jsonl', [dict(
            category='existence', question='Is there a laptop?', prediction='No')]),
            [str(RELEASE)])


def test_offline_release_without_subtask(tmp_path):
    shutil.copytree(RELEASE / 'existence', tmp_path / 'MME' / 'existence')
    pred = jsonl(tmp_path / 'p.jsonl', [dict(question_id=q, text=a) for q, a in ANSWERS.items()
                                        if q.startswith('existence/')])
    values = evaluate_predictions('mme', pred, [str(tmp_path / 'MME')])
    assert values['existence'] == 125.0 and values['perception'] == 125.0
    assert math.isnan(values['cognition'])
    with pytest.raises(FileNotFoundError, match='not a folder'):
        evaluate_predictions('mme', pred, [str(tmp_path / 'nowhere')])
