"""tools/analysis_tools/eval_predictions.py on fixtures in each benchmark's official format.

The expected values are computed by hand in the comments (see tests/data/eval)."""
import json
import shutil
from pathlib import Path

import pytest
from fixtures_llava import load_script, run_script

from mmllava.evaluation.offline import AnnotationError, evaluate_predictions, read_caption

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'eval'


TOOL = 'tools/analysis_tools/eval_predictions.py'


def load_tool():
    return load_script(TOOL)


def test_vqav2_llava_answers(tmp_path):
    out = tmp_path / 'metrics.json'
    metrics = load_tool().main(['--metric', 'vqa',
                                '--pred', str(DATA / 'llava_vqav2_answers.jsonl'),
                                '--ann', str(DATA / 'vqav2_val_annotations.json'),
                                '--out', str(out)])
    # "Two" -> 2: 1; "A dog." -> dog: 1; "dont know" -> don't know (3 of 10): 0.9; "Red": 0.9.
    assert metrics['vqa/acc'] == pytest.approx(95)
    assert metrics['vqa/acc_number'] == pytest.approx(100)
    assert metrics['vqa/acc_other'] == pytest.approx(95)
    assert metrics['vqa/acc_yes_no'] == pytest.approx(90)
    assert metrics['vqa/num_missing'] == 0
    assert json.loads(out.read_text())['vqa/acc'] == pytest.approx(95)


def test_textvqa():
    metrics = evaluate_predictions('vqa', DATA / 'llava_textvqa_answers.jsonl',
                                   [DATA / 'textvqa_val.json'])
    assert metrics['vqa/acc'] == pytest.approx(50)  # "nokia" vs "Nokia" x8: 1; "Go": 0


def test_scienceqa():
    metrics = evaluate_predictions('multiple_choice', DATA / 'llava_scienceqa_answers.jsonl',
                                   [DATA / 'scienceqa_problems.json'], prefix='scienceqa')
    # 7 right, 12 wrong, 15 "D" of 2 options (invalid), 20 right.
    assert metrics['scienceqa/acc'] == 50
    assert metrics['scienceqa/invalid_rate'] == 25


def test_pope_splits():
    metrics = evaluate_predictions('pope', DATA / 'llava_pope_answers.jsonl',
                                   [DATA / 'coco_pope_random.json',
                                    DATA / 'coco_pope_popular.json'])
    assert metrics['pope/acc'] == pytest.approx(60)  # TP 2, FP 1, TN 1, FN 1
    assert metrics['pope/f1'] == pytest.approx(200 / 3)
    assert metrics['pope/yes_ratio'] == pytest.approx(60)
    assert metrics['pope/random/f1'] == pytest.approx(50)  # TP 1, FP 1, FN 1
    assert metrics['pope/popular/f1'] == pytest.approx(100)
    assert metrics['pope/f1_split_mean'] == pytest.approx(75)


def test_pope_colliding_ids_named(tmp_path):
    with pytest.raises(AnnotationError, match='also in another file'):
        evaluate_predictions('pope', DATA / 'llava_pope_answers.jsonl',
                             [DATA / 'coco_pope_random.json', DATA / 'coco_pope_random.json'])


def test_gqa():
    metrics = evaluate_predictions('gqa', DATA / 'llava_gqa_answers.jsonl',
                                   [DATA / 'gqa_testdev_balanced_questions.json'])
    assert metrics['gqa/acc'] == pytest.approx(200 / 3)  # "Yes", "Left." right; "A dog" wrong


def test_karpathy_reader():
    anns, _ = read_caption(DATA / 'coco_karpathy_val.json')
    assert anns['1']['gt'] == ['a dog runs fast', 'a brown dog running']


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('java') is None, reason='needs java')
def test_caption_offline(tmp_path):
    preds = tmp_path / 'caps.json'
    preds.write_text(json.dumps([dict(image_id=1, caption='a dog runs fast'),
                                 dict(image_id=2, caption='a cat sits down')]))
    metrics = evaluate_predictions('caption', preds, [DATA / 'coco_karpathy_val.json'])
    assert metrics['caption/Bleu_4'] == pytest.approx(100, abs=1e-3)  # exact references


def write_preds(tmp_path, rows):
    path = tmp_path / 'preds.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def test_unknown_question_id_named(tmp_path):
    rows = [dict(question_id=q, text='yes') for q in (1001, 1002, 1003, 1004, 999)]
    with pytest.raises(AnnotationError, match=r"1 predictions for question ids .*'999'"):
        evaluate_predictions('vqa', write_preds(tmp_path, rows),
                             [DATA / 'vqav2_val_annotations.json'])


def test_missing_prediction_named_or_counted(tmp_path):
    path = write_preds(tmp_path, [dict(question_id=q, text='2') for q in (1001, 1002, 1003)])
    with pytest.raises(AnnotationError, match=r"1 of 4 annotated questions .*'1004'"):
        evaluate_predictions('vqa', path, [DATA / 'vqav2_val_annotations.json'])
    metrics = evaluate_predictions('vqa', path, [DATA / 'vqav2_val_annotations.json'],
                                   allow_missing=True)
    assert metrics['vqa/num_missing'] == 1 and metrics['vqa/num_empty'] == 1
    assert metrics['vqa/acc'] == pytest.approx(25)  # only "2" for the 2 is right


def test_empty_generation_counted(tmp_path):
    rows = [dict(question_id=q, text=t) for q, t in
            [(1001, ''), (1002, 'dog'), (1003, 'no'), (1004, 'blue')]]
    metrics = evaluate_predictions('vqa', write_preds(tmp_path, rows),
                                   [DATA / 'vqav2_val_annotations.json'])
    assert metrics['vqa/num_empty'] == 1
    assert metrics['vqa/acc'] == pytest.approx(75)


def test_unreadable_samples_of_a_run_counted_offline(tmp_path):
    # tools/test.py --out marks the samples whose image could not be read: offline scoring
    # counts them as the run did (misses, num_invalid), not as empty generations.
    rows = [dict(question_id=q, text=t) for q, t in
            [(1001, ''), (1002, 'dog'), (1003, 'no'), (1004, 'blue')]]
    rows[0]['invalid_sample'] = 'image file not found: COCO_val2014_000000000001.jpg'
    metrics = evaluate_predictions('vqa', write_preds(tmp_path, rows),
                                   [DATA / 'vqav2_val_annotations.json'])
    assert metrics['vqa/num_invalid'] == 1 and metrics['vqa/num_empty'] == 0
    assert metrics['vqa/acc'] == pytest.approx(75)


def test_malformed_annotation_named(tmp_path):
    bad = tmp_path / 'ann.json'
    bad.write_text(json.dumps(dict(annotations=[dict(question_id=1)])))
    with pytest.raises(AnnotationError, match='record #0 needs question_id and answers'):
        evaluate_predictions('vqa', DATA / 'llava_vqav2_answers.jsonl', [bad])
    bad.write_text('{"annotations": [')
    with pytest.raises(AnnotationError, match='ann.json:1'):
        evaluate_predictions('vqa', DATA / 'llava_vqav2_answers.jsonl', [bad])


def test_cli_exits_with_the_message(tmp_path, capsys):
    rows = [dict(question_id=7, text='yes')]
    assert run_script(TOOL, ['--metric', 'vqa', '--pred', write_preds(tmp_path, rows),
                             '--ann', DATA / 'vqav2_val_annotations.json']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: bad input (') and 'question ids the annotations' in err
    assert '\n' not in err
    assert run_script(TOOL, ['--metric', 'vqa2', '--pred', 'p.json', '--ann', 'a.json']) == 1
    assert "Unknown metric 'vqa2'; one of ['action'" in capsys.readouterr().err
