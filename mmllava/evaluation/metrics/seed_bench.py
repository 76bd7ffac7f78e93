"""SEED-Bench (v1) accuracy: per dimension, and over the image, video and all questions.

How SEED-Bench scores: each question has one right letter; a dimension's accuracy is its right
answers over its questions, and ``image``, ``video`` and ``overall`` are right answers over all
the questions of the kind (averages over questions, not over dimensions). That is what the
authors' ``eval.py`` ("Total accuracy": ``total_correct / total_count``) and LLaVA's
``scripts/convert_seed_for_submission.py`` (``eval_single`` over all questions, then with
``eval_only_type='image'`` / ``'video'``) compute, and what the published tables hold:
LLaVA-1.5-7B's 58.6 overall = (66.1 x 14233 image + 37.3 x 5009 video questions) / 19242
(LLaVA-1.5 paper, Table 4; InstructBLIP's 53.4 / 58.8 / 38.1 there likewise).

The answer of a question:

- by letter (LLaVA's evaluation): the generated text, stripped, must equal the letter
  (``row['text'] == question['answer']`` in ``convert_seed_for_submission.py``; a question
  without a prediction is wrong); ``letter_rule='parse'`` reads it with
  :func:`~mmllava.evaluation.metrics.multiple_choice.parse_option_letter` instead
  (``"A."``, ``"(A)"``, ``"The answer is A."`` count too);
- by likelihood (SEED-Bench's own, the dataset's ``rank_options=True``): the choice the model
  ranks first (``pred_label``, or the arg-max of ``pred_scores``).

Prediction files for :func:`score_prediction_file` (``eval_predictions.py --metric
seed_bench``): JSON lines ``{"question_id", "prediction"}`` (SEED's leaderboard upload, as
LLaVA's converter writes it), ``{"question_id", "text"}`` (LLaVA's answers file), or
``tools/test.py --out``'s list (``text``, and ``pred_scores`` when the run ranked: then the
ranking decides, as in the run; ``invalid_sample``: a miss).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmllava.datasets.annotations import AnnotationError, read_json_or_lines
from mmllava.datasets.seed_bench import (
    SEED_DIMENSIONS,
    SEED_LETTERS,
    VIDEO_DIMENSIONS,
    read_seed_bench,
)
from mmllava.registry import METRICS

from .base import (
    ID_KEYS,
    INVALID_KEY,
    PRED_KEYS,
    GenerationMetric,
    MetricInputError,
    first_key,
    is_invalid,
    listing,
    percent,
)
from .multiple_choice import parse_option_letter

LETTER_RULES = ('exact', 'parse')
_VIDEO_NAMES = {SEED_DIMENSIONS[d] for d in VIDEO_DIMENSIONS}


def _to_list(value):
    if value is None:
        return None
    return value.tolist() if hasattr(value, 'tolist') else list(value)


@METRICS.register_module()
class SEEDBenchMetric(GenerationMetric):
    """SEED-Bench accuracy (see the module doc for the rules and the averages).

    Records: ``pred`` (the generated text), ``gt`` (the letter, ``gt_answer``), ``category``
    (the dimension name), ``data_type`` (``'image'``/``'video'``; from the dimension when the
    samples do not carry it: 10-12 are video) and, from a ranking run, ``label`` (the chosen
    choice's index). Invalid samples (unreadable visuals) are wrong.

    Keys (percent): ``{prefix}/{dimension name}`` for each dimension scored (as
    ``SEED-Bench.json`` names them, e.g. ``seed/Scene Understanding``), ``{prefix}/image``,
    ``{prefix}/video``, ``{prefix}/overall`` (NaN for a kind without questions), and
    ``ranked`` (1 when the ranking decided), ``num_samples``, ``num_empty``, ``num_invalid``.

    Args:
        letter_rule (str): ``'exact'`` (LLaVA's) or ``'parse'`` (see the module doc).
        use_ranking (bool): Use the ranking when the samples have one (``pred_label``);
            False scores the generated letter even then.
        **kwargs: :class:`GenerationMetric` arguments.
    """
    default_prefix = 'seed'
    gt_key = 'gt_answer'
    extra_keys = ('category', 'data_type')

    def __init__(self, letter_rule: str = 'exact', use_ranking: bool = True, **kwargs):
        super().__init__(**kwargs)
        if letter_rule not in LETTER_RULES:
            raise ValueError(f'letter_rule must be one of {LETTER_RULES}, got {letter_rule!r}')
        self.letter_rule = letter_rule
        self.use_ranking = use_ranking

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Records of data samples: the text, the letter, the dimension, the ranking."""
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            label = sample.get('pred_label')
            if label is None and sample.get('pred_scores') is not None:
                label = int(np.argmax(np.asarray(_to_list(sample['pred_scores']))))
            self.results.append(dict(
                id=first_key(sample, ID_KEYS), pred=first_key(sample, PRED_KEYS),
                gt=sample.get('gt_answer'), category=sample.get('category'),
                data_type=sample.get('data_type'), invalid=bool(sample.get(INVALID_KEY)),
                label=None if label is None else int(label)))

    def answer(self, record: dict) -> Optional[str]:
        """The letter a record answers (None: no valid answer)."""
        if is_invalid(record) or record.get('missing'):
            return None
        if self.use_ranking and record.get('label') is not None:
            label = int(record['label'])
            return SEED_LETTERS[label] if 0 <= label < len(SEED_LETTERS) else None
        if self.letter_rule == 'parse':
            return parse_option_letter(record['pred'], len(SEED_LETTERS))
        return record['pred'] if record['pred'] in SEED_LETTERS else None

    def score(self, records: List[dict]) -> Dict[str, float]:
        valid = [r for r in records if not is_invalid(r) and not r.get('missing')]
        ranked = [r.get('label') is not None for r in valid]
        if self.use_ranking and any(ranked) and not all(ranked):
            raise MetricInputError(f'SEEDBenchMetric: {ranked.count(False)} samples have no '
                                   'ranking while others do: '
                                   f'{listing([r["id"] for r in valid if r.get("label") is None])}')
        groups: Dict[str, List[bool]] = {}
        kinds: Dict[str, List[bool]] = {'image': [], 'video': []}
        for r in records:
            name = r.get('category')
            if name is None:
                raise MetricInputError(f'SEEDBenchMetric: {r["id"]!r} has no dimension '
                                       '("category")')
            kind = r.get('data_type') or ('video' if name in _VIDEO_NAMES else 'image')
            if kind not in kinds:
                raise MetricInputError(f'SEEDBenchMetric: {r["id"]!r}: data_type must be '
                                       f'"image" or "video", got {kind!r}')
            gt = str(r['gt']).strip()
            if gt not in SEED_LETTERS:
                raise MetricInputError(f'SEEDBenchMetric: the answer of {r["id"]!r} must be a '
                                       f'letter of {list(SEED_LETTERS)}, got {r["gt"]!r}')
            right = self.answer(r) == gt
            groups.setdefault(name, []).append(right)
            kinds[kind].append(right)
        metrics = {name: percent(sum(v), len(v)) for name, v in groups.items()}
        for kind, v in kinds.items():
            metrics[kind] = percent(sum(v), len(v))
        metrics['overall'] = percent(sum(sum(v) for v in kinds.values()), len(records))
        metrics['ranked'] = int(self.use_ranking and bool(valid) and all(ranked))
        return metrics


def _read_prediction_rows(path: str) -> Dict[str, dict]:
    data = read_json_or_lines(path)
    if isinstance(data, dict):
        data = data.get('predictions', data.get('results', [data]))
    if not isinstance(data, list):
        raise AnnotationError(f'{path}: predictions must be a JSON list or JSON lines')
    rows = {}
    for n, row in enumerate(data, 1):
        if not isinstance(row, dict) or row.get('question_id') is None:
            raise AnnotationError(f'{path}: prediction #{n} needs "question_id" and '
                                  f'"prediction" (or "text"): {row!r:.120}')
        text = next((row[k] for k in ('prediction', 'text', 'pred_answer') if k in row), None)
        if text is not None and not isinstance(text, str):
            raise AnnotationError(f'{path}: prediction #{n} (question {row["question_id"]!r}): '
                                  f'the prediction must be text, got {text!r:.60}')
        if text is None and row.get('pred_scores') is None and not row.get(INVALID_KEY):
            raise AnnotationError(f'{path}: prediction #{n} (question {row["question_id"]!r}) '
                                  'has no "prediction" or "text"')
        qid = str(row['question_id'])
        if qid in rows:
            raise AnnotationError(f'{path}: question {qid!r} is predicted more than once')
        scores = row.get('pred_scores')
        if scores is not None and (not isinstance(scores, list) or len(scores) != 4):
            raise AnnotationError(f'{path}: prediction #{n} (question {qid!r}): "pred_scores" '
                                  f'must be 4 numbers (one per choice), got {scores!r:.60}')
        rows[qid] = dict(text=text, scores=scores, invalid=bool(row.get(INVALID_KEY)))
    return rows


def score_prediction_file(pred_file: str, ann_files: List[str], allow_missing: bool = False,
                          prefix: Optional[str] = None,
                          letter_rule: str = 'exact') -> Dict[str, float]:
    """Score a SEED-Bench prediction file (module doc) against ``SEED-Bench.json``.

    Args:
        pred_file (str): The predictions.
        ann_files (list[str]): One ``SEED-Bench.json``.
        allow_missing (bool): Score questions without a prediction as wrong (counted in
            ``num_missing``; LLaVA's converter does so) instead of raising.
        prefix (str, optional): Key prefix, ``'seed'`` by default.
        letter_rule (str): As :class:`SEEDBenchMetric`'s.

    Returns:
        dict: :class:`SEEDBenchMetric`'s keys and ``{prefix}/num_missing``.

    Raises:
        AnnotationError: a malformed file, predictions of unknown questions, or (unless
            ``allow_missing``) questions without a prediction.
    """
    if len(ann_files) != 1:
        raise ValueError(f'--metric seed_bench takes one annotation file (SEED-Bench.json), '
                         f'got {len(ann_files)}')
    questions = read_seed_bench(ann_files[0])
    preds = _read_prediction_rows(pred_file)
    unknown = [q for q in preds if q not in questions]
    if unknown:
        raise AnnotationError(f'{pred_file}: {len(unknown)} predictions for questions '
                              f'{ann_files[0]} does not have: {listing(unknown)}')
    missing = [q for q in questions if q not in preds]
    if missing and not allow_missing:
        raise AnnotationError(f'{pred_file}: {len(missing)} of {len(questions)} questions have '
                              f'no prediction: {listing(missing)}. Finish the run, or pass '
                              '--allow-missing to score them as wrong.')
    records = []
    for qid, q in questions.items():
        row = preds.get(qid, dict(text=None, scores=None, invalid=False, missing=True))
        label = None
        if row['scores'] is not None:
            label = int(np.argmax(np.asarray(row['scores'], dtype=np.float64)))
        records.append(dict(id=qid, pred=row['text'], gt=q['answer'], category=q['dimension'],
                            data_type=q['data_type'], invalid=row['invalid'], label=label,
                            missing=row.get('missing', False)))
    metric = SEEDBenchMetric(letter_rule=letter_rule, prefix=prefix)
    values = metric.compute_metrics(records)
    values['num_missing'] = len(missing)
    return {f'{metric.prefix}/{k}': v for k, v in values.items()}
