"""MME scores as the official ``eval_tool/calculation.py`` computes them.

Per subtask: ``acc`` (the questions answered right) and ``acc+`` (the images whose two questions
are both right), and the subtask's score ``(acc + acc+) x 100`` (0 to 200). ``perception`` is the
sum of the 10 perception subtasks (at most 2000), ``cognition`` the sum of the 4 cognition ones
(at most 800): the two numbers papers report (LLaVA-1.5-7B: perception 1510.7).

An answer is read as calculation.py's ``parse_pred_ans`` reads it: lower-cased, ``yes``/``no``
as is, else ``yes`` when the first four characters hold "yes", else ``no`` when they hold
"no", else ``other`` (always wrong). So ``Yes.``, ``yes, there is`` and ``Not`` read yes, yes
and no; ``The answer is yes`` reads other. ``rule='lmms_eval'`` is lmms-eval's variant
(``tasks/mme/utils.py``, from Otter): stripped, dots removed, and a lone ``y``/``n`` counts.

Predictions file (offline, :func:`score_prediction_file`), one JSON object a line (or a JSON
list), any of:

* ``{"category", "image", "question", "prediction"}``: the subtask, the image file (a name or a
  path; its file name is used), the question (as in the release, or as prompted: the
  instructions ``Please answer yes or no.`` and ``Answer the question using a single word or
  phrase.`` are ignored when matching) and the model's answer;
* ``tools/test.py --out`` rows (``question_id`` = ``"{subtask}/{image}#{line}"``, ``text``);
* LLaVA's answers file (``model_vqa_loader.py``: ``question_id`` = ``"{subtask}/[images/]
  {image}"``, ``prompt``, ``text``).

:func:`write_mme_results` writes the per-subtask ``{subtask}.txt`` files (``image<TAB>question
<TAB>answer<TAB>prediction``) that MME's own ``calculation.py --results_dir`` reads.
"""
import logging
import math
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from mmengine.logging import MMLogger

from mmllava.datasets.annotations import AnnotationError, read_json_or_lines
from mmllava.datasets.mme import (
    MME_COGNITION,
    MME_PERCEPTION,
    MME_SUBTASKS,
    mme_image_key,
    read_mme,
    strip_instruction,
)
from mmllava.datasets.vqav2 import SHORT_ANSWER_PROMPT
from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, is_invalid, listing

ANSWER_RULES = ('mme', 'lmms_eval')


def parse_mme_answer(text: Optional[str], rule: str = 'mme') -> str:
    """``'yes'``, ``'no'`` or ``'other'``: how MME's scorer reads an answer (see module doc)."""
    text = (text or '').lower()
    if rule == 'lmms_eval':
        text = text.strip().replace('.', '')
        if len(text) == 1:
            return {'y': 'yes', 'n': 'no'}.get(text, 'other')
    elif rule != 'mme':
        raise ValueError(f'Unknown MME answer rule {rule!r}; one of {ANSWER_RULES}')
    if text in ('yes', 'no'):
        return text
    prefix = text[:4]
    return 'yes' if 'yes' in prefix else 'no' if 'no' in prefix else 'other'


def mme_scores(records: List[dict], rule: str = 'mme') -> Dict[str, float]:
    """The scores of checked records (``id``, ``pred``, ``gt``, ``category``; see the class).

    Subtasks without records are NaN (JSON null), and the totals sum the subtasks present (NaN
    when none is).
    """
    by_task = defaultdict(lambda: defaultdict(list))  # subtask -> image -> [correct]
    for r in records:
        task = r.get('category')
        if task not in MME_SUBTASKS:
            raise MetricInputError(f'MMEMetric: question {r["id"]!r} has category {task!r}, '
                                   f'not an MME subtask ({", ".join(MME_SUBTASKS)})')
        gt = r['gt'].strip().lower() if isinstance(r['gt'], str) else r['gt']
        if gt not in ('yes', 'no'):
            raise MetricInputError(f'MMEMetric: the answer of {r["id"]!r} must be Yes or No, '
                                   f'got {r["gt"]!r}')
        pred = 'other' if is_invalid(r) else parse_mme_answer(r['pred'], rule)
        by_task[task][r.get('image') or mme_image_key(r['id'])].append(pred == gt)
    metrics = dict(perception=math.nan, cognition=math.nan)  # first in logs and JSON
    for task in MME_SUBTASKS:
        images = by_task.get(task)
        if not images:
            metrics[task] = math.nan
            continue
        answers = [c for img in images.values() for c in img]
        acc = 100.0 * sum(answers) / len(answers)
        acc_plus = 100.0 * sum(all(img) for img in images.values()) / len(images)
        metrics.update({task: acc + acc_plus, f'{task}/acc': acc, f'{task}/acc_plus': acc_plus})
    for total, tasks in (('perception', MME_PERCEPTION), ('cognition', MME_COGNITION)):
        present = [t for t in tasks if t in by_task]
        metrics[total] = sum(metrics[t] for t in present) if present else math.nan
        if present and len(present) < len(tasks):
            MMLogger.get_current_instance().warning(
                f'MMEMetric: {total} sums {len(present)} of its {len(tasks)} subtasks (no '
                f'questions of {", ".join(t for t in tasks if t not in by_task)}): not '
                'comparable with full-benchmark totals')
    return metrics


def _one_line(text: str) -> str:
    return ' '.join(str(text or '').split())


def write_mme_results(records: Sequence[dict], out_dir: str) -> List[str]:
    """MME's result files: ``{out_dir}/{subtask}.txt``, what ``calculation.py`` reads.

    One line per question, ``image<TAB>question<TAB>answer<TAB>prediction``, the two questions
    of an image together (calculation.py pairs consecutive lines); tabs and line breaks of a
    prediction become spaces (it splits on them), an unreadable image's prediction is empty.
    Records need ``id``, ``category``, ``question``, ``gt`` and ``pred``.

    Returns:
        list[str]: The files written (the subtasks the records have; calculation.py wants
        all 14).
    """
    by_task = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_task[r['category']][r.get('image') or mme_image_key(r['id'])].append(r)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for task, images in by_task.items():
        path = osp.join(out_dir, f'{task}.txt')
        with open(path, 'w', encoding='utf-8') as f:
            for key, rows in images.items():
                for r in sorted(rows, key=lambda r: str(r['id'])):
                    pred = '' if is_invalid(r) else _one_line(r.get('pred'))
                    f.write('\t'.join((osp.basename(key), _one_line(r.get('question')),
                                       str(r['gt']), pred)) + '\n')
        written.append(path)
    return written


@METRICS.register_module()
class MMEMetric(GenerationMetric):
    """MME perception, cognition and per-subtask scores (official calculation, module doc).

    Records: ``pred`` (``pred_answer``), ``gt`` (``gt_answer``: ``Yes``/``No``), ``category``
    (the subtask) and the question id ``"{subtask}/{image}#{line}"``, whose part before ``#``
    pairs the two questions of an image (:class:`~mmllava.datasets.MMEDataset`'s ids).

    Keys (no prefix unless given): ``perception``, ``cognition`` and one per subtask
    (``existence`` ... ``code_reasoning``, 0-200; NaN for a subtask without questions), with
    ``{subtask}/acc`` and ``{subtask}/acc_plus`` (percent); ``num_samples``, ``num_empty``,
    ``num_invalid``. An unreadable image's questions are wrong.

    Args:
        rule (str): How answers are read: ``'mme'`` (calculation.py, the default) or
            ``'lmms_eval'`` (see :func:`parse_mme_answer`).
        results_dir (str, optional): Also write MME's result files there
            (:func:`write_mme_results`), for the official ``calculation.py``.
        collect_device (str): ``'cpu'`` or ``'gpu'``, for distributed collection.
        prefix (str, optional): Key prefix; none by default.
    """
    default_prefix = ''  # bare keys ('' rather than None: mmengine warns of a None prefix)
    gt_key = 'gt_answer'
    extra_keys = ('category', 'question')

    def __init__(self, rule: str = 'mme', results_dir: Optional[str] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if rule not in ANSWER_RULES:
            raise ValueError(f'MMEMetric: unknown rule {rule!r}; one of {ANSWER_RULES}')
        self.rule = rule
        self.results_dir = results_dir

    def score(self, records: List[dict]) -> Dict[str, float]:
        metrics = mme_scores(records, self.rule)
        if self.results_dir:
            files = write_mme_results(records, self.results_dir)
            MMLogger.get_current_instance().info(
                f'MMEMetric: {len(files)} result files for MME\'s calculation.py written to '
                f'{self.results_dir}')
        return metrics


# ------------------------------------------------------------------ offline scoring
def _match_key(category, image, question) -> tuple:
    """What a prediction and an annotated question are matched on."""
    question = strip_instruction(str(question)).replace(SHORT_ANSWER_PROMPT, '')
    question = question.replace('<image>', '').strip()
    return str(category), osp.basename(str(image)), ' '.join(question.split())


def _prediction_key(row, path: str, n: int, by_id: dict):
    """(question id or match key, prediction text) of one row of a predictions file."""
    def bad(what):
        raise AnnotationError(f'{path}: prediction #{n}: {what}: {row!r:.160}')
    if not isinstance(row, dict):
        bad('expected a JSON object')
    if 'prediction' in row:
        missing = [k for k in ('category', 'image', 'question') if not isinstance(row.get(k), str)]
        if missing:
            bad(f'{"/".join(missing)} missing (expected {{"category", "image", "question", '
                '"prediction"}})')
        return _match_key(row['category'], row['image'], row['question']), row['prediction']
    qid, text = row.get('question_id'), row.get('text')
    if qid is None or 'text' not in row:
        bad('expected {"category", "image", "question", "prediction"}, a tools/test.py --out '
            'row ({"question_id", "text"}) or a LLaVA answer ({"question_id", "prompt", '
            '"text"})')
    if str(qid) in by_id:  # tools/test.py --out
        return str(qid), text
    if not isinstance(row.get('prompt'), str) or '/' not in str(qid):
        bad(f'question id {qid!r} is not in the annotations, and the row is no LLaVA answer '
            '("question_id": "{subtask}/{image}", "prompt")')
    return _match_key(str(qid).split('/')[0], qid, row['prompt']), text


def score_prediction_file(pred_file: str, ann_files: List[str], allow_missing: bool = False,
                          prefix: Optional[str] = None, rule: str = 'mme') -> Dict[str, float]:
    """Score an MME predictions file (formats: module doc) against the release folder.

    Args:
        pred_file (str): The predictions.
        ann_files (list[str]): The release folder ``MME_Benchmark_release_version``, or
            subtask folders; every question they hold is scored.
        allow_missing (bool): Score questions without a prediction as wrong (counted in
            ``num_missing``) instead of raising.
        prefix (str, optional): Key prefix (``"{prefix}/perception"``); none by default.
        rule (str): How answers are read (:func:`parse_mme_answer`).

    Raises:
        AnnotationError: A malformed file, a prediction of no annotated question or two of one,
            or (unless ``allow_missing``) annotated questions without a prediction.
    """
    anns = read_mme(list(ann_files))
    by_id = {r['question_id']: r for r in anns}
    by_match = {}
    for r in anns:
        key = _match_key(r['category'], r['image'], r['question'])
        if key in by_match:
            raise AnnotationError(f'{r["txt"]}:{r["line"]}: the same question twice for one image')
        by_match[key] = r['question_id']
    rows = read_json_or_lines(pred_file)
    if isinstance(rows, dict):
        rows = rows.get('predictions', [rows])
    if not isinstance(rows, list):
        raise AnnotationError(f'{pred_file}: predictions must be JSON lines or a JSON list')
    preds, invalid, unknown = {}, set(), []
    for n, row in enumerate(rows, 1):
        key, text = _prediction_key(row, pred_file, n, by_id)
        qid = key if isinstance(key, str) else by_match.get(key)
        if qid is None:
            unknown.append(key[0] + '/' + key[1] + ': ' + key[2])
            continue
        if text is not None and not isinstance(text, str):
            raise AnnotationError(f'{pred_file}: prediction #{n} of {qid!r} is not text: '
                                  f'{text!r:.80}')
        if qid in preds:
            raise AnnotationError(f'{pred_file}: question {qid!r} is predicted more than once '
                                  f'(again at prediction #{n})')
        preds[qid] = text
        if row.get('invalid_sample'):
            invalid.add(qid)
    if unknown:
        raise AnnotationError(
            f'{pred_file}: {len(unknown)} predictions of questions the annotations '
            f'({", ".join(map(str, ann_files))}) do not have: {listing(unknown, 3)}. Wrong '
            'folder, or the questions were changed?')
    missing = [q for q in by_id if q not in preds]
    if missing and not allow_missing:
        raise AnnotationError(
            f'{pred_file}: {len(missing)} of {len(by_id)} annotated questions have no '
            f'prediction: {listing(missing)}. Finish the run, or pass --allow-missing to score '
            'them as wrong.')
    if missing:
        MMLogger.get_current_instance().log(
            logging.WARNING, f'MME: {len(missing)} questions without a prediction scored as '
            'wrong')
    records = [dict(id=q, pred=preds.get(q), gt=r['answer'], category=r['category'],
                    question=r['question'], invalid=q in invalid) for q, r in by_id.items()]
    metric = MMEMetric(rule=rule, prefix=prefix)
    values = metric.compute_metrics(records)
    values['num_missing'] = len(missing)
    return {(f'{prefix}/{k}' if prefix else k): v for k, v in values.items()}
