"""LLaVA-Bench (in-the-wild): the GPT-assisted review and its relative score.

A port of the rules and arithmetic of haotian-liu/LLaVA's ``llava/eval/eval_gpt_review_bench.py``
(the review) and ``llava/eval/summarize_gpt_review.py`` (the summary), run by
``scripts/v1_5/eval/llavabench.sh``, with the judge behind any OpenAI-compatible endpoint
(:class:`~mmllava.evaluation.judge.OpenAIJudge`; the original asks ``gpt-4-0314``).

The review of one question sends the judge the system message :data:`SYSTEM_MESSAGE` and the
user message built by :func:`review_content` (the image's caption(s), the question, the
reference answer as Assistant 1, the model's answer as Assistant 2 and the category's rule of
:mod:`mmllava.evaluation.llava_bench_rules`), at temperature 0.2 with up to 1024 tokens. The
first line of the judge's answer holds the two scores (:func:`parse_score`; an unreadable one
is ``[-1, -1]``, as in the original, counted in ``num_unparsed``).

The review file (JSON lines, one review per question, the original's format)::

    {"id": 1, "question_id": 0, "answer1_id": ..., "answer2_id": ..., "category":
     "llava_bench_conv", "content": "<the judge's text>", "tuple": [8.0, 7.0], "judge_model": ...}

Summary (:func:`summarize_reviews`), for ``all`` and each category, as
``summarize_gpt_review.py``: the means of the two scores over the reviews (unparsed ones,
``[-1, -1]``, included as the original includes them), each rounded to 3 decimals; keys
(``llava_bench/`` prefix):

* ``all``, ``conv``, ``detail``, ``complex``: the relative score, ``round(model mean /
  reference mean * 100, 1)``: the number LLaVA reports.
* ``{all,conv,detail,complex}/gpt4_score`` and ``.../model_score``: each mean x 10, rounded to
  1 decimal (the reference's and the model's score out of 100, as the script prints them
  beside the relative score).
* ``num_reviews``, ``num_unparsed`` (reviews scored ``[-1, -1]``), ``num_missing`` (questions
  without a review: left out of the means, a review needs the judge).

Offline: :func:`score_prediction_file` summarizes a review file against the release folder
(``eval_predictions.py --metric llava_bench --pred reviews.jsonl --ann BENCH_DIR``); the
answers are reviewed by ``tools/analysis_tools/llava_bench_review.py``.
"""
import json
import os
import os.path as osp
import uuid
from typing import Dict, List, Optional

import numpy as np
from mmengine.logging import MMLogger

from mmllava.datasets.annotations import AnnotationError, read_json_or_lines
from mmllava.datasets.llava_bench import CATEGORIES, read_llava_bench
from mmllava.registry import METRICS

from ..llava_bench_rules import RULES
from .base import GenerationMetric, listing

SYSTEM_MESSAGE = 'You are a helpful and precise assistant for checking the quality of the answer.'
TEMPERATURE = 0.2  # eval_gpt_review_bench.py's
MAX_TOKENS = 1024  # its --max-tokens default
UNPARSED = [-1, -1]
REVIEW_HOWTO = ('python tools/analysis_tools/llava_bench_review.py --pred {answers} --ann '
                '{bench} --judge-url URL --judge-model NAME --out reviews.jsonl')


def load_rules(path: Optional[str] = None) -> Dict[str, dict]:
    """The review rules: LLaVA's (default), or a file in ``llava/eval/table/rule.json``'s
    format (``{"llava_bench_conv": {"role", "prompt"}, ...}``)."""
    if path is None:
        return RULES
    rules = read_json_or_lines(path)
    for cat in CATEGORIES:
        rule = rules.get(f'llava_bench_{cat}') if isinstance(rules, dict) else None
        if not (isinstance(rule, dict) and isinstance(rule.get('role'), str)
                and isinstance(rule.get('prompt'), str)):
            raise AnnotationError(f'{path}: needs "llava_bench_{cat}": {{"role", "prompt"}} '
                                  '(the format of LLaVA\'s llava/eval/table/rule.json)')
    return rules


def review_content(caption: str, question: str, reference: str, answer: str,
                   rule: dict) -> str:
    """The judge's user message, as ``eval_gpt_review_bench.py`` builds it."""
    role, prompt = rule['role'], rule['prompt']
    return (f'[Context]\n{caption}\n\n'
            f'[Question]\n{question}\n\n'
            f'[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n'
            f'[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n'
            f'[System]\n{prompt}\n\n')


def parse_score(review: str) -> List[float]:
    """The two scores of a review, as ``eval_gpt_review_bench.py``'s ``parse_score``.

    The first line, commas made spaces, split on single spaces: exactly two parts that are
    numbers give ``[reference, model]``; anything else (one number, three parts such as
    ``"8, 7"`` or ``"Scores: 8 7"``, words) gives ``[-1, -1]`` with a warning.
    """
    try:
        parts = review.split('\n')[0].replace(',', ' ').split(' ')
        if len(parts) == 2:
            return [float(parts[0]), float(parts[1])]
    except (AttributeError, ValueError):
        pass
    MMLogger.get_current_instance().warning(
        f'LLaVA-Bench: no "x y" scores on the first line of the review (scored [-1, -1]): '
        f'{review!r:.120}')
    return list(UNPARSED)


def read_answers(path: str) -> Dict[str, dict]:
    """``{str(question_id): {"text", "answer_id"}}`` from LLaVA's answers JSON lines
    (``model_vqa.py``'s ``{"question_id", "prompt", "text", "answer_id", "model_id"}``) or a
    ``tools/test.py --out`` JSON list (``{"question_id", "text"}``; a row marked
    ``invalid_sample`` is an empty answer)."""
    rows = read_json_or_lines(path)
    rows = [rows] if isinstance(rows, dict) else rows
    answers = {}
    for n, row in enumerate(rows if isinstance(rows, list) else [None], 1):
        text = row.get('text') if isinstance(row, dict) else None
        if not isinstance(row, dict) or row.get('question_id') is None or \
                not (text is None or isinstance(text, str)):
            raise AnnotationError(f'{path}: answer #{n} needs "question_id" and a "text": '
                                  f'{row!r:.120}')
        qid = str(row['question_id'])
        if qid in answers:
            raise AnnotationError(f'{path}: question {row["question_id"]!r} is answered twice')
        text = '' if row.get('invalid_sample') else (text or '')
        answers[qid] = dict(text=text, answer_id=row.get('answer_id', row['question_id']))
    return answers


def read_reviews(path: str) -> Dict[str, dict]:
    """``{str(question_id): review}`` of a review file (see the module doc)."""
    rows = read_json_or_lines(path) if osp.getsize(path) else []
    rows = [rows] if isinstance(rows, dict) else rows
    reviews = {}
    for n, row in enumerate(rows if isinstance(rows, list) else [None], 1):
        scores = row.get('tuple', row.get('score')) if isinstance(row, dict) else None
        if isinstance(row, dict) and scores is None and 'text' in row:
            raise AnnotationError(
                f'{path}: line {n} is an answer, not a review: review the answers first '
                f'({REVIEW_HOWTO.format(answers=path, bench="BENCH_DIR")})')
        ok = isinstance(scores, (list, tuple)) and len(scores) == 2 and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)
        if not ok or row.get('question_id') is None:
            raise AnnotationError(f'{path}: review #{n} needs "question_id" and "tuple" (two '
                                  f'scores): {row!r:.120}')
        qid = str(row['question_id'])
        if qid in reviews:
            raise AnnotationError(f'{path}: question {row["question_id"]!r} is reviewed twice')
        reviews[qid] = row
    return reviews


def summarize_reviews(reviews: List[dict]) -> Dict[str, float]:
    """The relative scores and means of reviews, as ``summarize_gpt_review.py`` (module doc).

    A review is ``{"category": "llava_bench_<cat>" (optional), "tuple": [ref, model]}``. A
    group whose reference mean is 0 has a NaN relative score (the original divides by it).
    """
    groups: Dict[str, list] = {}
    for review in reviews:
        scores = review.get('tuple', review.get('score'))
        if review.get('category'):
            groups.setdefault(review['category'].replace('llava_bench_', '', 1),
                              []).append(scores)
        groups.setdefault('all', []).append(scores)
    metrics = {}
    for name in ['all', *CATEGORIES, *sorted(set(groups) - {'all', *CATEGORIES})]:
        if name not in groups:
            continue
        # Python floats, as the original (.tolist()): numpy rounds 65.35 to 65.4, Python 65.3.
        ref, model = (round(x, 3)
                      for x in np.asarray(groups[name], dtype=float).mean(0).tolist())
        metrics[name] = round(model / ref * 100, 1) if ref else float('nan')
        metrics[f'{name}/gpt4_score'] = round(ref * 10, 1)
        metrics[f'{name}/model_score'] = round(model * 10, 1)
    metrics['num_reviews'] = len(reviews)
    metrics['num_unparsed'] = sum(list(r.get('tuple', r.get('score'))) == UNPARSED
                                  for r in reviews)
    return metrics


def _review_one(n: int, q: dict, answer: dict, judge, rules: Dict[str, dict],
                temperature: float, max_tokens: int) -> dict:
    """The review of question ``q`` (the ``n``-th answered, from 0)."""
    category = f'llava_bench_{q["category"]}'
    if category not in rules:
        raise AnnotationError(f'no review rule for category {category!r}')
    content = review_content(q['caption'], q['text'], q['reference'], answer['text'],
                             rules[category])
    text = judge.chat([dict(role='system', content=SYSTEM_MESSAGE),
                       dict(role='user', content=content)],
                      temperature=temperature, max_tokens=max_tokens)
    return dict(id=n + 1, question_id=q['question_id'], answer1_id=q['reference_id'],
                answer2_id=answer['answer_id'], category=category, content=text,
                tuple=parse_score(text), judge_model=judge.model)


def review_answers(bench: Dict[str, dict], answers: Dict[str, dict], judge, out_file: str,
                   rules: Optional[Dict[str, dict]] = None, temperature: float = TEMPERATURE,
                   max_tokens: int = MAX_TOKENS, allow_missing: bool = False,
                   resume: bool = True, progress: bool = True) -> List[dict]:
    """Review every answered question with ``judge``; append each review to ``out_file``.

    Args:
        bench (dict): :func:`~mmllava.datasets.llava_bench.read_llava_bench`'s records.
        answers (dict): :func:`read_answers`'s.
        judge: An :class:`~mmllava.evaluation.judge.OpenAIJudge` (any object with its
            ``chat(messages, temperature, max_tokens)`` and ``model``).
        out_file (str): The review file (JSON lines).
        rules (dict, optional): :func:`load_rules`'s (default LLaVA's).
        temperature (float): The judge's temperature (the original's 0.2).
        max_tokens (int): The judge's answer length (the original's 1024).
        allow_missing (bool): Leave the questions without an answer unreviewed (else raise).
        resume (bool): Keep the reviews ``out_file`` already has and ask only for the others
            (a run cut short goes on); False starts the file afresh.
        progress (bool): Show a progress bar (tqdm, on stderr).

    Returns:
        list: The reviews (kept and new) in the questions' order.

    Raises:
        AnnotationError: Answers to questions the benchmark does not have, questions without
            an answer (unless ``allow_missing``), a review file of other questions.
    """
    rules = rules or RULES
    unknown = [q for q in answers if q not in bench]
    if unknown:
        raise AnnotationError(f'{len(unknown)} answers to questions LLaVA-Bench does not have: '
                              f'{listing(unknown)}. Wrong answers file?')
    missing = [q for q in bench if q not in answers]
    if missing and not allow_missing:
        raise AnnotationError(f'{len(missing)} of {len(bench)} questions have no answer: '
                              f'{listing(missing)}. Finish the run, or allow missing answers.')
    done = read_reviews(out_file) if resume and osp.isfile(out_file) else {}
    stray = [q for q in done if q not in answers]
    if stray:
        raise AnnotationError(f'{out_file}: reviews of questions not answered here: '
                              f'{listing(stray)}. Another run\'s file? Start it afresh.')
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    todo = [q for q in bench if q in answers and q not in done]
    bar = None
    if progress and todo:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), desc='LLaVA-Bench review', unit='question')
        except ImportError:
            bar = None
    reviews = []
    try:
        with open(out_file, 'a' if done else 'w', encoding='utf-8') as f:
            for n, qid in enumerate(q for q in bench if q in answers):
                if qid in done:
                    reviews.append(done[qid])
                    continue
                reviews.append(_review_one(n, bench[qid], answers[qid], judge, rules,
                                           temperature, max_tokens))
                f.write(json.dumps(reviews[-1]) + '\n')
                f.flush()
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return reviews


def _bench_dir(ann_files: List[str]) -> str:
    if len(ann_files) != 1:
        raise ValueError(f'--metric llava_bench takes one --ann (the release folder), got '
                         f'{len(ann_files)}')
    path = str(ann_files[0])
    return path if osp.isdir(path) else osp.dirname(path)


def score_prediction_file(pred_file: str, ann_files: List[str], allow_missing: bool = False,
                          prefix: Optional[str] = None) -> Dict[str, float]:
    """Summarize a review file (``pred_file``) against the release folder (``ann_files``: the
    folder, or its ``questions.jsonl``); see the module doc for the keys.

    Raises:
        AnnotationError: A malformed file, an answers file (not reviewed yet), reviews of
            questions the benchmark does not have or of another category, questions without
            a review (unless ``allow_missing``: then left out and counted in ``num_missing``).
    """
    bench = read_llava_bench(_bench_dir(ann_files))
    reviews = read_reviews(pred_file)
    unknown = [q for q in reviews if q not in bench]
    if unknown:
        raise AnnotationError(f'{pred_file}: {len(unknown)} reviews of questions the benchmark '
                              f'({ann_files[0]}) does not have: {listing(unknown)}')
    for qid, review in reviews.items():
        want = f'llava_bench_{bench[qid]["category"]}'
        if review.get('category', want) != want:
            raise AnnotationError(f'{pred_file}: question {qid!r} is reviewed as '
                                  f'{review["category"]!r}; the benchmark says {want!r}')
    missing = [q for q in bench if q not in reviews]
    if missing and not allow_missing:
        raise AnnotationError(f'{pred_file}: {len(missing)} of {len(bench)} questions have no '
                              f'review: {listing(missing)}. Finish the review, or pass '
                              '--allow-missing to leave them out.')
    if not reviews:
        raise AnnotationError(f'{pred_file}: no reviews')
    metrics = summarize_reviews([reviews[q] for q in bench if q in reviews])
    metrics['num_missing'] = len(missing)
    return {f'{prefix or "llava_bench"}/{k}': v for k, v in metrics.items()}


@METRICS.register_module()
class LLaVABenchMetric(GenerationMetric):
    """Write LLaVA's answers file and, given a judge, review it (see the module doc).

    Records: ``pred`` (the answer), ``gt`` (the reference), ``category``, ``question``. The
    answers file has ``model_vqa.py``'s lines ``{"question_id", "prompt", "text",
    "answer_id", "model_id", "metadata"}``. Without ``judge_url`` only the counts are
    reported (``num_samples``, ``num_empty``, ``num_invalid``) and the log says how to review
    the file; with it the answers are reviewed into ``reviews_file`` (afresh) and the summary
    keys are reported. An invalid sample (unreadable image) is reviewed as an empty answer.

    Args:
        bench_dir (str): The release folder (the dataset's ``data_root``).
        answers_file (str): The answers JSON lines to write.
        model_id (str): The answers' ``model_id``.
        judge_url (str, optional): The judge's OpenAI-compatible API base URL.
        judge_model (str): The judge's model name.
        api_key (str, optional): The judge's key (default ``$OPENAI_API_KEY``).
        reviews_file (str, optional): Default: ``answers_file`` with ``_reviews.jsonl``.
        rules_file (str, optional): A ``rule.json`` (default LLaVA's rules).
        temperature (float): The judge's temperature.
        max_tokens (int): The judge's answer length.
        timeout (float): Seconds per judge request.
        retries (int): Retries of a failed judge request.
        collect_device (str): As in mmengine.
        prefix (str, optional): Key prefix, default ``llava_bench``.
    """
    default_prefix = 'llava_bench'
    extra_keys = ('category', 'question')

    def __init__(self, bench_dir: str, answers_file: str, model_id: str = 'mmllava',
                 judge_url: Optional[str] = None, judge_model: str = 'gpt-4-0314',
                 api_key: Optional[str] = None, reviews_file: Optional[str] = None,
                 rules_file: Optional[str] = None, temperature: float = TEMPERATURE,
                 max_tokens: int = MAX_TOKENS, timeout: float = 120.0, retries: int = 5,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.bench_dir, self.answers_file, self.model_id = bench_dir, answers_file, model_id
        self.judge_url, self.judge_model, self.api_key = judge_url, judge_model, api_key
        self.reviews_file = reviews_file or osp.splitext(answers_file)[0] + '_reviews.jsonl'
        self.rules = load_rules(rules_file)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.timeout, self.retries = timeout, retries

    def score(self, records: List[dict]) -> Dict[str, float]:
        os.makedirs(osp.dirname(osp.abspath(self.answers_file)), exist_ok=True)
        with open(self.answers_file, 'w', encoding='utf-8') as f:
            for r in records:
                f.write(json.dumps(dict(question_id=r['id'], prompt=r.get('question'),
                                        text=r['pred'], answer_id=uuid.uuid4().hex,
                                        model_id=self.model_id, metadata={})) + '\n')
        logger = MMLogger.get_current_instance()
        logger.info(f'LLaVA-Bench: {len(records)} answers written to {self.answers_file}')
        if not self.judge_url:
            logger.info('LLaVA-Bench: no judge_url, so no review; review the answers with: ' +
                        REVIEW_HOWTO.format(answers=self.answers_file, bench=self.bench_dir))
            return {}
        from ..judge import OpenAIJudge
        judge = OpenAIJudge(self.judge_url, self.judge_model, self.api_key,
                            timeout=self.timeout, retries=self.retries)
        bench = read_llava_bench(self.bench_dir)
        reviews = review_answers(bench, read_answers(self.answers_file), judge,
                                 self.reviews_file, self.rules, self.temperature,
                                 self.max_tokens, allow_missing=True, resume=False,
                                 progress=False)
        logger.info(f'LLaVA-Bench: {len(reviews)} reviews written to {self.reviews_file}')
        metrics = summarize_reviews(reviews)
        metrics['num_missing'] = len(bench) - len(reviews)  # a subset of the questions was run
        return metrics
