"""Score a predictions file against a benchmark's official annotation file.

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
* ``action``: an mmaction2 list (``path label`` per line, or rawframes ``dir frames label``)
  with ``label_map.txt`` (one class name a line) beside it or given as ``label_map``; the
  prediction ids are the list's paths. Predictions may carry ``pred_scores`` (one per class)
  for top-k.
"""
import json
import os.path as osp
import re
from typing import Callable, Dict, List, Sequence, Tuple

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


class AnnotationError(ValueError):
    """An annotation or predictions file that does not have the expected format."""


def write_metrics_json(metrics: Dict[str, float], path: str) -> None:
    """Write ``metrics`` to ``path`` as JSON; NaN (an empty group) becomes null."""
    import math
    import os
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in metrics.items()}, f, indent=2)


def read_json_or_lines(path: str):
    """A JSON document, or a list of the JSON values of a JSON-lines file."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise AnnotationError(f'{path}:{n}: neither a JSON file nor JSON lines ({e.msg})')
    return rows


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


def _need(cond: bool, path: str, what: str):
    if not cond:
        raise AnnotationError(f'{path}: {what}')


def read_vqa(path: str) -> Tuple[Dict[str, dict], dict]:
    """VQAv2 or TextVQA answers: ``{qid: {gt, answer_type}}`` and metric keywords."""
    data = read_json_or_lines(path)
    _need(isinstance(data, dict) and ('annotations' in data or 'data' in data), path,
          'expected VQAv2 annotations ({"annotations": [...]}) or TextVQA ({"data": [...]})')
    textvqa = 'annotations' not in data
    out = {}
    for n, ann in enumerate(data['data'] if textvqa else data['annotations']):
        _need(isinstance(ann, dict) and 'question_id' in ann and ann.get('answers'), path,
              f'record #{n} needs question_id and answers: {ann!r:.120}')
        answers = [a if isinstance(a, str) else a.get('answer') for a in ann['answers']]
        _need(all(isinstance(a, str) for a in answers), path,
              f'question {ann["question_id"]!r}: answers must be str or {{"answer": str}}')
        out[str(ann['question_id'])] = dict(gt=answers, answer_type=ann.get('answer_type'))
    return out, dict(normalize_gt='full' if textvqa else 'official')


def read_caption(path: str) -> Tuple[Dict[str, dict], dict]:
    """Karpathy or COCO captions: ``{image_id: {gt: [captions]}}``."""
    from mmllava.datasets.coco_caption import _image_id
    data = read_json_or_lines(path)
    out = {}
    if isinstance(data, dict):
        _need('annotations' in data, path, 'a COCO caption file has "annotations"')
        for ann in data['annotations']:
            _need(isinstance(ann.get('caption'), str) and 'image_id' in ann, path,
                  f'bad caption record {ann!r:.120}')
            out.setdefault(str(ann['image_id']), dict(gt=[]))['gt'].append(ann['caption'])
        return out, {}
    _need(isinstance(data, list), path, 'a Karpathy caption file is a JSON list')
    for n, ann in enumerate(data):
        _need(isinstance(ann, dict) and isinstance(ann.get('image'), str)
              and ann.get('caption'), path, f'record #{n} needs "image" and "caption"')
        caps = [ann['caption']] if isinstance(ann['caption'], str) else list(ann['caption'])
        out.setdefault(str(_image_id(ann)), dict(gt=[]))['gt'].extend(caps)
    return out, {}


def read_multiple_choice(path: str) -> Tuple[Dict[str, dict], dict]:
    """ScienceQA problems or generic multiple-choice answers: ``{qid: {gt, num_options}}``."""
    data = read_json_or_lines(path)
    if isinstance(data, dict):  # ScienceQA: {pid: problem}
        rows = [dict(p, question_id=pid) for pid, p in data.items() if isinstance(p, dict)]
        _need(len(rows) == len(data), path, 'ScienceQA problems.json maps ids to problems')
    else:
        rows = data
    out = {}
    for n, row in enumerate(rows):
        _need(isinstance(row, dict) and 'question_id' in row and 'answer' in row
              and (row.get('choices') or row.get('num_options')), path,
              f'record #{n} needs question_id, answer and choices (or num_options)')
        num = row.get('num_options') or len(row['choices'])
        out[str(row['question_id'])] = dict(gt=row['answer'], num_options=num)
    return out, {}


def _pope_split(path: str) -> str:
    match = re.search(r'pope_([A-Za-z]+)', osp.basename(path))
    return match.group(1) if match else osp.splitext(osp.basename(path))[0]


def read_pope(paths: Sequence[str]) -> Tuple[Dict[str, dict], dict]:
    """POPE questions with labels: ``{qid: {gt, category}}`` (the split from the file name)."""
    out = {}
    for path in paths:
        rows = read_json_or_lines(path)
        _need(isinstance(rows, list), path, 'POPE files are JSON lines')
        for n, row in enumerate(rows, 1):
            _need(isinstance(row, dict) and 'question_id' in row and 'label' in row, path,
                  f'line {n} needs question_id and label: {row!r:.120}')
            qid = str(row['question_id'])
            _need(qid not in out, path,
                  f'question id {qid} also in another file: the official split files number '
                  'their questions from 1 each; evaluate them one at a time, or merge them '
                  'with unique ids and a "category" (as LLaVA\'s llava_pope_test.jsonl)')
            category = row.get('category') or (_pope_split(path) if len(paths) > 1 else None)
            out[qid] = dict(gt=row['label'], category=category)
    return out, {}


def read_gqa(path: str) -> Tuple[Dict[str, dict], dict]:
    """GQA questions with answers: ``{qid: {gt}}``."""
    data = read_json_or_lines(path)
    _need(isinstance(data, dict), path, 'GQA question files map question ids to questions')
    out = {}
    for qid, q in data.items():
        _need(isinstance(q, dict) and isinstance(q.get('answer'), str), path,
              f'question {qid!r} has no "answer" (test-dev "all" files have them; '
              'submission-only files do not)')
        out[str(qid)] = dict(gt=q['answer'])
    return out, {}


def read_action_list(path: str, label_map: str = None) -> Tuple[Dict[str, dict], dict]:
    """An mmaction2 video or rawframe list: ``{sample id: {gt}}`` (the path without its
    extension, as ``tools/test.py --out`` writes it) and the label map's classes."""
    from mmllava.datasets.action_lists import sample_id_of
    from mmllava.utils.label_map import read_label_map
    label_map = label_map or osp.join(osp.dirname(path), 'label_map.txt')
    _need(osp.exists(label_map), path, f'no label map: {label_map} does not exist (give one '
          'with --label-map)')
    classes = read_label_map(label_map)
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            _need(len(parts) in (2, 3) and parts[-1].lstrip('-').isdigit(), path,
                  f'line {n}: expected "path label" or "dir total_frames label": {line!r:.120}')
            label = int(parts[-1])
            _need(0 <= label < len(classes), path,
                  f'line {n}: label {label} is outside the label map {label_map} '
                  f'({len(classes)} classes)')
            sample_id = sample_id_of(parts[0])
            _need(sample_id not in out, path, f'line {n}: {parts[0]} is listed twice')
            out[sample_id] = dict(gt=label)
    _need(bool(out), path, 'the list is empty')
    return out, dict(classes=classes)


# metric name -> (reader, metric class, default prefix)
METRIC_READERS: Dict[str, Tuple[Callable, type, str]] = {
    'vqa': (read_vqa, VQAAccuracy, 'vqa'),
    'caption': (read_caption, CaptionMetric, 'caption'),
    'multiple_choice': (read_multiple_choice, MultipleChoiceAccuracy, 'mc'),
    'pope': (read_pope, POPEMetric, 'pope'),
    'gqa': (read_gqa, ShortAnswerAccuracy, 'gqa'),
    'action': (read_action_list, ActionAccuracy, 'action'),
}


def evaluate_predictions(metric: str, pred_file: str, ann_files: Sequence[str],
                         allow_missing: bool = False, prefix: str = None,
                         label_map: str = None) -> Dict[str, float]:
    """Score ``pred_file`` against ``ann_files`` with the metric class of ``metric``.

    Raises:
        AnnotationError: A malformed file; predictions for ids the annotations do not have;
            annotated questions without a prediction (unless ``allow_missing``: then they
            are scored as empty answers and counted in ``{prefix}/num_missing``).
    """
    if metric not in METRIC_READERS:
        raise ValueError(f'Unknown metric {metric!r}; one of {sorted(METRIC_READERS)}')
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
        from mmllava.datasets.action_lists import sample_id_of
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
