"""MMBench: circular accuracy of generated option letters, offline scoring, the submission file.

A question counts as right only when every rotation of its options is answered right
(MMBench's CircularEval, see :mod:`mmllava.datasets.mmbench`); ``overall`` is the percentage
of questions right, and each ``category`` its own. The samples are grouped by
``index % 1e6``, as the official scorer groups the released TSV's copies; a question's
category is its rotation-0 row's.

An answer is mapped to a letter by the official exact matching (:func:`mmbench_match`, the
rules VLMEvalKit's evaluation applies before asking its ChatGPT judge; the answers those rules
cannot map, which a one-letter prompt seldom gets, are wrong here and counted in
``num_no_option``), or with ``matching='llava'`` by LLaVA's letter rules
(:func:`~mmllava.evaluation.metrics.multiple_choice.parse_option_letter`).
"""
import logging
import os
import os.path as osp
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log

from mmllava.datasets.annotations import AnnotationError, read_json_or_lines
from mmllava.datasets.mmbench import (
    CIRCULAR_OFFSET,
    expand_questions,
    has_circular_copies,
    read_mmbench_tsv,
    sample_id,
)
from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, is_invalid, listing, percent
from .multiple_choice import OPTION_LETTERS, parse_option_letter

# VLMEvalKit's can_infer_option: answers that refuse are 'Z' (never right).
_REJECTIONS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
               "I'm sorry, but without the image provided", 'Cannot determine the answer')
_PUNCTUATION = '.()[],:;!*#{}'
MATCHINGS = ('mmbench', 'llava')


def _infer_option(answer: str, choices: Dict[str, str]) -> Optional[str]:
    if 'Failed to obtain answer via API' in answer:
        return None
    if any(text in answer for text in _REJECTIONS):
        return 'Z'
    for char in _PUNCTUATION:
        answer = answer.replace(char, ' ')
    words = answer.split()
    named = [letter for letter in choices if letter in words]
    if len(named) == 1:
        return named[0]
    if not named and 'Z' in words:
        return 'Z'
    return None


def _infer_text(answer: str, choices: Dict[str, str]) -> Optional[str]:
    answer = answer.lower()
    found = [letter for letter, text in choices.items() if str(text).lower() in answer]
    return found[0] if len(found) == 1 else None


def mmbench_match(answer: str, choices: Dict[str, str]) -> Optional[str]:
    """The letter MMBench's exact matching reads in ``answer``, ``'Z'`` (no option), or None.

    VLMEvalKit's ``can_infer`` (``vlmeval/utils/matching_util.py`` as of 2024-03, commit
    c6bdffd3): punctuation ``.()[],:;!*#{}`` becomes spaces and the words are compared with
    the option letters; exactly one letter among the words is the answer, none but a ``Z``
    is ``'Z'``. Otherwise the option whose text (lower case) the answer contains, when
    exactly one does. Refusals are ``'Z'``. None: the rules find nothing (the official
    pipeline would ask its ChatGPT judge).

    Args:
        answer (str): The generation.
        choices (dict): ``{letter: option text}`` as asked.
    """
    answer = str(answer)
    return _infer_option(answer, choices) or _infer_text(answer, choices)


def parse_question_id(qid) -> Tuple[int, int]:
    """``(index, rotation)`` of a sample id (:func:`~mmllava.datasets.mmbench.sample_id`).

    Raises:
        ValueError: not ``"{index}"`` or ``"{index}_r{rotation}"``.
    """
    if isinstance(qid, int) and not isinstance(qid, bool):
        return qid, 0
    match = re.fullmatch(r'\s*(-?\d+)(?:_r(\d+))?\s*', str(qid))
    if not match:
        raise ValueError(f'an MMBench question id is "{{index}}" or "{{index}}_r{{rotation}}", '
                         f'got {qid!r}')
    return int(match.group(1)), int(match.group(2) or 0)


@METRICS.register_module()
class MMBenchMetric(GenerationMetric):
    """MMBench circular accuracy, overall and per category (percent).

    Records: ``id`` (the sample id, ``"{index}"`` or ``"{index}_r{rotation}"``), ``pred``,
    ``gt`` (``gt_answer``, the right letter as asked), ``choices`` (the options as asked) and
    ``category``. An invalid sample (unreadable image) is wrong, and so is its question.

    Keys (no prefix unless given): ``overall`` (circular), one per category (its name as
    the TSV spells it), ``overall_vanilla`` (rotation 0 of each question alone, the number
    without CircularEval), ``num_questions``, ``num_no_option`` (answers the matching maps to
    no option), ``num_samples``, ``num_empty``, ``num_invalid``.

    Args:
        matching (str): ``'mmbench'`` (the official exact matching, :func:`mmbench_match`)
            or ``'llava'`` (:func:`~mmllava.evaluation.metrics.parse_option_letter`).
        collect_device (str): As in mmengine.
        prefix (str, optional): Key prefix; none by default.
    """
    default_prefix = ''  # bare keys (and no mmengine warning about a missing prefix)
    gt_key = 'gt_answer'
    extra_keys = ('choices', 'category')

    def __init__(self, matching: str = 'mmbench', collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        if matching not in MATCHINGS:
            raise ValueError(f'MMBenchMetric: matching must be one of {MATCHINGS}, '
                             f'got {matching!r}')
        self.matching = matching
        super().__init__(collect_device=collect_device, prefix=prefix)

    def letter(self, record: dict) -> Optional[str]:
        """The option letter a record's answer names (``'Z'`` or None: none)."""
        choices = record.get('choices')
        if not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) < 2:
            raise MetricInputError(f'MMBenchMetric: {record["id"]!r} has no "choices" (the '
                                   'option texts as asked)')
        if self.matching == 'llava':
            return parse_option_letter(record['pred'], len(choices))
        return mmbench_match(record['pred'], dict(zip(OPTION_LETTERS, choices)))

    def score(self, records: List[dict]) -> Dict[str, float]:
        groups: Dict[int, List[bool]] = defaultdict(list)
        category: Dict[int, Optional[str]] = {}
        vanilla, no_option = [], []
        for r in records:
            try:
                index, rotation = parse_question_id(r['id'])
            except ValueError as e:
                raise MetricInputError(f'MMBenchMetric: {e}') from None
            letter = None if is_invalid(r) else self.letter(r)
            if letter is None or letter == 'Z':
                no_option.append(r['id'])
            hit = letter is not None and letter == str(r['gt']).strip()
            group = index % CIRCULAR_OFFSET
            groups[group].append(hit)
            main = index == group and rotation == 0
            if main:
                vanilla.append(hit)
            if main or group not in category:  # the rotation-0 row's category wins
                category[group] = r.get('category')
        if no_option:
            print_log(f'MMBenchMetric: no option matched in {len(no_option)} answers (scored '
                      f'as wrong): {listing(no_option)}', logger='current')
        right = {g: all(hits) for g, hits in groups.items()}
        metrics = {'overall': percent(sum(right.values()), len(right))}
        by_category = defaultdict(list)
        for g, ok in right.items():
            if category[g] is not None:
                by_category[category[g]].append(ok)
        for name in sorted(by_category):
            metrics[name] = percent(sum(by_category[name]), len(by_category[name]))
        metrics.update(overall_vanilla=percent(sum(vanilla), len(vanilla)),
                       num_questions=len(right), num_no_option=len(no_option))
        return metrics


# ------------------------------------------------------------------ prediction files
INDEX_KEYS = ('index', 'question_id')
ROTATION_KEYS = ('rotation', 'round_id')  # ours; LLaVA's model_vqa_mmbench.py --all-rounds
TEXT_KEYS = ('prediction', 'text', 'pred_answer')


def _tsv_of(ann_files: Sequence[str]) -> str:
    if len(ann_files) != 1:
        raise ValueError(f'--metric mmbench takes one annotation file (the TSV), got '
                         f'{len(ann_files)}')
    path = ann_files[0]
    if osp.isdir(path):
        tsvs = sorted(f for f in os.listdir(path) if f.endswith('.tsv'))
        if len(tsvs) != 1:
            raise AnnotationError(f'{path}: a folder given as --ann must hold exactly one '
                                  f'.tsv (found {tsvs or "none"}); name the TSV')
        path = osp.join(path, tsvs[0])
    if not osp.isfile(path):
        raise FileNotFoundError(f'MMBench TSV not found: {path!r}')
    return path


def read_mmbench_predictions(path: str) -> Dict[Tuple[int, int], dict]:
    """``{(index, rotation): {"text", "invalid"}}`` from a prediction file.

    Lines ``{"index", "prediction"}`` (JSON lines or a JSON list), a rotation as extra lines
    with the same ``index`` and ``"rotation": r`` (none: 0); also ``tools/test.py --out``
    (``question_id`` ``"{index}"`` / ``"{index}_r{rotation}"``, ``text``, ``invalid_sample``)
    and LLaVA's answers file (``question_id``, ``round_id``, ``text``).
    """
    data = read_json_or_lines(path)
    if isinstance(data, dict):
        data = data.get('predictions', data.get('results', [data]))
    if not isinstance(data, list):
        raise AnnotationError(f'{path}: predictions must be JSON lines or a JSON list')
    preds = {}
    for n, row in enumerate(data, 1):
        where = f'{path}: prediction #{n}'
        if not isinstance(row, dict):
            raise AnnotationError(f'{where} is not an object: {row!r:.80}')
        qid = next((row[k] for k in INDEX_KEYS if row.get(k) is not None), None)
        text = next((row[k] for k in TEXT_KEYS if k in row), None)
        if qid is None or (text is not None and not isinstance(text, str)):
            raise AnnotationError(f'{where} needs one of {INDEX_KEYS} and a text in one of '
                                  f'{TEXT_KEYS}: {row!r:.120}')
        try:
            index, rotation = parse_question_id(qid)
        except ValueError as e:
            raise AnnotationError(f'{where}: {e}') from None
        extra = next((row[k] for k in ROTATION_KEYS if row.get(k) is not None), None)
        if extra is not None:
            if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0 or (
                    rotation and extra != rotation):
                raise AnnotationError(f'{where}: "rotation" must be an integer >= 0 (and agree '
                                      f'with the id {qid!r}), got {extra!r}')
            rotation = extra
        if (index, rotation) in preds:
            raise AnnotationError(f'{path}: question {index} rotation {rotation} is predicted '
                                  'more than once')
        preds[(index, rotation)] = dict(text=text, invalid=bool(row.get('invalid_sample')))
    return preds


def score_prediction_file(pred_file: str, ann_files: List[str], allow_missing: bool = False,
                          prefix: Optional[str] = None,
                          matching: str = 'mmbench') -> Dict[str, float]:
    """Score an MMBench prediction file against the TSV (:class:`MMBenchMetric`'s keys).

    Which samples the file must have follows from the TSV and the file, as the run makes them
    (:func:`~mmllava.datasets.mmbench.expand_questions`): a TSV with circular copies, every
    row (or only the rows under 1e6 when no copy is predicted: a ``circular=False`` run); a
    TSV without copies, every rotation of every row (or rotation 0 alone when no other is
    predicted). ``num_questions`` equal to ``num_samples`` means that no rotation was scored.

    Raises:
        AnnotationError: a malformed file; predictions the TSV does not have; samples without
            a prediction (unless ``allow_missing``: then wrong, counted in ``num_missing``).
    """
    tsv = _tsv_of(ann_files)
    rows = read_mmbench_tsv(tsv)
    preds = read_mmbench_predictions(pred_file)
    if has_circular_copies(rows):
        circular = any(index >= CIRCULAR_OFFSET for index, _ in preds)
    else:
        circular = any(rotation > 0 for _, rotation in preds)
    questions = expand_questions(rows, circular)
    if not circular:
        print_log(f'MMBench: {pred_file} has no rotated question: scored without CircularEval '
                  '(one answer per question)', logger='current', level=logging.WARNING)
    expected = {(q.index, q.rotation): q for q in questions}
    unknown = [sample_id(*k) for k in preds if k not in expected]
    if unknown:
        raise AnnotationError(f'{pred_file}: {len(unknown)} predictions for samples {tsv} does '
                              f'not have: {listing(unknown)}. Wrong TSV or split?')
    missing = [q.sample_id for k, q in expected.items() if k not in preds]
    if missing and not allow_missing:
        raise AnnotationError(f'{pred_file}: {len(missing)} of {len(expected)} samples have no '
                              f'prediction: {listing(missing)}. Finish the run, or pass '
                              '--allow-missing to score them as wrong.')
    records = []
    for key, q in expected.items():
        pred = preds.get(key, {})
        records.append(dict(id=q.sample_id, pred=pred.get('text'), gt=q.answer,
                            choices=q.options, category=q.row.category,
                            invalid=pred.get('invalid', False)))
    values = MMBenchMetric(matching=matching, prefix=prefix).compute_metrics(records)
    values['num_missing'] = len(missing)
    return {(f'{prefix}/{k}' if prefix else k): v for k, v in values.items()}


# ------------------------------------------------------------------ submission
# LLaVA's scripts/convert_mmbench_for_submission.py drops these and puts "prediction" 7th.
SUBMISSION_DROPPED = ('hint', 'category', 'source', 'image', 'comment', 'l2-category')
SUBMISSION_FORMATS = ('.xlsx', '.tsv', '.csv')


def write_mmbench_submission(pred_file: str, ann_file: str, out_file: str,
                             allow_missing: bool = False) -> int:
    """Write the file MMBench's evaluation server takes for a split (test, or dev).

    As LLaVA's ``scripts/convert_mmbench_for_submission.py``: the TSV's rows with the
    columns ``hint``, ``category``, ``source``, ``image``, ``comment``, ``l2-category``
    dropped and ``prediction`` (the raw generation) inserted 7th. Each row is predicted as
    written (the server does CircularEval with the TSV's own copies), so only rotation 0 is
    submitted. ``.xlsx`` (what LLaVA uploads) needs openpyxl; ``.tsv`` and ``.csv``, which the
    server takes too (VLMEvalKit's ``scripts/mmb_eval_gradio.py``), do not.

    Returns:
        int: The rows written.

    Raises:
        ImportError: ``.xlsx`` without openpyxl.
        AnnotationError: predictions for rows the TSV does not have; rows without a
            prediction (unless ``allow_missing``: then empty).
    """
    import pandas as pd
    ext = osp.splitext(out_file)[1].lower()
    if ext not in SUBMISSION_FORMATS:
        raise ValueError(f'the submission must be one of {SUBMISSION_FORMATS}, got {out_file!r}')
    if ext == '.xlsx':
        import importlib.util
        if importlib.util.find_spec('openpyxl') is None:
            raise ImportError('writing .xlsx needs openpyxl (pip install openpyxl); or write '
                              '--out FILE.tsv, which the MMBench server takes too')
    tsv = _tsv_of([ann_file])
    read_mmbench_tsv(tsv)  # checks the file
    preds = read_mmbench_predictions(pred_file)
    rotated = sum(1 for _, r in preds if r > 0)
    if rotated:
        print_log(f'MMBench submission: {rotated} predictions of rotations > 0 are left out '
                  '(the server rotates with the TSV\'s own copies)', logger='current',
                  level=logging.WARNING)
    texts = {index: p['text'] for (index, r), p in preds.items() if r == 0}
    df = pd.read_table(tsv)  # as LLaVA's script reads it
    indices = [int(i) for i in df['index']]
    unknown = sorted(set(texts) - set(indices))
    if unknown:
        raise AnnotationError(f'{pred_file}: {len(unknown)} predictions for rows {tsv} does '
                              f'not have: {listing(unknown)}. Wrong TSV or split?')
    missing = [i for i in indices if i not in texts]
    if missing and not allow_missing:
        raise AnnotationError(f'{pred_file}: {len(missing)} of {len(indices)} rows have no '
                              f'prediction: {listing(missing)}. Finish the run, or pass '
                              '--allow-missing to leave them empty.')
    out = df.drop(columns=[c for c in SUBMISSION_DROPPED if c in df.columns])
    out.insert(min(6, len(out.columns)), 'prediction',
               [texts.get(i) or '' for i in indices])
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    if ext == '.xlsx':
        out.to_excel(out_file, index=False, engine='openpyxl')
    else:
        out.to_csv(out_file, sep='\t' if ext == '.tsv' else ',', index=False)
    return len(out)
