"""Multiple-choice accuracy (ScienceQA-IMG, MMBench style) from generated option letters."""
import re
import string
from typing import Dict, List, Optional, Sequence, Union

from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, is_invalid, listing, percent

OPTION_LETTERS = string.ascii_uppercase
# LLaVA's eval_science_qa.py: "The answer is X." anywhere in the text, found exactly once.
_ANSWER_IS = re.compile(r'The answer is ([A-Z]).')
# Also taken (a superset of LLaVA's rules): "B.", "B)", "(B)", "B: text", "B) text".
_LETTER_PUNCT = re.compile(r'^\(?([A-Z])(?:[.):]|\)\.?)?(?:\s.*)?$', re.S)


def parse_option_letter(text: str, num_options: int) -> Optional[str]:
    """The option letter a generation names, or None when it names no valid option.

    LLaVA's rules first (``eval_science_qa.py``): the whole text is a letter; the text starts
    with ``"X. "``; ``"The answer is X."`` occurs exactly once. Then ``"X."``, ``"X)"``,
    ``"(X)"`` with or without text after them. The letter must be one of the first
    ``num_options`` letters.
    """
    valid = list(OPTION_LETTERS[:num_options])  # a list: '' and 'AB' are no letters
    text = (text or '').strip()
    letter = None
    if text in valid:
        letter = text
    elif len(text) >= 3 and text[0] in valid and text[1:3] == '. ':
        letter = text[0]
    else:
        found = _ANSWER_IS.findall(text)
        if len(found) == 1:
            letter = found[0]
        else:
            match = _LETTER_PUNCT.match(text)
            if match:
                letter = match.group(1)
    return letter if letter is not None and letter in valid else None


def _gt_letter(gt: Union[str, int], record_id) -> str:
    if isinstance(gt, int) and not isinstance(gt, bool):
        return OPTION_LETTERS[gt]
    if isinstance(gt, str) and len(gt.strip()) == 1 and gt.strip().upper() in OPTION_LETTERS:
        return gt.strip().upper()
    raise MetricInputError(f'MultipleChoiceAccuracy: the answer of {record_id!r} must be an '
                           f'option letter or index, got {gt!r}')


@METRICS.register_module()
class MultipleChoiceAccuracy(GenerationMetric):
    """Accuracy of generated option letters, and how often no valid letter was found.

    Records: ``pred`` (``pred_answer``), ``gt`` (``gt_answer``: the correct letter, or its
    index) and ``choices`` (the option texts; only their number is used) or ``num_options``.
    An answer that names no valid option (:func:`parse_option_letter`) is wrong, as in LLaVA's
    evaluation, and counted. An invalid sample (unreadable image) answers nothing: it is wrong
    and names no option.

    Keys (percent): ``{prefix}/acc``, ``{prefix}/invalid_rate`` (answers naming no valid
    option, invalid samples included); ``num_no_option`` (their count), ``num_invalid`` (the
    invalid samples), ``num_samples``, ``num_empty``.
    """
    default_prefix = 'mc'
    gt_key = 'gt_answer'
    extra_keys = ('choices', 'num_options')

    def score(self, records: List[dict]) -> Dict[str, float]:
        correct, no_option = 0, []
        for r in records:
            num = r.get('num_options')
            if num is None and isinstance(r.get('choices'), Sequence):
                num = len(r['choices'])
            if not num:
                raise MetricInputError(f'MultipleChoiceAccuracy: {r["id"]!r} has neither '
                                       '"choices" nor "num_options"')
            letter = None if is_invalid(r) else parse_option_letter(r['pred'], int(num))
            if letter is None:
                no_option.append(r['id'])
            elif letter == _gt_letter(r['gt'], r['id']):
                correct += 1
        if no_option:
            from mmengine.logging import MMLogger
            MMLogger.get_current_instance().info(
                f'MultipleChoiceAccuracy: no valid option letter in {len(no_option)} answers: '
                f'{listing(no_option)}')
        return {'acc': percent(correct, len(records)),
                'invalid_rate': percent(len(no_option), len(records)),
                'num_no_option': len(no_option)}
