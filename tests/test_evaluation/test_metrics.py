"""The metrics against values computed by hand, tricky normalizations included."""
import math
import shutil

import pytest
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

from mmllava.evaluation import (
    CaptionMetric,
    MetricInputError,
    MultipleChoiceAccuracy,
    POPEMetric,
    ShortAnswerAccuracy,
    VQAAccuracy,
    VQASubmissionWriter,
    normalize_vqa_answer,
    parse_option_letter,
    parse_yes_no,
    vqa_accuracy,
)
from mmllava.registry import METRICS


def evaluate(metric, samples):
    """Run ``metric`` as mmengine's Evaluator does (process, then evaluate)."""
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def vqa_sample(qid, pred, answers, answer_type=None):
    s = DataSample(metainfo=dict(question_id=qid, sample_id=qid))
    s.set_field(pred, 'pred_answer')
    if answers is not None:
        s.set_field(answers, 'gt_answer')
    if answer_type:
        s.set_metainfo(dict(answer_type=answer_type))
    return s


@pytest.mark.parametrize('pred,answers,expected', [
    ('Two', ['2'] * 10, 1.0),                   # number words become digits
    ('2', ['two'] * 10, 0.0),                   # ...in the prediction only, as the server
    ('a dog.', ['dog'] * 10, 1.0),              # article and final period
    ('dont', ["don't"] * 10, 1.0),              # contractions
    ('Yes', ['yes'] * 10, 1.0),                 # lower case
    ('2', ['2'] * 2 + ['3'] * 8, 0.6),          # (2 * 1/3 + 8 * 2/3) / 10
    ('red', ['red'] * 3 + ['blue'] * 7, 0.9),   # (3 * 2/3 + 7 * 1) / 10
    ('blue', ['red'] * 3 + ['blue'] * 7, 1.0),
    ('green', ['red'] * 10, 0.0),
    ('1,000', ['1000'] * 2 + ['one thousand'] * 8, 0.6),  # the comma goes
])
def test_vqa_accuracy_by_hand(pred, answers, expected):
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)


@pytest.mark.parametrize('pred,answers,expected', [
    # The humans disagree: the current vqaEval.py processes punctuation, then digits and
    # articles, in their answers too. All ten become "dog": 10 matches, accuracy 1. The older
    # script (punctuation only) kept "the dog" x8, "dog", "a dog": one match, so the held-out
    # "dog" scores 0 and the other nine 1/3 each: 0.3.
    ('dog', ['the dog'] * 8 + ['dog', 'a dog'], 1.0),
    # "two" x2, "2", "three" x7 become "2" x3, "3" x7: holding out a "2" leaves 2 matches (2/3),
    # holding out a "3" leaves 3 (1): (3 * 2/3 + 7) / 10 = 0.9. The older script: 0.3.
    ('2', ['two'] * 2 + ['2'] + ['three'] * 7, 0.9),
])
def test_vqa_gt_digits_and_articles_when_answers_disagree(pred, answers, expected):
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)
    assert vqa_accuracy(pred, answers, normalize_pred=False) == pytest.approx(expected)


def test_vqa_normalization():
    assert normalize_vqa_answer('The Dog.') == 'dog'
    assert normalize_vqa_answer('Three') == '3'
    assert normalize_vqa_answer('isnt') == "isn't"
    # The bare official script does not touch a prediction when the humans agree.
    assert vqa_accuracy('Two', ['2'] * 10, normalize_pred=False) == 0.0


def test_vqa_metric_keys_and_types():
    init_default_scope('mmllava')
    metric = METRICS.build(dict(type='VQAAccuracy'))
    samples = [vqa_sample(1, 'yes', ['yes'] * 10, 'yes/no'),
               vqa_sample(2, 'two', ['2'] * 2 + ['3'] * 8, 'number'),
               vqa_sample(3, '', ['cat'] * 10, 'other')]
    out = evaluate(metric, samples)
    assert out['vqa/acc'] == pytest.approx(100 * 1.6 / 3)
    assert out['vqa/acc_yes_no'] == pytest.approx(100)
    assert out['vqa/acc_number'] == pytest.approx(60)
    assert out['vqa/acc_other'] == 0
    assert out['vqa/num_empty'] == 1 and out['vqa/num_samples'] == 3


def test_textvqa_full_gt_normalization():
    # TextVQA's evaluator normalizes the human answers too.
    answers = ['The Beatles'] * 10
    assert vqa_accuracy('beatles', answers) == 0.0
    assert vqa_accuracy('beatles', answers, normalize_gt='full') == 1.0


def test_missing_ground_truth_is_named():
    metric = VQAAccuracy()
    with pytest.raises(MetricInputError, match="ground truth.*17"):
        evaluate(metric, [vqa_sample(17, 'yes', None)])


def test_duplicate_prediction_is_named():
    metric = VQAAccuracy()
    with pytest.raises(MetricInputError, match='more than once: 5'):
        evaluate(metric, [vqa_sample(5, 'yes', ['yes'] * 10), vqa_sample(5, 'no', ['yes'] * 10)])


def test_vqa_submission(tmp_path):
    path = tmp_path / 'sub' / 'answers.json'
    metric = VQASubmissionWriter(str(path))
    assert evaluate(metric, [vqa_sample(3, 'Two dogs.', None), vqa_sample(4, 'Yes', None)]) == {}
    import json
    assert json.loads(path.read_text()) == [dict(question_id=3, answer='2 dogs'),
                                            dict(question_id=4, answer='yes')]


@pytest.mark.parametrize('text,num,letter', [
    ('B', 3, 'B'), ('B. a cat', 3, 'B'), ('The answer is C.', 4, 'C'), ('(A)', 2, 'A'),
    ('A)', 2, 'A'), ('A.', 2, 'A'), ('D', 3, None), ('cat', 3, None), ('', 3, None),
    ('Both A and B', 3, None),
])
def test_parse_option_letter(text, num, letter):
    assert parse_option_letter(text, num) == letter


def mc_sample(qid, pred, gt, choices):
    s = DataSample(metainfo=dict(question_id=qid, choices=choices))
    s.set_field(pred, 'pred_answer')
    s.set_field(gt, 'gt_answer')
    return s


def test_multiple_choice_metric():
    metric = MultipleChoiceAccuracy(prefix='scienceqa')
    out = evaluate(metric, [mc_sample(1, 'A', 'A', ['x', 'y']),
                            mc_sample(2, 'B. y', 'A', ['x', 'y']),
                            mc_sample(3, 'C', 'C', ['x', 'y', 'z']),
                            mc_sample(4, 'E', 'A', ['x', 'y', 'z'])])  # not an option
    assert out['scienceqa/acc'] == 50
    assert out['scienceqa/invalid_rate'] == 25
    assert out['scienceqa/num_no_option'] == 1 and out['scienceqa/num_invalid'] == 0


@pytest.mark.parametrize('text,answer', [
    ('Yes', 'yes'), ('No', 'no'), ('There is not a dog.', 'no'), ('Yes, there is.', 'yes'),
    ('no, none', 'no'), ('Yes. But no cat.', 'yes'),
])
def test_parse_yes_no(text, answer):
    assert parse_yes_no(text) == answer


def test_pope_metric_by_hand():
    rows = [  # (pred, label, split)
        ('Yes', 'yes', 'random'), ('Yes', 'no', 'random'), ('No', 'no', 'random'),
        ('No', 'yes', 'popular'), ('Yes', 'yes', 'popular'),
    ]
    samples = []
    for i, (pred, label, split) in enumerate(rows):
        s = DataSample(metainfo=dict(question_id=i, category=split))
        s.set_field(pred, 'pred_answer')
        s.set_field(label, 'gt_answer')
        samples.append(s)
    out = evaluate(POPEMetric(), samples)
    # All: TP 2, FP 1, TN 1, FN 1.
    assert out['pope/acc'] == pytest.approx(60)
    assert out['pope/precision'] == pytest.approx(200 / 3)
    assert out['pope/recall'] == pytest.approx(200 / 3)
    assert out['pope/f1'] == pytest.approx(200 / 3)
    assert out['pope/yes_ratio'] == pytest.approx(60)
    # random: TP 1, FP 1, TN 1 -> P 1/2, R 1, F1 2/3; popular: TP 1, FN 1 -> P 1, R 1/2, F1 2/3.
    assert out['pope/random/f1'] == pytest.approx(200 / 3)
    assert out['pope/popular/recall'] == pytest.approx(50)
    assert out['pope/f1_split_mean'] == pytest.approx(200 / 3)


def test_pope_bad_label_named():
    s = DataSample(metainfo=dict(question_id='q9'))
    s.set_field('Yes', 'pred_answer')
    s.set_field('maybe', 'gt_answer')
    with pytest.raises(MetricInputError, match="q9"):
        evaluate(POPEMetric(), [s])


def test_short_answer_gqa():
    samples = [vqa_sample(1, 'Left.', 'left', None), vqa_sample(2, 'the dog', 'dog', None),
               vqa_sample(3, 'Yes', 'yes', None), vqa_sample(4, 'two', '2', None)]
    out = evaluate(ShortAnswerAccuracy(prefix='gqa'), samples)
    assert out['gqa/acc'] == 50  # GQA's rule: no article or number-word mapping
    out = evaluate(ShortAnswerAccuracy(normalization='vqa'), samples)
    assert out['short_answer/acc'] == 100


def test_empty_results_is_an_error_not_zero():
    with pytest.raises(MetricInputError, match='no predictions'):
        VQAAccuracy().compute_metrics([])


def test_nan_not_zero_for_empty_group():
    from mmllava.evaluation.metrics.base import percent
    assert math.isnan(percent(0, 0))


needs_java = pytest.mark.skipif(shutil.which('java') is None,
                                reason='pycocoevalcap needs java (CI has it)')


def cap_sample(image_id, pred, refs):
    s = DataSample(metainfo=dict(image_id=image_id, sample_id=str(image_id)))
    s.set_field(pred, 'pred_caption')
    s.set_field(refs, 'gt_caption')
    return s


@pytest.mark.slow
@needs_java
def test_caption_metric_by_hand():
    # The third image could not be read: scored as the empty caption (the model's '').
    samples = [cap_sample(1, 'A dog runs.', ['a dog runs fast']),
               cap_sample(2, 'a cat sits', ['A cat sits down.']),
               invalid(cap_sample(3, 'a bird', ['a bird flies']))]
    out = evaluate(CaptionMetric(spice=False), samples)
    # 6 of 6 candidate words match, candidate length 6 against reference length 8 + 3 (the
    # empty caption adds its reference to the corpus length): BLEU-1 = exp(1 - 11/6).
    # ROUGE-L: LCS 3, P 1, R 3/4, beta 1.2 for the first two, 0 for the empty one.
    assert out['caption/Bleu_1'] == pytest.approx(100 * math.exp(1 - 11 / 6), rel=1e-4)
    rouge = (1 + 1.44) * 0.75 / (0.75 + 1.44)
    assert out['caption/ROUGE_L'] == pytest.approx(100 * rouge * 2 / 3, rel=1e-4)
    assert {'caption/Bleu_4', 'caption/METEOR', 'caption/CIDEr'} <= set(out)
    assert 0 < out['caption/METEOR'] <= 100
    assert 'caption/SPICE' not in out
    assert out['caption/num_invalid'] == 1 and out['caption/num_empty'] == 0


def test_caption_without_java_says_so(monkeypatch):
    from mmllava.evaluation.metrics import caption
    monkeypatch.setattr(caption.shutil, 'which', lambda name: None)
    with pytest.raises(RuntimeError, match='need Java'):
        evaluate(CaptionMetric(), [cap_sample(1, 'a dog', ['a dog'])])


def test_caption_spice_skipped_with_warning(monkeypatch):
    from mmllava.evaluation.metrics import caption
    monkeypatch.setattr(caption, 'spice_jars_present', lambda: False)
    with pytest.raises(RuntimeError, match='spice=True'):
        evaluate(CaptionMetric(spice=True), [cap_sample(1, 'a dog', ['a dog'])])


def test_caption_missing_references_named():
    with pytest.raises(MetricInputError, match="lack reference captions.*'7'"):
        evaluate(CaptionMetric(), [cap_sample(7, 'a dog', [''])])


# ------------------------------------------------------------------ unreadable samples
def invalid(sample, reason='cannot read image /data/x.jpg: truncated'):
    """A data sample as the model returns an unreadable one: the reason, an empty answer."""
    sample.set_metainfo(dict(invalid_sample=reason))
    for field in ('pred_answer', 'pred_caption'):
        if field in sample:
            sample.set_field('', field)
    return sample


def test_invalid_samples_are_misses_even_where_empty_text_would_score():
    # "a"/"an" both normalize to '' (articles go), so an empty answer matches all ten:
    # as a generation it scores 1; an unreadable image must score 0.
    answers = ['a'] * 5 + ['an'] * 5
    assert vqa_accuracy('', answers) == 1.0
    out = evaluate(VQAAccuracy(), [invalid(vqa_sample(1, '', answers, 'other')),
                                   vqa_sample(2, 'yes', ['yes'] * 10, 'yes/no')])
    assert out['vqa/acc'] == 50 and out['vqa/acc_other'] == 0
    assert out['vqa/num_invalid'] == 1 and out['vqa/num_empty'] == 0
    assert out['vqa/num_samples'] == 2
    # GQA-style exact match with VQA normalization: 'the' normalizes to '' as well.
    out = evaluate(ShortAnswerAccuracy(normalization='vqa'),
                   [invalid(vqa_sample(1, '', 'the')), vqa_sample(2, '', 'the')])
    assert out['short_answer/acc'] == 50 and out['short_answer/num_invalid'] == 1


def test_invalid_samples_in_multiple_choice_and_pope():
    out = evaluate(MultipleChoiceAccuracy(), [invalid(mc_sample(1, '', 'A', ['x', 'y'])),
                                              mc_sample(2, 'A', 'A', ['x', 'y'])])
    assert out['mc/acc'] == 50 and out['mc/invalid_rate'] == 50
    assert out['mc/num_no_option'] == 1 and out['mc/num_invalid'] == 1
    # POPE: an empty answer parses as "yes"; an unreadable image is wrong for its true class
    # instead: a false negative for "yes", a false positive for "no".
    assert parse_yes_no('') == 'yes'
    rows = [('', 'yes', True), ('', 'no', True), ('Yes', 'yes', False), ('No', 'no', False)]
    samples = []
    for i, (pred, label, bad) in enumerate(rows):
        s = DataSample(metainfo=dict(question_id=i))
        s.set_field(pred, 'pred_answer')
        s.set_field(label, 'gt_answer')
        samples.append(invalid(s) if bad else s)
    out = evaluate(POPEMetric(), samples)
    # TP 1, FN 1, FP 1, TN 1.
    assert out['pope/acc'] == 50
    assert out['pope/precision'] == 50 and out['pope/recall'] == 50
    assert out['pope/yes_ratio'] == 50 and out['pope/num_invalid'] == 2
