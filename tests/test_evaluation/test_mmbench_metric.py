"""MMBench: the official exact matching, CircularEval scored by hand on the tiny TSVs, offline
scoring of prediction files, the submission writer, and tools/test.py end to end."""
import json
from pathlib import Path

import pandas as pd
import pytest

from mmllava.datasets.annotations import AnnotationError
from mmllava.evaluation.metrics import MMBenchMetric, mmbench_match
from mmllava.evaluation.metrics.mmbench import parse_question_id, write_mmbench_submission
from mmllava.evaluation.offline import evaluate_predictions

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'mmbench'
TINY = DATA / 'mmbench_dev_tiny.tsv'
CIRCULAR = DATA / 'mmbench_dev_circular_tiny.tsv'
COLORS = {'A': 'red', 'B': 'green'}

# The 9 samples of TINY (question, rotation) -> answer. Right letters: q0 C B A D, q1 A C B,
# q2 A B (see tests/test_datasets/test_mmbench.py).
ANSWERS = {
    (0, 0): 'C', (0, 1): 'B.', (0, 2): '(A) blue', (0, 3): 'The answer is D',  # all right
    (1, 0): 'a stripe',  # right by the option text (A. a stripe)
    (1, 1): 'C', (1, 2): 'A',  # rotation 2 wants B: question 1 is wrong
    (2, 0): 'A', (2, 1): 'B',  # right
}


@pytest.mark.parametrize('answer, letter', [
    ('B', 'B'), ('B.', 'B'), ('(B) green', 'B'), ('The answer is B', 'B'), ('B: green', 'B'),
    ('A B', None),  # two letters: nothing
    ('It is green.', 'B'),  # no letter: the one option text it contains
    ('red or green', None),
    ('Z', 'Z'), ("I'm sorry, but without the image provided I cannot", 'Z'),
    ('a', None),  # lower case is no letter (and no option text)
    ('A red apple', 'A'),  # the only capital letter word wins (as officially)
    ('C', None),  # not an option: no letter among the words, no text
])
def test_official_exact_matching(answer, letter):
    assert mmbench_match(answer, dict(COLORS)) == letter


def test_question_ids():
    assert parse_question_id('12') == (12, 0) and parse_question_id('12_r3') == (12, 3)
    assert parse_question_id(1000012) == (1000012, 0)
    with pytest.raises(ValueError, match='index'):
        parse_question_id('q12')


def write_jsonl(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(path)


def tiny_predictions(path, answers=ANSWERS):
    """The contract's format: {"index", "prediction"}, rotations as extra lines."""
    rows = []
    for (index, rotation), text in answers.items():
        row = dict(index=index, prediction=text)
        if rotation:
            row['rotation'] = rotation
        rows.append(row)
    return write_jsonl(path, rows)


def test_circular_scores_by_hand(tmp_path):
    metrics = evaluate_predictions('mmbench', tiny_predictions(tmp_path / 'p.jsonl'), [TINY])
    # q0 and q2 right in every rotation, q1 not: 2 of 3; attribute_recognition = {q0},
    # image_scene = {q1, q2}. Rotation 0 alone: all three right.
    assert metrics['overall'] == pytest.approx(200 / 3)
    assert metrics['attribute_recognition'] == 100.0
    assert metrics['image_scene'] == 50.0
    assert metrics['overall_vanilla'] == 100.0
    assert (metrics['num_questions'], metrics['num_samples'], metrics['num_no_option'],
            metrics['num_missing'], metrics['num_invalid']) == (3, 9, 0, 0, 0)
    assert not any(k.startswith('mmbench/') for k in metrics)
    # LLaVA's letter rules instead: "The answer is D" (no final character) and "a stripe"
    # name no option; q0 and q1 wrong, q1's rotation 0 too.
    from mmllava.evaluation.metrics.mmbench import score_prediction_file
    llava = score_prediction_file(str(tmp_path / 'p.jsonl'), [str(TINY)], matching='llava')
    assert llava['overall'] == pytest.approx(100 / 3)
    assert llava['overall_vanilla'] == pytest.approx(200 / 3)
    assert llava['num_no_option'] == 2
    # A folder holding one TSV names it; a prefix goes before every key.
    (tmp_path / 'ann').mkdir()
    (tmp_path / 'ann' / TINY.name).write_bytes(TINY.read_bytes())
    prefixed = evaluate_predictions('mmbench', str(tmp_path / 'p.jsonl'),
                                    [str(tmp_path / 'ann')], prefix='mmb')
    assert prefixed['mmb/overall'] == pytest.approx(200 / 3)
    assert prefixed['mmb/image_scene'] == 50.0


def test_released_copies_group_by_index_mod_1e6(tmp_path):
    # Question 0: rows 0 (B) and 1000000 (A); question 5: rows 5 (C), 1000005 (B), 2000005 (A).
    preds = write_jsonl(tmp_path / 'p.jsonl', [
        dict(index=0, prediction='B'), dict(index=1000000, prediction='B'),  # copy wrong
        dict(index=5, prediction='C'), dict(index=1000005, prediction='wait'),  # B by text
        dict(index=2000005, prediction='A')])
    metrics = evaluate_predictions('mmbench', preds, [CIRCULAR])
    assert metrics['overall'] == 50.0
    assert metrics['image_emotion'] == 0.0 and metrics['ocr'] == 100.0
    assert metrics['overall_vanilla'] == 100.0
    assert (metrics['num_questions'], metrics['num_samples']) == (2, 5)
    # A circular=False run predicts the rows under 1e6 only: scored without CircularEval.
    once = write_jsonl(tmp_path / 'once.jsonl', [dict(index=0, prediction='B'),
                                                 dict(index=5, prediction='A')])
    metrics = evaluate_predictions('mmbench', once, [CIRCULAR])
    assert metrics['overall'] == 50.0 and metrics['num_questions'] == metrics['num_samples'] == 2


def test_formats_missing_and_errors(tmp_path):
    # tools/test.py --out (a JSON list, "{index}_r{rotation}" ids, "text") and LLaVA's own
    # answers file (question_id + round_id + text) score the same.
    out = [dict(question_id=str(i) if not r else f'{i}_r{r}', sample_id='x', text=t, prompt='')
           for (i, r), t in ANSWERS.items()]
    (tmp_path / 'out.json').write_text(json.dumps(out))
    llava = write_jsonl(tmp_path / 'llava.jsonl', [
        dict(question_id=i, round_id=r, text=t) for (i, r), t in ANSWERS.items()])
    for path in (tmp_path / 'out.json', llava):
        assert evaluate_predictions('mmbench', str(path), [TINY])['overall'] == \
            pytest.approx(200 / 3)
    # A rotation missing: an error, or with allow_missing a wrong answer (q0 is lost).
    partial = dict(ANSWERS)
    del partial[(0, 3)]
    path = tiny_predictions(tmp_path / 'partial.jsonl', partial)
    with pytest.raises(AnnotationError, match=r"1 of 9 samples have no prediction: '0_r3'"):
        evaluate_predictions('mmbench', path, [TINY])
    metrics = evaluate_predictions('mmbench', path, [TINY], allow_missing=True)
    assert metrics['overall'] == pytest.approx(100 / 3) and metrics['num_missing'] == 1
    # An unreadable picture in the run (invalid_sample) is wrong: q2 is lost.
    out[-1]['invalid_sample'] = 'MMBenchDataset: sample 2_r1: "image" does not decode'
    (tmp_path / 'inv.json').write_text(json.dumps(out))
    metrics = evaluate_predictions('mmbench', str(tmp_path / 'inv.json'), [TINY])
    assert metrics['overall'] == pytest.approx(100 / 3) and metrics['num_invalid'] == 1
    bad = [
        ([dict(index=9, prediction='A')], 'samples .* does not have'),
        ([dict(index=0, prediction='A'), dict(index=0, prediction='B')], 'more than once'),
        ([dict(index='zero', prediction='A')], r'prediction #1: an MMBench question id'),
        ([dict(index=0, rotation=-1, prediction='A')], 'integer >= 0'),
        ([dict(prediction='A')], 'needs one of'),
    ]
    for rows, message in bad:
        with pytest.raises(AnnotationError, match=message):
            evaluate_predictions('mmbench', write_jsonl(tmp_path / 'bad.jsonl', rows), [TINY])
    with pytest.raises(AnnotationError, match='exactly one .tsv'):
        evaluate_predictions('mmbench', path, [DATA])


def test_in_run_metric_matches_records():
    metric = MMBenchMetric()
    from mmllava.datasets import MMBenchDataset
    for s in (MMBenchDataset(ann_file=str(TINY)).get_data_info(i) for i in range(9)):
        sample = dict(question_id=s['question_id'], sample_id=s['sample_id'],
                      pred_answer=ANSWERS[(s['index'], s['rotation'])],
                      gt_answer=s['gt_answer'], choices=s['choices'], category=s['category'])
        metric.process(None, [sample])
    metrics = metric.compute_metrics(metric.results)
    assert metrics['overall'] == pytest.approx(200 / 3) and metrics['image_scene'] == 50.0
    with pytest.raises(ValueError, match='matching'):
        MMBenchMetric(matching='gpt')


def test_submission_tsv(tmp_path):
    preds = write_jsonl(tmp_path / 'p.jsonl', [
        dict(index=i, prediction=t) for i, t in
        [(0, 'B'), (5, 'C'), (1000000, 'A'), (1000005, 'B'), (2000005, 'A.')]])
    out = tmp_path / 'sub' / 'llava.tsv'
    assert write_mmbench_submission(preds, str(CIRCULAR), str(out)) == 5
    df = pd.read_csv(out, sep='\t')
    # LLaVA's convert_mmbench_for_submission.py: hint, category, image, source, l2-category
    # and comment dropped, "prediction" 7th.
    assert list(df.columns) == ['index', 'question', 'A', 'B', 'C', 'D', 'prediction',
                                'answer', 'split']
    assert dict(zip(df['index'], df['prediction'])) == {
        0: 'B', 5: 'C', 1000000: 'A', 1000005: 'B', 2000005: 'A.'}
    # The test split (no answers): a missing row raises, or is left empty.
    test_tsv = tmp_path / 'test.tsv'
    pd.read_csv(CIRCULAR, sep='\t').drop(columns=['answer']).to_csv(test_tsv, sep='\t',
                                                                    index=False)
    part = write_jsonl(tmp_path / 'part.jsonl', [dict(index=0, prediction='B')])
    with pytest.raises(AnnotationError, match='4 of 5 rows have no prediction'):
        write_mmbench_submission(part, str(test_tsv), str(tmp_path / 't.tsv'))
    write_mmbench_submission(part, str(test_tsv), str(tmp_path / 't.tsv'), allow_missing=True)
    df = pd.read_csv(tmp_path / 't.tsv', sep='\t', keep_default_na=False)
    assert list(df['prediction']) == ['B', '', '', '', '']
    assert 'answer' not in df.columns
    with pytest.raises(ValueError, match='one of'):
        write_mmbench_submission(preds, str(CIRCULAR), str(tmp_path / 'x.json'))


def test_submission_xlsx(tmp_path):
    preds = tiny_predictions(tmp_path / 'p.jsonl')
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'needs openpyxl .*FILE\.tsv'):
            write_mmbench_submission(preds, str(TINY), str(tmp_path / 'x.xlsx'))
        pytest.importorskip('openpyxl')
    write_mmbench_submission(preds, str(TINY), str(tmp_path / 'x.xlsx'))
    df = pd.read_excel(tmp_path / 'x.xlsx')
    assert list(df['prediction']) == ['C', 'a stripe', 'A']  # rotation 0 only


def test_submission_tool(tmp_path):
    from fixtures_llava import load_script
    tool = load_script('tools/analysis_tools/mmbench_submission.py')
    preds = tiny_predictions(tmp_path / 'p.jsonl')
    tool.main(['--pred', preds, '--ann', str(TINY), '--out', str(tmp_path / 's.tsv')])
    assert len(pd.read_csv(tmp_path / 's.tsv', sep='\t')) == 3


@pytest.mark.slow
def test_test_tool_matches_offline_scoring(tmp_path):
    """tools/test.py with the tiny model, every rotation; offline scoring of --out agrees."""
    from fixtures_llava import run_test_tool, shared_build, write_tiny_eval_config
    converted = Path(shared_build()['converted']['llava-hf'])
    config = write_tiny_eval_config(tmp_path / 'mmb.py', converted,
                                    dict(type='MMBenchDataset', ann_file=str(TINY)),
                                    dict(type='MMBenchMetric'), batch_size=9, max_new_tokens=2)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    rows = json.loads(preds.read_text())
    assert sorted(r['question_id'] for r in rows) == sorted(
        ['0', '0_r1', '0_r2', '0_r3', '1', '1_r1', '1_r2', '2', '2_r1'])
    assert metrics['num_samples'] == 9 and metrics['num_questions'] == 3
    offline = evaluate_predictions('mmbench', str(preds), [TINY])
    for key in ('overall', 'overall_vanilla', 'attribute_recognition', 'image_scene',
                'num_no_option', 'num_samples'):
        assert offline[key] == pytest.approx(metrics[key]), key
