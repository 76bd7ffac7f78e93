"""LLaVA-Bench (in-the-wild) read from its release, ``liuhaotian/llava-bench-in-the-wild``.

The release folder holds::

    questions.jsonl      {"question_id", "image", "text", "category": conv|detail|complex}
    context.jsonl        {"image", "caption"}        (what the judge sees of the image)
    answers_gpt4.jsonl   {"question_id", "text", ...} (the reference answers)
    images/              the images named by "image"

:func:`read_llava_bench` reads and checks the three files for the dataset, the review
(:mod:`mmllava.evaluation.metrics.llava_bench`) and the offline scoring alike.

The prompt is LLaVA's ``llava/eval/model_vqa.py`` run by ``scripts/v1_5/eval/llavabench.sh``
(haotian-liu/LLaVA): ``"<image>\\n{text}"``, the question as the file has it with no
instruction appended, in the ``vicuna_v1`` template, greedy (``--temperature 0``), up to 1024
new tokens.
"""
import os.path as osp
from typing import Dict, List

from mmllava.registry import DATASETS

from .annotations import AnnotationError, read_json_or_lines
from .benchmarks import _QuestionDataset

QUESTIONS_FILE = 'questions.jsonl'
CONTEXT_FILE = 'context.jsonl'
ANSWERS_FILE = 'answers_gpt4.jsonl'
CATEGORIES = ('conv', 'detail', 'complex')


def _rows(path: str, what: str) -> List[dict]:
    if not osp.isfile(path):
        raise AnnotationError(f'{path}: LLaVA-Bench {what} file not found')
    rows = read_json_or_lines(path)
    if isinstance(rows, dict):
        rows = [rows]  # a one-line JSON-lines file reads as one JSON document
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AnnotationError(f'{path}: expected JSON lines of objects ({what})')
    return rows


def caption_text(caption) -> str:
    """The judge's ``[Context]`` text of a ``context.jsonl`` caption.

    A list of captions is joined with newlines, as ``eval_gpt_review_bench.py`` does
    (``'\\n'.join(inst['caption'])``); a single string is used as it is (joining its
    characters would break every word; lmms-eval's port reads it the same way).
    """
    if isinstance(caption, str):
        return caption
    return '\n'.join(caption)


def read_llava_bench(bench_dir: str, questions: str = QUESTIONS_FILE,
                     context: str = CONTEXT_FILE,
                     answers: str = ANSWERS_FILE) -> Dict[str, dict]:
    """The questions of a LLaVA-Bench folder with their context and reference answer.

    Args:
        bench_dir (str): The release folder (the file names below are relative to it unless
            absolute).
        questions (str): The questions file.
        context (str): The captions file.
        answers (str): The reference answers file.

    Returns:
        dict: ``{str(question_id): {question_id, image, text, category, caption (the joined
        text), reference (the reference answer), reference_id}}`` in the questions' order.

    Raises:
        AnnotationError: A missing file, a record without a needed field, a category other
            than conv/detail/complex, an image without a caption, a question without a
            reference answer or a question id given twice (naming the file and the record).
    """
    paths = [f if osp.isabs(f) else osp.join(bench_dir, f) for f in (questions, context, answers)]
    q_path, c_path, a_path = paths
    captions = {}
    for n, row in enumerate(_rows(c_path, 'context'), 1):
        caption = row.get('caption')
        ok = isinstance(caption, str) or (isinstance(caption, list)
                                          and all(isinstance(c, str) for c in caption))
        if not isinstance(row.get('image'), str) or not ok:
            raise AnnotationError(f'{c_path}: line {n} needs "image" and "caption" (text or a '
                                  f'list of texts): {row!r:.120}')
        captions[row['image']] = caption_text(caption)
    references = {}
    for n, row in enumerate(_rows(a_path, 'reference answers'), 1):
        if row.get('question_id') is None or not isinstance(row.get('text'), str):
            raise AnnotationError(f'{a_path}: line {n} needs "question_id" and "text": '
                                  f'{row!r:.120}')
        references[str(row['question_id'])] = row
    records: Dict[str, dict] = {}
    for n, row in enumerate(_rows(q_path, 'questions'), 1):
        qid = row.get('question_id')
        if qid is None or not isinstance(row.get('text'), str) \
                or not isinstance(row.get('image'), str):
            raise AnnotationError(f'{q_path}: line {n} needs "question_id", "image" and '
                                  f'"text": {row!r:.120}')
        if row.get('category') not in CATEGORIES:
            raise AnnotationError(f'{q_path}: question {qid!r}: "category" must be one of '
                                  f'{", ".join(CATEGORIES)}, got {row.get("category")!r}')
        if str(qid) in records:
            raise AnnotationError(f'{q_path}: question id {qid!r} is given twice')
        if row['image'] not in captions:
            raise AnnotationError(f'{c_path}: no caption for image {row["image"]!r} (question '
                                  f'{qid!r} of {q_path})')
        ref = references.get(str(qid))
        if ref is None:
            raise AnnotationError(f'{a_path}: no reference answer for question {qid!r}')
        records[str(qid)] = dict(
            question_id=qid, image=row['image'], text=row['text'], category=row['category'],
            caption=captions[row['image']], reference=ref['text'],
            reference_id=ref.get('answer_id', ref['question_id']))
    if not records:
        raise AnnotationError(f'{q_path}: no questions')
    return records


@DATASETS.register_module()
class LLaVABenchDataset(_QuestionDataset):
    """LLaVA-Bench (in-the-wild): 60 questions on 24 images, answered freely, judged by an LLM.

    ``data_root`` is the release folder (see the module doc). The prompt is
    ``"<image>\\n{text}"`` (``llava/eval/model_vqa.py``: no instruction appended, so
    ``prompt_suffix=''``). Samples hold ``question_id`` (as in the file), ``question`` (the
    text), ``category`` (conv, detail, complex), ``images``, ``messages`` and ``gt_answer``
    (the reference answer of ``answers_gpt4.jsonl``), for
    :class:`~mmllava.evaluation.metrics.LLaVABenchMetric`.

    Args:
        ann_file (str): ``questions.jsonl``, relative to ``data_root`` unless absolute.
        context_file (str): ``context.jsonl`` (checked here, read by the review).
        answers_file (str): ``answers_gpt4.jsonl``, the reference answers.
        data_root (str): The release folder.
        img_prefix (str): The image folder (``images``).
        prompt_suffix (str): Text after the question (``''``: none, as the original).
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """
    extra_fields = ('category', )

    def __init__(self, ann_file: str = QUESTIONS_FILE, context_file: str = CONTEXT_FILE,
                 answers_file: str = ANSWERS_FILE, img_prefix: str = 'images',
                 prompt_suffix: str = '', **kwargs):
        self.context_file = context_file
        self.answers_file = answers_file
        super().__init__(ann_file=ann_file, img_prefix=img_prefix, prompt_suffix=prompt_suffix,
                         **kwargs)

    def _join_prefix(self):
        super()._join_prefix()
        # The other two files sit beside the questions unless given elsewhere.
        root = self.data_root or osp.dirname(self.ann_file)
        self.context_file, self.answers_file = (
            f if osp.isabs(f) else osp.join(root, f)
            for f in (self.context_file, self.answers_file))

    def read_questions(self) -> List[dict]:
        """One record per question, in the file's order."""
        bench = read_llava_bench('', self.ann_file, self.context_file, self.answers_file)
        return [dict(id=r['question_id'], question_id=r['question_id'], prompt=r['text'],
                     path=self.image_path(r['image']), gt_answer=r['reference'],
                     category=r['category'])
                for r in bench.values()]
