"""Ground-truth readers of the benchmarks' official annotation files.

One reader per format, used by :mod:`mmllava.evaluation.offline` (which scores prediction
files against them) and shared with the datasets that read the same files for their truth
(ScienceQA, POPE, GQA, TextVQA; action lists through
:func:`~mmllava.datasets.action_lists.read_action_list`), so a run and an offline scoring agree
on what is true. VQAv2 and COCO caption datasets read their question and image files
themselves; their answers and captions are checked here when scored offline. Each reader
returns ``({sample id: fields}, metric keywords)`` and raises :class:`AnnotationError`
naming the file and the record at fault.
"""
import json
import os.path as osp
import re
from typing import Dict, Sequence, Tuple

from .action_lists import read_action_list, sample_id_of
from .coco_caption import _image_id
from .label_map import read_label_map, read_text_lines


class AnnotationError(ValueError):
    """An annotation or predictions file that does not have the expected format."""


def read_json_or_lines(path: str):
    """A JSON document, or a list of the JSON values of a JSON-lines file.

    Raises:
        AnnotationError: the file is not UTF-8, JSON or JSON lines.
    """
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise AnnotationError(f'{path}: not UTF-8 text (byte {e.start}): a JSON file was '
                              'expected') from None
    try:
        return json.loads(text)
    except RecursionError:
        raise AnnotationError(f'{path}: JSON nested too deeply') from None
    except ValueError:  # JSONDecodeError, or an integer too long to read
        pass
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise AnnotationError(f'{path}:{n}: neither a JSON file nor JSON lines ({e.msg})')
        except (ValueError, RecursionError) as e:
            raise AnnotationError(f'{path}:{n}: unreadable JSON ({type(e).__name__})')
    return rows


def _need(cond: bool, path: str, what: str):
    if not cond:
        raise AnnotationError(f'{path}: {what}')


def read_vqa(path: str) -> Tuple[Dict[str, dict], dict]:
    """VQAv2 or TextVQA answers: ``{qid: {gt, answer_type}}`` and metric keywords."""
    data = read_json_or_lines(path)
    _need(isinstance(data, dict) and ('annotations' in data or 'data' in data), path,
          'expected VQAv2 annotations ({"annotations": [...]}) or TextVQA ({"data": [...]})')
    textvqa = 'annotations' not in data
    records = data['data'] if textvqa else data['annotations']
    _need(isinstance(records, list), path, f'"{"data" if textvqa else "annotations"}" must be '
          'a list of records')
    out = {}
    for n, ann in enumerate(records):
        _need(isinstance(ann, dict) and 'question_id' in ann
              and isinstance(ann.get('answers'), list) and ann['answers'], path,
              f'record #{n} needs question_id and answers (a list): {ann!r:.120}')
        answers = [a if isinstance(a, str) else a.get('answer') if isinstance(a, dict) else None
                   for a in ann['answers']]
        _need(all(isinstance(a, str) for a in answers), path,
              f'question {ann["question_id"]!r}: answers must be str or {{"answer": str}}')
        out[str(ann['question_id'])] = dict(gt=answers, answer_type=ann.get('answer_type'))
    return out, dict(normalize_gt='full' if textvqa else 'official')


def read_caption(path: str) -> Tuple[Dict[str, dict], dict]:
    """Karpathy or COCO captions: ``{image_id: {gt: [captions]}}``."""
    data = read_json_or_lines(path)
    out = {}
    if isinstance(data, dict):
        _need(isinstance(data.get('annotations'), list), path,
              'a COCO caption file has a list of "annotations"')
        for ann in data['annotations']:
            _need(isinstance(ann, dict) and isinstance(ann.get('caption'), str)
                  and 'image_id' in ann, path,
                  f'bad caption record {ann!r:.120}')
            out.setdefault(str(ann['image_id']), dict(gt=[]))['gt'].append(ann['caption'])
        return out, {}
    _need(isinstance(data, list), path, 'a Karpathy caption file is a JSON list')
    for n, ann in enumerate(data):
        _need(isinstance(ann, dict) and isinstance(ann.get('image'), str)
              and ann.get('caption'), path, f'record #{n} needs "image" and "caption"')
        caps = [ann['caption']] if isinstance(ann['caption'], str) else ann['caption']
        _need(isinstance(caps, list) and all(isinstance(c, str) for c in caps), path,
              f'record #{n}: "caption" must be a str or a list of str')
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
    _need(isinstance(rows, list), path, 'expected ScienceQA problems ({pid: problem}) or a '
          'list of records')
    out = {}
    for n, row in enumerate(rows):
        _need(isinstance(row, dict) and 'question_id' in row and 'answer' in row
              and (row.get('choices') or row.get('num_options')), path,
              f'record #{n} needs question_id, answer and choices (or num_options)')
        num = row.get('num_options') or row['choices']
        num = len(num) if isinstance(num, list) else num
        _need(isinstance(num, int) and not isinstance(num, bool) and num > 0, path,
              f'record #{n}: "choices" must be a list (or "num_options" a positive integer)')
        out[str(row['question_id'])] = dict(gt=row['answer'], num_options=num)
    return out, {}


def pope_split(path: str) -> str:
    """The POPE split of a file, from its name (``coco_pope_random.json`` -> ``random``)."""
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
            category = row.get('category') or (pope_split(path) if len(paths) > 1 else None)
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


def read_action_labels(path: str, label_map: str = None) -> Tuple[Dict[str, dict], dict]:
    """An mmaction2 video or rawframe list: ``{sample id: {gt}}`` (the path without its
    extension, as ``tools/test.py --out`` writes it) and the label map's classes.

    The list is parsed by :func:`~mmllava.datasets.action_lists.read_action_list` (as the
    dataset reads it), its format told by the field count of its first line.
    """
    label_map = label_map or osp.join(osp.dirname(path), 'label_map.txt')
    _need(osp.exists(label_map), path, f'no label map: {label_map} does not exist (give one '
          'with --label-map)')
    try:
        classes = read_label_map(label_map)
    except ValueError as e:
        raise AnnotationError(str(e)) from None
    try:
        lines = read_text_lines(path, 'action list')
    except ValueError as e:
        raise AnnotationError(str(e)) from None
    first = next((line.split() for line in lines if line.strip()), [])
    list_format = 'rawframes' if len(first) == 3 else 'videos'
    try:
        entries = read_action_list(path, list_format, len(classes), label_map)
    except ValueError as e:
        raise AnnotationError(str(e)) from None
    out = {}
    for entry in entries:
        sample_id = sample_id_of(entry)
        _need(sample_id not in out, path, f'line {entry.line}: {entry.path} is listed twice')
        out[sample_id] = dict(gt=entry.label)
    return out, dict(classes=classes)
