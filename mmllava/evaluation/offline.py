"""Score a predictions file against a benchmark's official annotation file.

The annotation files are read by :mod:`mmllava.datasets.annotations`, the readers the datasets
use, so a run and an offline scoring agree on what is true.

Predictions: JSON lines of ``{"question_id", "text"}`` (what the original LLaVA's
``model_vqa_loader.py`` and friends write), or a JSON list of such dicts (``tools/test.py
--out``). The id may be ``question_id``, ``sample_id`` or ``image_id``; the text ``text``,
``answer``, ``pred_answer``, ``pred_caption`` or ``caption``. Ids are compared as strings. A
prediction with a non-empty ``invalid_sample`` (``tools/test.py --out`` writes the reason for a
sample whose visual could not be read) is scored as a miss and counted in ``num_invalid``, as in
the run.

Annotations, per metric:

* ``vqa``: VQAv2 ``v2_mscoco_*_annotations.json`` (``annotations``: ``question_id``,
  ``answers``, ``answer_type``) or TextVQA ``TextVQA_0.5.1_val.json`` (``data``:
  ``question_id``, ``answers``; scored with TextVQA's answer normalization).
* ``caption``: COCO Karpathy ``coco_karpathy_{val,test}.json`` or COCO
  ``captions_val2014.json`` (``annotations``: ``image_id``, ``caption``).
* ``multiple_choice``: ScienceQA ``problems.json`` (``{pid: {choices, answer}}``), or JSON
  (lines) of ``{"question_id", "answer": letter or index, "choices" or "num_options"}``.
* ``pope``: POPE ``coco_pope_{split}.json`` JSON lines (``question_id``, ``label``); several
  files give per-split numbers (their ids must not collide), or one file with ``category``.
* ``gqa``: GQA ``testdev_balanced_questions.json`` (``{qid: {answer, ...}}``).
* ``mme``, ``mmbench``, ``mvbench``, ``seed_bench``, ``llava_bench``: benchmarks whose
  prediction files have formats of their own; each is scored by the ``score_prediction_file``
  of its metric module (:data:`FILE_SCORERS`), which documents the format.
* ``action``: an mmaction2 list (``path label`` per line, or rawframes ``dir frames label``)
  with ``label_map.txt`` (one class name a line) beside it or given as ``label_map``; the
  prediction ids are the list's paths. Predictions may carry ``pred_scores`` (one per class)
  for top-k.
"""
import importlib
import json
import os.path as osp
from typing import Callable, Dict, List, Sequence, Tuple

from mmllava.datasets.action_lists import sample_id_of
from mmllava.datasets.annotations import (
    AnnotationError,
    read_action_labels,
    read_caption,
    read_gqa,
    read_json_or_lines,
    read_multiple_choice,
    read_pope,
    read_vqa,
)

from .metrics import (
    ActionAccuracy,
    CaptionMetric,
    MultipleChoiceAccuracy,
    POPEMetric,
    ShortAnswerAccuracy,
    VQAAccuracy,
)
from .metrics.base import listing

PRED_ID_KEYS = ('question_id', 'sample_id', 'image_id')
PRED_TEXT_KEYS = ('text', 'answer', 'pred_answer', 'pred_caption', 'caption')


def write_metrics_json(metrics: Dict[str, float], path: str) -> None:
    """Write ``metrics`` to ``path`` as JSON; NaN (an empty group) becomes null."""
    import math
    import os
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in metrics.items()}, f, indent=2)


def read_predictions(path: str) -> Dict[str, str]:
    """``{str(id): text}`` from a predictions file (see the module doc)."""
    data = read_json_or_lines(path)
    if isinstance(data, dict):
        data = data.get('predictions', data.get('results', [data]))
    if not isinstance(data, list):
        raise AnnotationError(f'{path}: predictions must be a JSON list or JSON lines')
    preds = {}
    for n, row in enumerate(data, 1):
        qid = next((row[k] for k in PRED_ID_KEYS if isinstance(row, dict) and k in row), None)
        text = next((row[k] for k in PRED_TEXT_KEYS if isinstance(row, dict) and k in row),
                    None)
        if qid is None or (text is not None and not isinstance(text, str)):
            raise AnnotationError(f'{path}: prediction #{n} needs one of {PRED_ID_KEYS} and a '
                                  f'text in one of {PRED_TEXT_KEYS}: {row!r:.120}')
        if str(qid) in preds:
            raise AnnotationError(f'{path}: question {qid!r} is predicted more than once')
        preds[str(qid)] = text
    return preds


def read_invalid_ids(path: str) -> set:
    """The ids of the predictions marked ``invalid_sample`` (see the module doc)."""
    data = read_json_or_lines(path)
    if isinstance(data, dict):
        data = data.get('predictions', data.get('results', [data]))
    return {str(next(row[k] for k in PRED_ID_KEYS if k in row)) for row in data
            if isinstance(row, dict) and row.get('invalid_sample')}


def read_prediction_scores(path: str) -> Dict[str, list]:
    """``{str(id): pred_scores}`` for the predictions that carry class scores."""
    data = read_json_or_lines(path)
    if isinstance(data, dict):
        data = data.get('predictions', data.get('results', [data]))
    return {str(next(row[k] for k in PRED_ID_KEYS if k in row)): row['pred_scores']
            for row in data if isinstance(row, dict) and row.get('pred_scores') is not None}


# metric name -> (reader, metric class, default prefix)
METRIC_READERS: Dict[str, Tuple[Callable, type, str]] = {
    'vqa': (read_vqa, VQAAccuracy, 'vqa'),
    'caption': (read_caption, CaptionMetric, 'caption'),
    'multiple_choice': (read_multiple_choice, MultipleChoiceAccuracy, 'mc'),
    'pope': (read_pope, POPEMetric, 'pope'),
    'gqa': (read_gqa, ShortAnswerAccuracy, 'gqa'),
    'action': (read_action_labels, ActionAccuracy, 'action'),
}


# metric name -> the module whose ``score_prediction_file(pred_file, ann_files, allow_missing,
# prefix)`` scores that benchmark's own prediction format (imported when asked for).
FILE_SCORERS: Dict[str, str] = {
    'llava_bench': 'mmllava.evaluation.metrics.llava_bench',
    'mmbench': 'mmllava.evaluation.metrics.mmbench',
    'mme': 'mmllava.evaluation.metrics.mme',
    'mvbench': 'mmllava.evaluation.metrics.mvbench',
    'seed_bench': 'mmllava.evaluation.metrics.seed_bench',
}


def metric_names() -> List[str]:
    """Every name :func:`evaluate_predictions` takes, sorted."""
    return sorted(set(METRIC_READERS) | set(FILE_SCORERS))


def evaluate_predictions(metric: str, pred_file: str, ann_files: Sequence[str],
                         allow_missing: bool = False, prefix: str = None,
                         label_map: str = None) -> Dict[str, float]:
    """Score ``pred_file`` against ``ann_files`` with the metric class of ``metric``.

    Raises:
        AnnotationError: A malformed file; predictions for ids the annotations do not have;
            annotated questions without a prediction (unless ``allow_missing``: then they
            are scored as empty answers and counted in ``{prefix}/num_missing``).
    """
    if metric in FILE_SCORERS:
        scorer = importlib.import_module(FILE_SCORERS[metric]).score_prediction_file
        return scorer(pred_file, list(ann_files), allow_missing=allow_missing, prefix=prefix)
    if metric not in METRIC_READERS:
        raise ValueError(f'Unknown metric {metric!r}; one of {metric_names()}')
    reader, metric_cls, default_prefix = METRIC_READERS[metric]
    if metric == 'pope':
        anns, kwargs = reader(list(ann_files))
    else:
        if len(ann_files) != 1:
            raise ValueError(f'--metric {metric} takes one annotation file, got {len(ann_files)}')
        extra = dict(label_map=label_map) if metric == 'action' else {}
        anns, kwargs = reader(ann_files[0], **extra)
    preds = read_predictions(pred_file)
    scores = read_prediction_scores(pred_file) if metric == 'action' else {}
    invalid = read_invalid_ids(pred_file)
    if metric == 'action':  # list paths or a run's sample ids: both name a clip
        preds, scores = ({sample_id_of(k): v for k, v in d.items()} for d in (preds, scores))
        invalid = {sample_id_of(k) for k in invalid}
    unknown = [q for q in preds if q not in anns]
    if unknown:
        raise AnnotationError(
            f'{pred_file}: {len(unknown)} predictions for question ids the annotations '
            f'({", ".join(map(str, ann_files))}) do not have: {listing(unknown)}. Wrong '
            'annotation file or split?')
    missing = [q for q in anns if q not in preds]
    if missing and not allow_missing:
        raise AnnotationError(
            f'{pred_file}: {len(missing)} of {len(anns)} annotated questions have no '
            f'prediction: {listing(missing)}. Finish the run, or pass --allow-missing to score '
            'them as wrong.')
    records: List[dict] = []
    for qid, ann in anns.items():
        records.append(dict(ann, id=qid, pred=preds.get(qid), scores=scores.get(qid),
                            invalid=qid in invalid))
    metric_obj = metric_cls(prefix=prefix or default_prefix, **kwargs)
    values = metric_obj.compute_metrics(records)
    values['num_missing'] = len(missing)
    return {f'{metric_obj.prefix}/{k}': v for k, v in values.items()}
