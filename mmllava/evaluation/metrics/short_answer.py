"""Exact match of short answers (GQA) after LLaVA's normalization."""
from typing import Dict, List

from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, is_invalid, percent
from .vqa import normalize_vqa_answer


def normalize_gqa_answer(text: str) -> str:
    """LLaVA's ``convert_gqa_for_eval.py``: trailing periods dropped, lower case (stripped)."""
    return (text or '').strip().rstrip('.').strip().lower()


_NORMALIZERS = dict(gqa=normalize_gqa_answer, vqa=normalize_vqa_answer)


@METRICS.register_module()
class ShortAnswerAccuracy(GenerationMetric):
    """Normalized exact match of a generated short answer with the one true answer.

    Records: ``pred`` (``pred_answer``), ``gt`` (``gt_answer``: a str, or a list whose every
    item counts as correct).

    Keys (percent): ``{prefix}/acc``; ``num_samples``, ``num_empty``, ``num_invalid`` (an
    invalid sample, an unreadable image, is wrong).

    Args:
        normalization (str): ``'gqa'`` (LLaVA's GQA rule, the default) or ``'vqa'`` (the VQA
            normalization: punctuation, number words, articles, contractions).
        **kwargs: :class:`~mmllava.evaluation.metrics.base.GenerationMetric` arguments.
    """
    default_prefix = 'short_answer'
    gt_key = 'gt_answer'

    def __init__(self, normalization: str = 'gqa', **kwargs):
        super().__init__(**kwargs)
        if normalization not in _NORMALIZERS:
            raise ValueError(f'normalization must be one of {sorted(_NORMALIZERS)}, '
                             f'got {normalization!r}')
        self.normalize = _NORMALIZERS[normalization]

    def score(self, records: List[dict]) -> Dict[str, float]:
        correct = 0
        for r in records:
            gts = [r['gt']] if isinstance(r['gt'], str) else r['gt']
            if not gts or not all(isinstance(g, str) for g in gts):
                raise MetricInputError(f'ShortAnswerAccuracy: the answer of {r["id"]!r} must be '
                                       f'a str or a list of str, got {r["gt"]!r:.80}')
            correct += not is_invalid(r) and self.normalize(r['pred']) in {
                self.normalize(g) for g in gts}
        return {'acc': percent(correct, len(records))}
