"""Evaluation benchmarks read from their official annotation files: ScienceQA, POPE, GQA, TextVQA.

Each dataset gives test-mode samples (the question turn only) with the fields the metrics read:
``question_id``, ``gt_answer`` and, per benchmark, ``choices`` (ScienceQA) or ``category``
(POPE). The ground truth is read by :mod:`mmllava.datasets.annotations`, the readers that
score prediction files offline (:mod:`mmllava.evaluation.offline`) too, so a run and an offline
scoring agree on what is true. A malformed annotation file raises
:class:`~mmllava.datasets.annotations.AnnotationError` naming the file and the record; a
missing or unreadable image is scored as a miss (or raises with ``fail_on_invalid=True``;
with ``skip_invalid`` a missing one is left out and counted) as in
:class:`~mmllava.datasets.base.BaseLlavaDataset`.

Prompts are LLaVA-1.5's (``llava/eval/model_vqa_loader.py`` and ``model_vqa_science.py`` with
the released question files): ``"<image>\\n{question}\\n{instruction}"``.
"""
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

from mmllava.registry import DATASETS
from mmllava.structures import IMAGE_PLACEHOLDER

from .annotations import (
    AnnotationError,
    pope_split,
    read_gqa,
    read_json_or_lines,
    read_multiple_choice,
    read_pope,
    read_vqa,
)
from .base import MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError
from .vqav2 import SHORT_ANSWER_PROMPT

# LLaVA-1.5's multiple-choice instruction (model_vqa_science.py --single-pred-prompt).
MULTIPLE_CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
OPTION_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'


def _malformed(path: str, what: str):
    raise AnnotationError(f'{path}: {what}')


class _QuestionDataset(BaseLlavaDataset):
    """Shared part: one test sample per question, ``<image>`` first, an instruction last.

    Subclasses implement :meth:`read_questions`, returning records with ``id``,
    ``question_id``, ``prompt`` (the question text without ``<image>`` and instruction),
    ``path`` (the image path, or None for a text-only question) and ``gt_answer``, plus any
    extra fields listed in ``extra_fields``.
    """
    extra_fields: Sequence[str] = ()

    def __init__(self, ann_file: str, data_root: str = '', img_prefix: str = '',
                 prompt_suffix: str = SHORT_ANSWER_PROMPT,
                 pipeline: Sequence[Union[dict, Callable]] = (), test_mode: bool = True,
                 **kwargs):
        if not test_mode:
            # Benchmarks are for evaluation; their training data has other formats.
            raise ValueError(f'{type(self).__name__} is an evaluation dataset: test_mode must '
                             'be True')
        self.prompt_suffix = prompt_suffix
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         pipeline=pipeline, test_mode=True, **kwargs)

    def read_questions(self) -> List[dict]:
        """The records of the annotation file(s); see the class doc."""
        raise NotImplementedError

    def load_records(self):
        """Each question, its image checked (``check_images``)."""
        exists: Dict[str, bool] = {}
        for record in self.read_questions():
            path = record['path']
            record['modality_length'] = max(1, len(self.text(record).split()))
            if path is None:
                record['modality_length'] *= -1  # text-only, as LlavaInstructDataset
            if self.check_images and path is not None:
                if path not in exists:
                    exists[path] = osp.exists(path)
                if not exists[path]:
                    try:  # the record goes with the error: test mode scores it as a miss
                        self._invalid(record['id'], MISSING_IMAGE, 'image file not found', path,
                                      record=record)
                    except InvalidSampleError as e:
                        yield record['id'], e
                        continue
            yield record['id'], record

    def text(self, record: dict) -> str:
        """The user turn: ``<image>`` (when there is an image), the question, the suffix."""
        text = record['prompt']
        if record['path'] is not None:
            text = f'{IMAGE_PLACEHOLDER}\n{text}'
        return f'{text}\n{self.prompt_suffix}' if self.prompt_suffix else text

    def parse_record(self, record: dict) -> dict:
        """The test sample of a question."""
        info = dict(sample_id=record['id'], question_id=record['question_id'],
                    question=record['prompt'],
                    images=[] if record['path'] is None else [record['path']],
                    messages=[dict(role='user', content=self.text(record))],
                    gt_answer=record['gt_answer'])
        for key in self.extra_fields:
            if record.get(key) is not None:
                info[key] = record[key]
        return info


@DATASETS.register_module()
class ScienceQADataset(_QuestionDataset):
    """ScienceQA from the official ``problems.json`` and ``pid_splits.json``.

    The prompt is LLaVA-1.5's (``llava_test_CQM-A.json`` with ``--single-pred-prompt``)::

        <image>
        Context: {hint}            (only when the hint is not empty)
        {question}
        A. {choice 0}
        B. {choice 1}
        Answer with the option's letter from the given choices directly.

    ``image_only=True`` (the default) keeps the problems with an image: ScienceQA-IMG, the
    number LLaVA-1.5 reports (its script scores all test problems and reports the image subset
    apart). Images are ``{img_prefix}/{pid}/{image}`` (the official ``test/{pid}/image.png``).

    Samples hold ``question_id`` (the problem id, a str), ``images``, ``messages``,
    ``choices`` (the option texts), ``gt_answer`` (the correct letter) and ``category``
    (the subject: natural, social or language science).

    Args:
        ann_file (str): ``problems.json``, relative to ``data_root`` unless absolute.
        split_file (str): ``pid_splits.json``, relative to ``data_root`` unless absolute.
        split (str): The split in ``split_file`` (``test``, ``val``, ``minitest`` ...).
        image_only (bool): Keep only the problems with an image (ScienceQA-IMG).
        data_root (str): Root of the files and ``img_prefix``.
        img_prefix (str): The split's image folder, e.g. ``'images/test'``.
        prompt_suffix (str): The instruction after the options (``''`` for none).
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """
    extra_fields = ('choices', 'category')

    def __init__(self, ann_file: str, split_file: str, split: str = 'test',
                 image_only: bool = True, prompt_suffix: str = MULTIPLE_CHOICE_PROMPT,
                 **kwargs):
        self.split_file = split_file
        self.split = split
        self.image_only = image_only
        super().__init__(ann_file=ann_file, prompt_suffix=prompt_suffix, **kwargs)

    def _join_prefix(self):
        if self.split_file and not osp.isabs(self.split_file) and self.data_root:
            self.split_file = osp.join(self.data_root, self.split_file)
        super()._join_prefix()

    def read_questions(self) -> List[dict]:
        """The problems of the split (with an image when ``image_only``)."""
        answers, _ = read_multiple_choice(self.ann_file)  # checks answer and choices
        problems = self._read_json(self.ann_file)
        splits = self._read_json(self.split_file)
        if not isinstance(splits, dict) or not isinstance(splits.get(self.split), list):
            _malformed(self.split_file, f'no split {self.split!r} (a list of problem ids); '
                       f'splits: {sorted(splits) if isinstance(splits, dict) else splits!r:.80}')
        records = []
        for pid in splits[self.split]:
            pid = str(pid)
            problem = problems.get(pid)
            if problem is None:
                _malformed(self.ann_file, f'problem {pid!r} of split {self.split!r} '
                           f'({self.split_file}) is not in the file')
            image = problem.get('image')
            if image is None and self.image_only:
                continue
            question, choices = problem.get('question'), problem['choices']
            if not isinstance(question, str) or not all(isinstance(c, str) for c in choices):
                _malformed(self.ann_file, f'problem {pid!r}: "question" and "choices" must be '
                           'text')
            answer = answers[pid]['gt']
            if not isinstance(answer, int) or not 0 <= answer < len(choices):
                _malformed(self.ann_file, f'problem {pid!r}: "answer" must be the index of a '
                           f'choice (0 to {len(choices) - 1}), got {answer!r}')
            lines = []
            hint = (problem.get('hint') or '').strip()
            if hint:
                lines.append(f'Context: {hint}')
            lines.append(question)
            lines += [f'{OPTION_LETTERS[i]}. {c}' for i, c in enumerate(choices)]
            records.append(dict(
                id=pid, question_id=pid, prompt='\n'.join(lines), choices=list(choices),
                gt_answer=OPTION_LETTERS[answer], category=problem.get('subject'),
                path=None if image is None else self.image_path(osp.join(pid, image))))
        return records


@DATASETS.register_module()
class POPEDataset(_QuestionDataset):
    """POPE from its official JSON-lines files ``coco_pope_{random,popular,adversarial}.json``.

    Each line is ``{"question_id", "image", "text", "label"}``; the prompt is
    ``"<image>\\n{text}\\nAnswer the question using a single word or phrase."`` (LLaVA-1.5's
    ``llava_pope_test.jsonl``). ``category`` is the split, from the file name, so that
    :class:`~mmllava.evaluation.metrics.POPEMetric` reports each split and the mean F1.

    The official files number their questions from 1 each: with several files the sample's
    ``question_id`` is ``"{split}_{id}"`` so that ids stay unique in one run (score a
    predictions file offline against one official file at a time, or with the in-run metric).

    Samples hold ``question_id``, ``images``, ``messages``, ``gt_answer`` (``"yes"``/``"no"``)
    and ``category``.

    Args:
        ann_file (str | Sequence[str]): One or several split files, relative to ``data_root``
            unless absolute.
        data_root (str): Root of the files and ``img_prefix``.
        img_prefix (str): The COCO ``val2014`` folder.
        prompt_suffix (str): The instruction after the question (``''`` for none).
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """
    extra_fields = ('category', )

    def __init__(self, ann_file: Union[str, Sequence[str]], **kwargs):
        files = [ann_file] if isinstance(ann_file, str) else list(ann_file)
        if not files:
            raise ValueError('POPEDataset: ann_file names no file')
        self.ann_files = files
        super().__init__(ann_file=files[0], **kwargs)

    def _join_prefix(self):
        if self.data_root:
            self.ann_files = [f if osp.isabs(f) else osp.join(self.data_root, f)
                              for f in self.ann_files]
        super()._join_prefix()

    def read_questions(self) -> List[dict]:
        """The questions of every file, their split from the file name."""
        records = []
        for path in self.ann_files:
            if not osp.isfile(path):
                raise FileNotFoundError(f'POPEDataset: annotation file not found: {path!r}')
            labels, _ = read_pope([path])  # checks question_id, label, unique ids
            split = pope_split(path)
            for n, row in enumerate(read_json_or_lines(path), 1):
                if not isinstance(row.get('text'), str) or not isinstance(row.get('image'), str):
                    _malformed(path, f'line {n} (question {row["question_id"]!r}) needs '
                                     f'"text" and "image": {row!r:.120}')
                qid = row['question_id']
                uid = f'{split}_{qid}' if len(self.ann_files) > 1 else qid
                records.append(dict(
                    id=uid, question_id=uid, prompt=row['text'],
                    path=self.image_path(row['image']),
                    gt_answer=labels[str(qid)]['gt'], category=row.get('category') or split))
        return records


@DATASETS.register_module()
class GQADataset(_QuestionDataset):
    """GQA from the official ``testdev_balanced_questions.json``.

    The file maps question ids to ``{"imageId", "question", "answer", ...}``; the prompt is
    ``"<image>\\n{question}\\nAnswer the question using a single word or phrase."``
    (LLaVA-1.5's ``llava_gqa_testdev_balanced.jsonl``) and images are
    ``{img_prefix}/{imageId}.jpg``.

    Samples hold ``question_id`` (a str, as in the file), ``images``, ``messages`` and
    ``gt_answer`` (the one answer), for
    :class:`~mmllava.evaluation.metrics.ShortAnswerAccuracy` with GQA's normalization.

    Args:
        ann_file (str): The questions JSON, relative to ``data_root`` unless absolute.
        data_root (str): Root of the file and ``img_prefix``.
        img_prefix (str): The GQA ``images`` folder.
        img_name_format (str): An image's file name, formatted with ``image_id``.
        prompt_suffix (str): The instruction after the question (``''`` for none).
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """

    def __init__(self, ann_file: str, img_name_format: str = '{image_id}.jpg', **kwargs):
        self.img_name_format = img_name_format
        super().__init__(ann_file=ann_file, **kwargs)

    def read_questions(self) -> List[dict]:
        """One record per question of the file."""
        answers, _ = read_gqa(self.ann_file)  # checks the answers
        records = []
        for qid, q in self._read_json(self.ann_file).items():
            if not isinstance(q.get('question'), str) or not isinstance(q.get('imageId'), str):
                _malformed(self.ann_file, f'question {qid!r} needs "question" and "imageId": '
                                          f'{q!r:.120}')
            records.append(dict(
                id=qid, question_id=qid, prompt=q['question'], gt_answer=answers[qid]['gt'],
                path=self.image_path(self.img_name_format.format(image_id=q['imageId']))))
        return records


# The Rosetta OCR tokens of TextVQA's release, the ones LLaVA-1.5's TextVQA prompts carry.
TEXTVQA_OCR_FILE = 'TextVQA_Rosetta_OCR_v0.2_val.json'
TEXTVQA_OCR_URL = 'https://dl.fbaipublicfiles.com/textvqa/data/' + TEXTVQA_OCR_FILE


def textvqa_ocr_question(question: str, ocr_tokens: Sequence[str]) -> str:
    """A TextVQA question with its OCR tokens, as LLaVA-1.5 asks it (before the instruction).

    ``"{Question}\\nReference OCR token: {tok1}, {tok2}, ..."``: the question's first letter
    upper case and the rest lower case (``str.capitalize``; TextVQA's questions are lower
    case), the tokens as the OCR file gives them, in order, joined with ``", "``; an image
    without tokens keeps the line (``"Reference OCR token: "``).

    Format taken from the authors' question file ``playground/data/eval/textvqa/
    llava_textvqa_val_v051_ocr.jsonl`` (haotian-liu/LLaVA, read in full: all 5000 prompts are
    these three lines, 115 with an empty token list, none with an upper-case letter after the
    first). Its tokens are the Rosetta OCR of TextVQA's release, ``TextVQA_Rosetta_OCR_v0.2_*.json``
    (``{"data": [{"image_id", "ocr_tokens", "ocr_info"}]}``; the authors' answer in
    haotian-liu/LLaVA#976); ``TextVQA_0.5.1_val.json`` has questions and answers only.
    """
    return f'{question.capitalize()}\nReference OCR token: {", ".join(ocr_tokens)}'


@DATASETS.register_module()
class TextVQADataset(_QuestionDataset):
    """TextVQA from the official ``TextVQA_0.5.1_val.json`` and its Rosetta OCR tokens.

    The file is ``{"data": [{"question_id", "image_id", "question", "answers", ...}]}``;
    images are ``{img_prefix}/{image_id}.jpg`` (the ``train_images`` folder holds val too).

    The prompt is LLaVA-1.5's (``llava_textvqa_val_v051_ocr.jsonl``, the file behind its
    reported 58.2; see :func:`textvqa_ocr_question`)::

        <image>
        {Question}
        Reference OCR token: {tok1}, {tok2}, ...
        Answer the question using a single word or phrase.

    The tokens come from ``ocr_file`` (default :data:`TEXTVQA_OCR_FILE`, from
    :data:`TEXTVQA_OCR_URL`), matched by ``image_id``; with ``ocr_file=''`` from each record's
    own ``ocr_tokens`` (files that merge them in). ``with_ocr=False`` gives the prompt without
    OCR tokens, the question as the file has it:
    ``"<image>\\n{question}\\nAnswer the question using a single word or phrase."``.

    Samples hold ``question_id``, ``images``, ``messages`` and ``gt_answer`` (the 10 human
    answers) for :class:`~mmllava.evaluation.metrics.VQAAccuracy` with
    ``normalize_gt='full'`` (TextVQA's m4c evaluator).

    Args:
        ann_file (str): The TextVQA JSON, relative to ``data_root`` unless absolute.
        ocr_file (str): The OCR JSON (see above), relative to ``data_root`` unless absolute;
            ``''``: the records' ``ocr_tokens``.
        with_ocr (bool): Put the OCR tokens in the prompt (LLaVA-1.5's prompt).
        data_root (str): Root of the files and ``img_prefix``.
        img_prefix (str): The image folder.
        img_name_format (str): An image's file name, formatted with ``image_id``.
        prompt_suffix (str): The instruction after the question (``''`` for none).
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """

    def __init__(self, ann_file: str, ocr_file: str = TEXTVQA_OCR_FILE, with_ocr: bool = True,
                 img_name_format: str = '{image_id}.jpg', **kwargs):
        self.ocr_file = ocr_file if with_ocr else ''
        self.with_ocr = with_ocr
        self.img_name_format = img_name_format
        super().__init__(ann_file=ann_file, **kwargs)

    def _join_prefix(self):
        if self.ocr_file and not osp.isabs(self.ocr_file) and self.data_root:
            self.ocr_file = osp.join(self.data_root, self.ocr_file)
        super()._join_prefix()

    def _ocr_tokens(self) -> Optional[Dict[str, List[str]]]:
        if not self.ocr_file:
            return None
        if not osp.isfile(self.ocr_file):
            raise FileNotFoundError(
                f'TextVQADataset: OCR file not found: {self.ocr_file!r} (download '
                f'{TEXTVQA_OCR_URL}, or set with_ocr=False for the prompt without OCR tokens)')
        data = self._read_json(self.ocr_file)
        rows = data.get('data') if isinstance(data, dict) else None
        if not isinstance(rows, list):
            _malformed(self.ocr_file, 'an OCR file is {"data": [{"image_id", "ocr_tokens"}]}')
        tokens = {}
        for n, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get('ocr_tokens'), list):
                _malformed(self.ocr_file, f'record #{n} needs "image_id" and "ocr_tokens"')
            tokens[str(row.get('image_id'))] = [str(t) for t in row['ocr_tokens']]
        return tokens

    def read_questions(self) -> List[dict]:
        """One record per question of the file."""
        answers, _ = read_vqa(self.ann_file)  # checks question_id and answers
        data = self._read_json(self.ann_file)
        if 'data' not in data:
            _malformed(self.ann_file, 'a TextVQA file is {"data": [...]} (VQAv2 annotations '
                                      'go to VQAv2Dataset)')
        ocr = self._ocr_tokens()
        records = []
        for n, q in enumerate(data['data']):
            if not isinstance(q.get('question'), str) or q.get('image_id') is None:
                _malformed(self.ann_file, f'record #{n} (question {q["question_id"]!r}) needs '
                                          '"question" and "image_id"')
            prompt = q['question']
            if self.with_ocr:
                tokens = q.get('ocr_tokens') if ocr is None else ocr.get(str(q['image_id']))
                if tokens is None and ocr is not None:
                    _malformed(self.ocr_file, f'no OCR tokens for image {q["image_id"]!r} '
                                              f'(question {q["question_id"]!r} of {self.ann_file})')
                if not isinstance(tokens, list):
                    _malformed(self.ann_file, f'question {q["question_id"]!r} has no "ocr_tokens" '
                                              f'list: give ocr_file ({TEXTVQA_OCR_FILE}), or set '
                                              'with_ocr=False for the prompt without OCR tokens')
                prompt = textvqa_ocr_question(prompt, [str(t) for t in tokens])
            records.append(dict(
                id=q['question_id'], question_id=q['question_id'], prompt=prompt,
                gt_answer=list(answers[str(q['question_id'])]['gt']),
                path=self.image_path(self.img_name_format.format(image_id=q['image_id']))))
        return records
