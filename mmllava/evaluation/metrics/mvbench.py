"""MVBench accuracy per task, as the authors' evaluation scores it, and by option likelihood.

The reference is ``video_chat2/mvbench.ipynb`` of OpenGVLab/Ask-Anything: the model's answer
is ``"(" + the first line of its generation`` (the generation continues the answer prefix
``"Best option:("``, and the notebook puts back the ``"("``: ``return_prompt``), and
``check_ans`` compares the first space-separated word of it, lower-cased, with that of the
answer ``"(B) {answer}"``: right when ``word.replace('.', '')`` is a substring of ``"(b)"``
or ``"(b)"`` is a substring of ``word``. Its quirks are kept, for the authors' numbers: an
empty generation gives ``"("``, a substring of every answer, and counts as right (such
generations are counted in ``num_empty``); ``"(b"`` counts too. A sample whose video could
not be read is wrong (``num_invalid``).

Likelihood (``MVBenchDataset(rank_options=True)``): the model ranks the options'
continuations after the prefix (``"A) {option}"`` ...) and its first is the answer
(``pred_scores``, one per option).

Keys (percent): ``{prefix}/{task}`` per task (the json stems, e.g. ``action_sequence``),
``{prefix}/mean`` (the mean over the tasks of their accuracies: the number the paper and the
leaderboard report) and ``{prefix}/overall`` (correct over all questions: the notebook's
``Avg``; the same when every task has its 200 questions); with option scores also
``{prefix}/likelihood/{task}``, ``likelihood/mean`` and ``likelihood/overall``; and
``num_samples``, ``num_empty``, ``num_invalid`` (offline: ``num_missing``).
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmllava.datasets.annotations import AnnotationError, read_json_or_lines
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


def reference_answer(generated: str, return_prompt: str = '(') -> str:
    """The notebook's answer: ``return_prompt + generated.strip().split('\\n')[0]``."""
    return return_prompt + (generated or '').strip().split('\n')[0]


def check_answer(pred: str, gt: str) -> bool:
    """The notebook's ``check_ans(pred, gt)`` (the option words compared; see module doc)."""
    pred_option = pred.lower().split(' ')[0]
    gt_option = gt.lower().split(' ')[0]
    return pred_option.replace('.', '') in gt_option or gt_option in pred_option


def _gt_index(gt: str, record_id) -> int:
    """The option index of an answer ``"(B) ..."``."""
    if not (isinstance(gt, str) and len(gt) >= 3 and gt[0] == '(' and gt[2] == ')'
            and 'A' <= gt[1] <= 'Z'):
        raise MetricInputError(f'MVBenchMetric: the answer of {record_id!r} must read '
                               f'"(X) answer", got {gt!r:.60}')
    return ord(gt[1]) - ord('A')


@METRICS.register_module()
class MVBenchMetric(GenerationMetric):
    """MVBench accuracy per task and its mean (see the module doc for the rules and keys).

    Records: ``pred`` (the generation after the answer prefix), ``gt`` (``"(B) answer"``),
    ``category`` (the task), ``choices`` (the options) and, from likelihood ranking,
    ``scores`` (``pred_scores``, one per option) or ``label`` (``pred_label``).

    Args:
        likelihood (bool, optional): Report the likelihood accuracies: ``None`` (default)
            when the samples have option scores, ``True`` requires them, ``False`` never.
        return_prompt (str): What the notebook puts before the generation (``"("``, the end
            of its answer prefix).
        **kwargs: :class:`GenerationMetric` arguments.
    """
    default_prefix = 'mvbench'
    gt_key = 'gt_answer'
    extra_keys = ('category', 'choices')

    def __init__(self, likelihood: Optional[bool] = None, return_prompt: str = '(',
                 **kwargs):
        super().__init__(**kwargs)
        self.likelihood = likelihood
        self.return_prompt = return_prompt

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Records with the option scores (or label) of likelihood ranking, if any."""
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            scores, label = sample.get('pred_scores'), sample.get('pred_label')
            record = dict(id=first_key(sample, ID_KEYS), pred=first_key(sample, PRED_KEYS),
                          gt=sample.get(self.gt_key), category=sample.get('category'),
                          choices=sample.get('choices'), invalid=bool(sample.get(INVALID_KEY)))
            if scores is not None:
                record['scores'] = [float(v) for v in (
                    scores.tolist() if hasattr(scores, 'tolist') else scores)]
            elif label is not None:
                record['label'] = int(label.item() if hasattr(label, 'item') else label)
            self.results.append(record)

    def _option_pick(self, record: dict) -> int:
        """The option likelihood ranks first (-1 for an invalid sample)."""
        if is_invalid(record):
            return -1
        if record.get('scores') is not None:
            scores = np.asarray(record['scores'], dtype=np.float64)
            if record.get('choices') is not None and len(scores) != len(record['choices']):
                raise MetricInputError(f'MVBenchMetric: {record["id"]!r} has {len(scores)} '
                                       f'option scores for {len(record["choices"])} options')
            return int(np.argmax(scores))
        return int(record['label'])

    def score(self, records: List[dict]) -> Dict[str, float]:
        no_task = [r['id'] for r in records if not r.get('category')]
        if no_task:
            raise MetricInputError(f'MVBenchMetric: {len(no_task)} samples have no task '
                                   f'("category"): {listing(no_task)}')
        valid = [r for r in records if not is_invalid(r)]
        ranked = [r.get('scores') is not None or r.get('label') is not None for r in valid]
        if any(ranked) and not all(ranked):
            missing = [r['id'] for r, has in zip(valid, ranked) if not has]
            raise MetricInputError(f'MVBenchMetric: {len(missing)} samples have no option '
                                   f'scores while others do: {listing(missing)}')
        use_ranking = bool(valid) and all(ranked) and self.likelihood is not False
        if self.likelihood and not use_ranking:
            raise MetricInputError('MVBenchMetric: likelihood=True but the samples have no '
                                   'option scores (build the dataset with rank_options=True)')
        hits = defaultdict(list)  # (kind, task) -> 0/1 per question
        for r in records:
            task = r['category']
            right = not is_invalid(r) and check_answer(
                reference_answer(r['pred'], self.return_prompt), r['gt'])
            hits['', task].append(right)
            if use_ranking:
                hits['likelihood/', task].append(
                    self._option_pick(r) == _gt_index(r['gt'], r['id']))
        metrics = {}
        for kind in ('', 'likelihood/') if use_ranking else ('', ):
            tasks = sorted(t for k, t in hits if k == kind)
            for task in tasks:
                metrics[f'{kind}{task}'] = percent(sum(hits[kind, task]), len(hits[kind, task]))
            metrics[f'{kind}mean'] = float(np.mean([metrics[f'{kind}{t}'] for t in tasks]))
            total = [h for t in tasks for h in hits[kind, t]]
            metrics[f'{kind}overall'] = percent(sum(total), len(total))
        return metrics


_TEXT_KEYS = ('text', 'pred', 'pred_answer', 'answer', 'prediction')


def read_mvbench_predictions(path: str) -> Dict[str, dict]:
    """``{question_id: {"pred", "scores", "label", "invalid", "task"}}`` of a prediction file.

    Formats: ``tools/test.py --out`` (a JSON list of ``{"question_id", "text",
    "pred_scores"?, "invalid_sample"?}``), or JSON lines ``{"question_id", "task"?, "pred"
    (or "text"), "pred_scores"? or "pred_label"?}``; ``question_id`` is
    ``"{task}/{index in the task's json}"``, and ``task``, when given, must agree with it.
    """
    data = read_json_or_lines(path)
    if isinstance(data, dict):  # a wrapped list, or a file of one JSON line
        data = data.get('predictions', data.get('results', [data]))
    if not isinstance(data, list):
        raise AnnotationError(f'{path}: predictions must be a JSON list or JSON lines')
    preds = {}
    for n, row in enumerate(data, 1):
        qid = row.get('question_id') if isinstance(row, dict) else None
        text = next((row[k] for k in _TEXT_KEYS if k in row), None) if qid else None
        if qid is None or (text is not None and not isinstance(text, str)):
            raise AnnotationError(f'{path}: prediction #{n} needs "question_id" and a text in '
                                  f'one of {_TEXT_KEYS}: {row!r:.120}')
        qid = str(qid)
        if row.get('task') is not None and qid.split('/')[0] != row['task']:
            raise AnnotationError(f'{path}: prediction #{n}: task {row["task"]!r} but '
                                  f'question_id {qid!r} (expected "{{task}}/{{index}}")')
        if qid in preds:
            raise AnnotationError(f'{path}: question {qid!r} is predicted more than once')
        preds[qid] = dict(pred=text, scores=row.get('pred_scores'), label=row.get('pred_label'),
                          invalid=bool(row.get(INVALID_KEY)))
    return preds


def score_prediction_file(pred_file: str, ann_files: List[str], allow_missing: bool = False,
                          prefix: Optional[str] = None) -> Dict[str, float]:
    """Score an MVBench prediction file (:func:`read_mvbench_predictions`) against the
    release's task files (``--ann``: the MVBench root, its ``json/`` folder, or task files;
    every task file found is scored), with :class:`MVBenchMetric`'s rules and keys.

    Raises:
        AnnotationError: A malformed file, predictions of unknown questions, or questions
            without a prediction (unless ``allow_missing``: then they are wrong, counted in
            ``{prefix}/num_missing`` and, having no answer, in ``num_invalid``).
    """
    from mmllava.datasets.mvbench import read_mvbench
    anns = read_mvbench(ann_files)
    preds = read_mvbench_predictions(pred_file)
    unknown = [q for q in preds if q not in anns]
    if unknown:
        raise AnnotationError(f'{pred_file}: {len(unknown)} predictions for questions the task '
                              f'files ({", ".join(ann_files)}) do not have: {listing(unknown)}')
    missing = [q for q in anns if q not in preds]
    if missing and not allow_missing:
        raise AnnotationError(
            f'{pred_file}: {len(missing)} of {len(anns)} questions have no prediction: '
            f'{listing(missing)}. Finish the run, give only the task files it covers as --ann, '
            'or pass --allow-missing to score them as wrong.')
    records = []
    for qid, ann in anns.items():
        pred = preds.get(qid, dict(invalid=True))
        record = dict(id=qid, pred=pred.get('pred'), gt=ann['gt'], category=ann['task'],
                      choices=ann['choices'], invalid=pred['invalid'])
        if pred.get('scores') is not None:
            record['scores'] = pred['scores']
        elif pred.get('label') is not None:
            record['label'] = pred['label']
        records.append(record)
    metric = MVBenchMetric(prefix=prefix)
    values = metric.compute_metrics(records)
    values['num_missing'] = len(missing)
    return {f'{metric.prefix}/{k}': v for k, v in values.items()}
