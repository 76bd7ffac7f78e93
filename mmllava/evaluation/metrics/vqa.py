"""VQA accuracy as the official VQAv2 evaluation computes it, and a test-dev submission writer.

Scoring follows the current ``vqaEval.py`` (GT-Vision-Lab/VQA, since its 2021 commit "Fixed
processing answers bug", a013f00): answers with ``\\n``/``\\t`` made spaces and stripped; when
the human answers disagree, both the human answers and the prediction go through
``processPunctuation`` and then ``processDigitArticle`` (number words, articles, contractions;
the earlier script processed only punctuation in the human answers); a prediction then scores
``min(1, matches / 3)`` against each leave-one-out set of 9 of the 10 human answers, averaged.

Predictions are first normalized as LLaVA writes its submissions (``EvalAIAnswerProcessor`` of
its ``convert_vqav2_for_submission.py``: lower case, ``,``/``?`` dropped, then the same
punctuation, digit and article rules), so that the numbers match the ones the authors got from
the evaluation server: "Two" scores as "2", "a dog." as "dog", "dont" as "don't".
"""
import json
import os
import os.path as osp
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmllava.registry import METRICS
from mmllava.utils.compat import vqa_text_rules

from .base import ID_KEYS, PRED_KEYS, GenerationMetric, first_key, is_invalid, percent

# The official tables and rules (punctuation list, number words, articles, contractions), as
# mmpretrain carries them verbatim from vqaEval.py.
_process_punctuation, _process_digit_article = vqa_text_rules()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``."""
    return _process_punctuation(text)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle`` (lower case, number words, articles, contractions)."""
    return _process_digit_article(text)


def normalize_vqa_answer(text: str) -> str:
    """EvalAI's answer processing (LLaVA's submission converter): the full normalization."""
    text = text.lower().replace(',', '').replace('?', '').replace("'s", " 's").strip()
    text = text.replace('\n', ' ').replace('\t', ' ').strip()
    return process_digit_article(process_punctuation(text))


def _clean(text: str) -> str:
    return text.replace('\n', ' ').replace('\t', ' ').strip()


def vqa_accuracy(pred: str, gt_answers: Sequence[str], normalize_pred: bool = True,
                 normalize_gt: str = 'official') -> float:
    """The accuracy (0 to 1) of one prediction against the human answers.

    Args:
        pred (str): The generated answer.
        gt_answers (Sequence[str]): The human answers (10 in VQAv2 and TextVQA).
        normalize_pred (bool): Apply :func:`normalize_vqa_answer` first (as LLaVA's
            submissions do); ``False`` gives the bare official script.
        normalize_gt (str): ``'official'``: vqaEval.py's rule (punctuation, then digits and
            articles, processed in answers and prediction only when the answers disagree);
            ``'full'``: every answer through :func:`normalize_vqa_answer` (the TextVQA
            evaluator of LLaVA / m4c).
    """
    res = _clean(normalize_vqa_answer(pred) if normalize_pred else pred)
    gts = [_clean(a) for a in gt_answers]
    if normalize_gt == 'full':
        gts = [normalize_vqa_answer(a) for a in gts]
    elif normalize_gt != 'official':
        raise ValueError(f"normalize_gt must be 'official' or 'full', got {normalize_gt!r}")
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        res = process_digit_article(process_punctuation(res))
    # Leave each human answer out in turn; the official script compares answer records, so one
    # occurrence is removed even when several humans gave the same text.
    accs = []
    for i in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == res)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def _type_key(answer_type: str) -> str:
    return 'acc_' + re.sub(r'[^0-9a-zA-Z]+', '_', str(answer_type)).strip('_')


@METRICS.register_module()
class VQAAccuracy(GenerationMetric):
    """VQAv2 / TextVQA / VizWiz-style accuracy over 10 human answers.

    Records: ``pred`` (``pred_answer``), ``gt`` (``gt_answer``: the human answers) and, when the
    data carry it, ``answer_type`` (VQAv2's ``yes/no``, ``number``, ``other``).

    Keys (percent): ``{prefix}/acc``; ``{prefix}/acc_{type}`` per answer type
    (``acc_yes_no``, ``acc_number``, ``acc_other``); ``num_samples``, ``num_empty``,
    ``num_invalid``. An invalid sample (unreadable image) scores 0.

    Args:
        normalize_pred (bool): See :func:`vqa_accuracy`.
        normalize_gt (str): See :func:`vqa_accuracy`.
        **kwargs: :class:`~mmllava.evaluation.metrics.base.GenerationMetric` arguments.
    """
    default_prefix = 'vqa'
    gt_key = 'gt_answer'
    extra_keys = ('answer_type', )

    def __init__(self, normalize_pred: bool = True, normalize_gt: str = 'official', **kwargs):
        super().__init__(**kwargs)
        self.normalize_pred = normalize_pred
        self.normalize_gt = normalize_gt

    def score(self, records: List[dict]) -> Dict[str, float]:
        total, by_type = 0.0, defaultdict(list)
        for r in records:
            gt = r['gt']
            if isinstance(gt, str) or not gt:
                raise ValueError(f'VQAAccuracy: the ground truth of {r["id"]!r} must be a '
                                 f'non-empty list of answers, got {gt!r:.80}')
            acc = 0.0 if is_invalid(r) else vqa_accuracy(r['pred'], gt, self.normalize_pred,
                                                          self.normalize_gt)
            total += acc
            if r.get('answer_type') is not None:
                by_type[r['answer_type']].append(acc)
        metrics = {'acc': percent(total, len(records))}
        for answer_type, accs in sorted(by_type.items()):
            metrics[_type_key(answer_type)] = percent(sum(accs), len(accs))
        return metrics


@METRICS.register_module()
class VQASubmissionWriter(BaseMetric):
    """Write a VQAv2 test-dev / test submission: ``[{"question_id": int, "answer": str}]``.

    Answers are normalized as LLaVA's ``convert_vqav2_for_submission.py`` does. The server
    expects an answer for every question of the *test* split (test-dev is a subset): give
    ``all_question_file`` (``v2_OpenEnded_mscoco_test2015_questions.json``) and the questions
    not predicted get ``""``, as in LLaVA's converter.

    Args:
        file_path (str): The JSON to write.
        all_question_file (str, optional): See above.
        collect_device (str): As in mmengine.
        prefix (str, optional): As in mmengine (nothing is scored).
    """
    default_prefix = 'vqa_submission'

    def __init__(self, file_path: str, all_question_file: Optional[str] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not file_path.endswith('.json'):
            raise ValueError(f'The submission file must be a .json, got {file_path!r}')
        self.file_path = file_path
        self.all_question_file = all_question_file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            self.results.append(dict(question_id=first_key(sample, ID_KEYS),
                                     text=first_key(sample, PRED_KEYS, '')))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        write_vqa_submission(results, self.file_path, self.all_question_file)
        MMLogger.get_current_instance().info(
            f'VQA submission of {len(results)} answers written to {self.file_path}')
        return {}


def write_vqa_submission(predictions: Sequence[dict], file_path: str,
                         all_question_file: Optional[str] = None) -> List[dict]:
    """Write ``[{"question_id", "answer"}]`` from ``[{"question_id", "text"}]``.

    Raises:
        ValueError: A question id predicted twice, or (with ``all_question_file``) a
            prediction for a question the test split does not have.
    """
    answers = {}
    for p in predictions:
        qid = p['question_id']
        if qid in answers:
            raise ValueError(f'Question {qid!r} is predicted more than once')
        answers[qid] = normalize_vqa_answer(p.get('text') or '')
    if all_question_file:
        with open(all_question_file) as f:
            all_ids = [q['question_id'] for q in json.load(f)['questions']]
        unknown = set(answers) - set(all_ids)
        if unknown:
            raise ValueError(f'{len(unknown)} predicted question ids are not in '
                             f'{all_question_file}: {sorted(unknown)[:10]}')
        answers = {qid: answers.get(qid, '') for qid in all_ids}
    rows = [dict(question_id=qid, answer=a) for qid, a in answers.items()]
    os.makedirs(osp.dirname(osp.abspath(file_path)), exist_ok=True)
    with open(file_path, 'w') as f:
        json.dump(rows, f)
    return rows
