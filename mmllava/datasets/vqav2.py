"""VQAv2 from the official question and annotation files."""
import os.path as osp
from collections import Counter
from typing import Callable, List, Sequence, Union

from mmllava.registry import DATASETS

from .base import MALFORMED, MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError

# LLaVA-1.5's short-answer instruction (its VQAv2 training and evaluation prompts).
SHORT_ANSWER_PROMPT = 'Answer the question using a single word or phrase.'


def most_common_answer(answers: List[str], preferred: str = None) -> str:
    """The most frequent answer; a tie goes to ``preferred`` (the official
    ``multiple_choice_answer``) when it is among the tied, else to the first seen."""
    counts = Counter(answers)
    top = max(counts.values())
    tied = [a for a in counts if counts[a] == top]  # Counter keeps first-seen order
    return preferred if preferred in tied else tied[0]


@DATASETS.register_module()
class VQAv2Dataset(BaseLlavaDataset):
    """VQAv2 from ``v2_OpenEnded_mscoco_{split}_questions.json`` and its annotations.

    The annotations are ``v2_mscoco_{split}_annotations.json``.

    Training samples are LLaVA-1.5's short-answer conversations:
    ``"<image>\\n{question}\\nAnswer the question using a single word or phrase."`` answered
    with the most common of the 10 human answers. Test samples hold only the question turn and
    keep ``gt_answer`` (the 10 answers, when the annotation file is given) for the metric.

    Images are found by name, not by listing the folder: ``img_name_format`` is formatted
    with ``image_id`` and the question file's ``data_subtype`` (e.g. ``train2014``).

    Each sample holds ``sample_id`` (the ``question_id``), ``question_id``, ``image_id``,
    ``question``, ``images`` ([path]), ``messages``, ``modality_length`` and, where the
    annotations are given, ``gt_answer`` (list of 10 str) and ``answer_type``.

    Args:
        question_file (str): The questions JSON, relative to ``data_root`` unless absolute.
        ann_file (str): The annotations JSON; ``''`` for test-dev/test (no answers; test mode
            only).
        data_root (str): Root of the two files and ``img_prefix``.
        img_prefix (str): The image folder, e.g. ``'train2014'``.
        img_name_format (str): File name of an image in ``img_prefix``.
        prompt_suffix (str): Appended to the question on its own line (``''`` for none).
        pipeline (Sequence): Transforms.
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """

    def __init__(self, question_file: str, ann_file: str = '', data_root: str = '',
                 img_prefix: str = '',
                 img_name_format: str = 'COCO_{data_subtype}_{image_id:012d}.jpg',
                 prompt_suffix: str = SHORT_ANSWER_PROMPT,
                 pipeline: Sequence[Union[dict, Callable]] = (), **kwargs):
        self.question_file = question_file
        self.img_name_format = img_name_format
        self.prompt_suffix = prompt_suffix
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         pipeline=pipeline, **kwargs)

    def _join_prefix(self):
        if self.question_file and not osp.isabs(self.question_file) and self.data_root:
            self.question_file = osp.join(self.data_root, self.question_file)
        super()._join_prefix()

    def load_records(self):
        """One record per question, answers attached by ``question_id``."""
        questions = self._read_json(self.question_file)
        subtype = questions.get('data_subtype', '')
        questions = questions['questions']
        answers = {}
        if self.ann_file:
            answers = {a['question_id']: a for a in self._read_json(self.ann_file)['annotations']}
        elif not self.test_mode:
            raise ValueError('VQAv2Dataset: training needs ann_file (the answers)')
        exists = {}
        for q in questions:
            qid = q.get('question_id')
            try:
                if not isinstance(q.get('question'), str) or 'image_id' not in q:
                    self._invalid(qid, MALFORMED, f'bad question record {q!r:.120}')
                path = self.image_path(self.img_name_format.format(
                    image_id=q['image_id'], data_subtype=subtype))
                missing = False
                if self.check_images:
                    if q['image_id'] not in exists:
                        exists[q['image_id']] = osp.exists(path)
                    missing = not exists[q['image_id']]
                    if missing and not self.keeps_missing:
                        self._invalid(qid, MISSING_IMAGE, 'image file not found', path)
                record = dict(id=qid, question_id=qid, image_id=q['image_id'],
                              question=q['question'], path=path)
                ann = answers.get(qid)
                if self.ann_file and ann is None:
                    self._invalid(qid, MALFORMED, f'no annotation in {self.ann_file!r}')
                if ann is not None:
                    gt = [a['answer'] for a in ann.get('answers', [])]
                    if not gt:
                        self._invalid(qid, MALFORMED, 'the annotation has no answers')
                    record.update(
                        gt_answer=gt, answer_type=ann.get('answer_type'),
                        answer=most_common_answer(gt, ann.get('multiple_choice_answer')))
                record['modality_length'] = len(self._question(record).split()) + (
                    len(record['answer'].split()) if 'answer' in record else 0)
                if missing:  # test mode scores it as a miss: the record goes with the error
                    self._invalid(qid, MISSING_IMAGE, 'image file not found', path, record)
            except InvalidSampleError as e:
                yield qid, e
                continue
            yield qid, record

    def _question(self, record: dict) -> str:
        text = f'<image>\n{record["question"]}'
        return f'{text}\n{self.prompt_suffix}' if self.prompt_suffix else text

    def parse_record(self, record: dict) -> dict:
        """The short-answer conversation of a question."""
        info = dict(sample_id=record['id'], question_id=record['question_id'],
                    image_id=record['image_id'], question=record['question'],
                    images=[record['path']])
        messages = [dict(role='user', content=self._question(record))]
        if not self.test_mode:
            messages.append(dict(role='assistant', content=record['answer']))
        info['messages'] = messages
        if 'gt_answer' in record:
            info['gt_answer'] = list(record['gt_answer'])
            info['answer_type'] = record['answer_type']
        return info
