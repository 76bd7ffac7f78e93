"""POPE (object hallucination): yes/no answers scored as a binary classification, per split."""
from collections import defaultdict
from typing import Dict, List

from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, is_invalid, percent


def parse_yes_no(text: str) -> str:
    """LLaVA's ``eval_pope.py`` rule: the first sentence, commas dropped; "no" when it holds the
    word ``No``, ``no`` or ``not``, else "yes"."""
    text = text or ''
    if '.' in text:
        text = text.split('.')[0]
    words = text.replace(',', '').split(' ')
    return 'no' if ('No' in words or 'no' in words or 'not' in words) else 'yes'


def binary_scores(preds: List[str], labels: List[str]) -> Dict[str, float]:
    """Accuracy, precision, recall, F1 ("yes" is positive) and the yes-ratio, in percent."""
    tp = sum(p == 'yes' and g == 'yes' for p, g in zip(preds, labels))
    fp = sum(p == 'yes' and g == 'no' for p, g in zip(preds, labels))
    tn = sum(p == 'no' and g == 'no' for p, g in zip(preds, labels))
    fn = sum(p == 'no' and g == 'yes' for p, g in zip(preds, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(acc=percent(tp + tn, len(preds)), precision=100 * precision,
                recall=100 * recall, f1=100 * f1,
                yes_ratio=percent(sum(p == 'yes' for p in preds), len(preds)))


@METRICS.register_module()
class POPEMetric(GenerationMetric):
    """POPE accuracy, precision, recall, F1 and yes-ratio, overall and per split.

    Records: ``pred`` (``pred_answer``), ``gt`` (``gt_answer``: ``"yes"``/``"no"``) and
    ``category`` (the split: ``adversarial``, ``popular``, ``random``).

    Keys (percent): ``{prefix}/{acc,precision,recall,f1,yes_ratio}`` over all samples,
    ``{prefix}/{split}/{...}`` per split, ``{prefix}/f1_split_mean`` (the mean of the splits'
    F1, the number LLaVA reports) when there are splits; ``num_samples``, ``num_empty``,
    ``num_invalid``. An invalid sample (unreadable image) is wrong for its true class: a false
    negative when the label is "yes", a false positive when it is "no" (so it also counts in
    ``yes_ratio`` then); never a silent "no".
    """
    default_prefix = 'pope'
    gt_key = 'gt_answer'
    extra_keys = ('category', )

    def score(self, records: List[dict]) -> Dict[str, float]:
        by_split = defaultdict(lambda: ([], []))
        preds, labels = [], []
        for r in records:
            gt = r['gt'].strip().lower() if isinstance(r['gt'], str) else r['gt']
            if gt not in ('yes', 'no'):
                raise MetricInputError(f'POPEMetric: the label of {r["id"]!r} must be "yes" '
                                       f'or "no", got {r["gt"]!r}')
            pred = ({'yes': 'no', 'no': 'yes'}[gt] if is_invalid(r)
                    else parse_yes_no(r['pred']))
            preds.append(pred)
            labels.append(gt)
            if r.get('category') is not None:
                by_split[r['category']][0].append(pred)
                by_split[r['category']][1].append(gt)
        metrics = binary_scores(preds, labels)
        for split, (p, g) in sorted(by_split.items()):
            metrics.update({f'{split}/{k}': v for k, v in binary_scores(p, g).items()})
        if by_split:
            metrics['f1_split_mean'] = sum(metrics[f'{s}/f1'] for s in by_split) / len(by_split)
        return metrics
