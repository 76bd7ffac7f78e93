"""What every mmllava metric shares: one record per question, checked before scoring.

A record is a plain dict ``{'id': question id, 'pred': generated text, 'gt': ground truth,
...}``. :meth:`GenerationMetric.process` makes records from the model's data samples (during
``tools/test.py``); ``tools/analysis_tools/eval_predictions.py`` makes them from a predictions
file and the benchmark's annotation file. Both then call the same ``compute_metrics``.

A record with ``'invalid': True`` is a sample whose image or clip could not be read (its data
sample carries metainfo ``invalid_sample``, see :mod:`mmllava.datasets.invalid_samples`): it
has no prediction, and every metric scores it as a miss, never as a lucky guess, and counts it
in ``{prefix}/num_invalid``.
"""
import math
from typing import Any, Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

# Where a data sample (``DataSample.to_dict()``) carries the id, the generation and the truth.
ID_KEYS = ('question_id', 'sample_id', 'image_id')
PRED_KEYS = ('pred_answer', 'pred_caption')
INVALID_KEY = 'invalid_sample'  # metainfo of a sample whose visual could not be read
_LISTED = 10


def first_key(sample: dict, keys: Sequence[str], default: Any = None) -> Any:
    """The value of the first of ``keys`` that ``sample`` holds (and is not None)."""
    for key in keys:
        if sample.get(key) is not None:
            return sample[key]
    return default


def is_invalid(record: dict) -> bool:
    """Whether a record is a sample whose visual could not be read (a miss, see module doc)."""
    return bool(record.get('invalid'))


def listing(ids: Sequence, limit: int = _LISTED) -> str:
    """A short, readable list of ids for messages."""
    ids = list(ids)
    text = ', '.join(repr(i) for i in ids[:limit])
    return text + (f' ... ({len(ids)} in all)' if len(ids) > limit else '')


class MetricInputError(ValueError):
    """Predictions or ground truth that cannot be scored (the message names the samples)."""


class GenerationMetric(BaseMetric):
    """Base of the metrics that score generated text against ground truth.

    Subclasses set ``gt_key`` (the data sample field of the truth), may list ``extra_keys``
    (metainfo copied into the records, e.g. ``answer_type``) and implement :meth:`score`.

    Checks made here for every subclass: each record has a ground truth (else
    :class:`MetricInputError` naming the samples); an id seen twice is an error (two
    predictions of one question); empty generations are scored (they are wrong) and counted in
    ``{prefix}/num_empty`` with a warning naming them. Invalid samples (unreadable visuals,
    :func:`is_invalid`) get an empty prediction, are scored as misses by :meth:`score` and
    counted in ``{prefix}/num_invalid`` (not in ``num_empty``), with a warning naming them.
    ``{prefix}/num_samples`` (all records, invalid ones included) is reported too.

    Args:
        collect_device (str): ``'cpu'`` or ``'gpu'``, for distributed collection.
        prefix (str, optional): Key prefix; ``default_prefix`` otherwise.
    """
    gt_key: str = 'gt_answer'
    extra_keys: Sequence[str] = ()

    def __init__(self, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Turn the model's outputs into records (see the module doc)."""
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            record = dict(id=first_key(sample, ID_KEYS), pred=first_key(sample, PRED_KEYS),
                          gt=sample.get(self.gt_key))
            if sample.get(INVALID_KEY):
                record['invalid'] = True
            for key in self.extra_keys:
                if sample.get(key) is not None:
                    record[key] = sample[key]
            self.results.append(record)

    def check_records(self, records: List[dict]) -> List[dict]:
        """Validate records; returns them with ``pred`` as a stripped str."""
        if not records:
            raise MetricInputError(f'{type(self).__name__}: no predictions to score')
        no_gt = [r['id'] for r in records if r.get('gt') is None]
        if no_gt:
            raise MetricInputError(
                f'{type(self).__name__}: {len(no_gt)} samples have no ground truth '
                f'({self.gt_key!r}): {listing(no_gt)}. Evaluate on annotated data (test-dev/test '
                'answers are not public: write a submission file instead).')
        seen, dup = set(), []
        for r in records:
            if r['id'] in seen:
                dup.append(r['id'])
            seen.add(r['id'])
        if dup:
            raise MetricInputError(f'{type(self).__name__}: {len(dup)} question ids predicted '
                                   f'more than once: {listing(dup)}')
        out = []
        for r in records:
            pred = None if is_invalid(r) else r.get('pred')
            if pred is not None and not isinstance(pred, str):
                raise MetricInputError(f'{type(self).__name__}: the prediction of {r["id"]!r} '
                                       f'is a {type(pred).__name__}, not text: {pred!r:.80}')
            out.append(dict(r, pred=(pred or '').strip()))
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Check the records, score them, add the counts."""
        records = self.check_records(results)
        invalid = [r['id'] for r in records if is_invalid(r)]
        empty = [r['id'] for r in records if not r['pred'] and not is_invalid(r)]
        logger = MMLogger.get_current_instance()
        if invalid:
            logger.warning(f'{type(self).__name__}: {len(invalid)} of {len(records)} samples '
                           f'could not be read (scored as misses): {listing(invalid)}')
        if empty:
            logger.warning(f'{type(self).__name__}: {len(empty)} of {len(records)} generations '
                           f'are empty (scored as wrong): {listing(empty)}')
        metrics = self.score(records)
        metrics.update(num_samples=len(records), num_empty=len(empty), num_invalid=len(invalid))
        return metrics

    def score(self, records: List[dict]) -> Dict[str, float]:
        """The metric values (percentages) of checked records; invalid ones are misses."""
        raise NotImplementedError


def percent(numerator: float, denominator: float) -> float:
    """``100 * numerator / denominator``, NaN for an empty denominator (never a silent 0)."""
    return 100.0 * numerator / denominator if denominator else math.nan
