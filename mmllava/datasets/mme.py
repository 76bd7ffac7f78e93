"""MME (Fu et al., 2023) from its official release folder, ``MME_Benchmark_release_version``.

The release has one folder per subtask, in one of two layouts:

* ``{subtask}/images/{name}.jpg`` with ``{subtask}/questions_answers_YN/{name}.txt``
  (artwork, celebrity, landmark, posters, scene);
* ``{subtask}/{name}.{jpg,png}`` next to ``{subtask}/{name}.txt`` (existence, count, position,
  color, OCR and the four cognition subtasks).

Each ``.txt`` holds an image's two questions, one a line, ``question<TAB>answer`` with the
answer ``Yes`` or ``No`` (e.g. ``Is there a bus in this image? Please answer yes or no.\\tYes``).
This is how MME's ``eval_tool`` and LLaVA's ``convert_answer_to_mme.py`` (``get_gt``) read the
folder; :func:`read_mme` is shared by :class:`MMEDataset` and the offline scoring of
:mod:`mmllava.evaluation.metrics.mme`, so a run and an offline scoring agree on what is true.

The prompt is LLaVA-1.5's, as in its question file ``playground/data/eval/MME/llava_mme.jsonl``
(haotian-liu/LLaVA; read in full: its 2374 prompts are the official questions with the trailing
``Please answer yes or no.`` removed, then ``\\nAnswer the question using a single word or
phrase.``; its ``convert_answer_to_mme.py`` puts the removed sentence back to find the answer,
and lmms-eval's ``tasks/mme/utils.py`` does the same replacement)::

    <image>
    Is there a bus in this image?
    Answer the question using a single word or phrase.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmllava.registry import DATASETS

from .annotations import AnnotationError
from .benchmarks import _QuestionDataset
from .vqav2 import SHORT_ANSWER_PROMPT

# The 14 subtasks as MME's eval_tool/calculation.py groups them (folder names of the release).
MME_PERCEPTION = ('existence', 'count', 'position', 'color', 'posters', 'celebrity', 'scene',
                  'landmark', 'artwork', 'OCR')
MME_COGNITION = ('commonsense_reasoning', 'numerical_calculation', 'text_translation',
                 'code_reasoning')
MME_SUBTASKS = MME_PERCEPTION + MME_COGNITION
# The image extension of each subtask in the release (from LLaVA's llava_mme.jsonl): the name
# a missing image is reported under. Images are found by their .txt's name whatever the
# extension.
MME_IMAGE_EXT = {s: '.png' for s in MME_COGNITION}
# The instruction every official question ends with; LLaVA's prompt drops it.
YES_NO_INSTRUCTION = 'Please answer yes or no.'
_ANSWERS = ('yes', 'no')


def mme_question_id(subtask: str, image: str, line: int) -> str:
    """A question's id: ``"{subtask}/{image file}#{line}"`` (its line in the image's .txt).

    Unique per question (an image has two), and it names the image: the metric pairs the two
    questions of an image by the part before ``#``.
    """
    return f'{subtask}/{image}#{line}'


def mme_image_key(question_id: str) -> str:
    """The ``"{subtask}/{image file}"`` part of a :func:`mme_question_id`."""
    return str(question_id).rsplit('#', 1)[0]


def strip_instruction(question: str) -> str:
    """The question without MME's ``Please answer yes or no.`` (as LLaVA's prompts have it)."""
    return question.replace(YES_NO_INSTRUCTION, '').strip()


def _subtask_folders(subtask_dir: str):
    """(image folder, question folder) of a subtask in either layout (see module doc)."""
    images = osp.join(subtask_dir, 'images')
    if osp.isdir(images):
        questions = osp.join(subtask_dir, 'questions_answers_YN')
        if not osp.isdir(questions):
            raise AnnotationError(f'{subtask_dir}: has images/ but no questions_answers_YN/ '
                                  '(the official layout has both)')
        return images, questions
    return subtask_dir, subtask_dir


def _read_txt(path: str) -> List[tuple]:
    """``[(line number, question, answer)]`` of one image's .txt, checked."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f'{path}: not UTF-8 text (byte {e.start})') from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split('\t')
        if len(parts) != 2 or not parts[0].strip():
            raise AnnotationError(f'{path}:{n}: expected "question<TAB>answer", got {line!r:.120}')
        question, answer = parts[0].strip(), parts[1].strip()
        if answer.lower() not in _ANSWERS:
            raise AnnotationError(f'{path}:{n}: the answer must be Yes or No, got {answer!r}')
        out.append((n, question, answer))
    if len(out) != 2:
        raise AnnotationError(f'{path}: an MME image has two questions (one Yes, one No), '
                              f'found {len(out)}')
    return out


def mme_subtask_dirs(paths: Sequence[str],
                     subtasks: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """``{subtask: folder}`` from release folders or subtask folders.

    Args:
        paths (Sequence[str]): Each the release folder (holding subtask folders) or one
            subtask folder (named after its subtask).
        subtasks (Sequence[str], optional): The subtasks to take from a release folder; each
            must be there. None: every one of :data:`MME_SUBTASKS` the folder has (at least
            one).
    """
    unknown = [s for s in subtasks or () if s not in MME_SUBTASKS]
    if unknown:
        raise ValueError(f'Unknown MME subtasks {unknown}; they are {list(MME_SUBTASKS)}')
    found = {}
    for path in paths:
        if not osp.isdir(path):
            raise FileNotFoundError(f'MME: not a folder: {path!r} (give the release folder '
                                    'MME_Benchmark_release_version or a subtask folder)')
        name = osp.basename(osp.normpath(path))
        if name in MME_SUBTASKS:
            if subtasks is None or name in subtasks:
                found[name] = path
            continue
        present = [s for s in MME_SUBTASKS if osp.isdir(osp.join(path, s))]
        wanted = list(subtasks) if subtasks is not None else present
        missing = [s for s in wanted if s not in present]
        if missing or not wanted:
            raise AnnotationError(
                f'{path}: no subtask folder {missing or list(MME_SUBTASKS)} (an MME release '
                f'folder holds {", ".join(MME_SUBTASKS)}; found {present})')
        found.update({s: osp.join(path, s) for s in wanted})
    return {s: found[s] for s in MME_SUBTASKS if s in found}


def read_mme(paths: Sequence[str], subtasks: Optional[Sequence[str]] = None) -> List[dict]:
    """Every question of the given MME folders (see :func:`mme_subtask_dirs`).

    Returns:
        list[dict]: In subtask, then image order, the two questions of an image together:
        ``question_id`` (:func:`mme_question_id`), ``category`` (the subtask), ``image``
        (the file name), ``path`` (the image path; where no image has the .txt's name, the
        name it should have, so that it is reported missing), ``question`` (as in the file),
        ``answer`` (``Yes``/``No`` as in the file), ``txt`` and ``line``.

    Raises:
        AnnotationError: A malformed .txt or folder (the message names it).
    """
    records = []
    for subtask, folder in mme_subtask_dirs(paths, subtasks).items():
        image_dir, qa_dir = _subtask_folders(folder)
        names = sorted(f for f in os.listdir(image_dir)
                       if not f.startswith('.') and not f.endswith('.txt'))
        by_stem: Dict[str, List[str]] = {}
        for name in names:
            by_stem.setdefault(osp.splitext(name)[0], []).append(name)
        ext = MME_IMAGE_EXT.get(subtask, '.jpg')
        txts = sorted(f for f in os.listdir(qa_dir) if f.endswith('.txt'))
        if not txts:
            raise AnnotationError(f'{qa_dir}: no question files (.txt) for MME subtask '
                                  f'{subtask!r}')
        for txt in txts:
            stem = osp.splitext(txt)[0]
            candidates = by_stem.get(stem, [])
            image = next((c for c in candidates if c.endswith(ext)),
                         candidates[0] if candidates else stem + ext)
            path = osp.join(qa_dir, txt)
            for line, question, answer in _read_txt(path):
                records.append(dict(question_id=mme_question_id(subtask, image, line),
                                    category=subtask, image=image,
                                    path=osp.join(image_dir, image), question=question,
                                    answer=answer, txt=path, line=line))
    return records


@DATASETS.register_module()
class MMEDataset(_QuestionDataset):
    """MME's 14 subtasks from the official release folder (both layouts, see module doc).

    Samples hold ``question_id`` (``"{subtask}/{image}#{line}"``, :func:`mme_question_id`),
    ``images``, ``messages`` (LLaVA-1.5's prompt, see module doc), ``question`` (the official
    question, instruction included), ``category`` (the subtask) and ``gt_answer``
    (``Yes``/``No``), for :class:`~mmllava.evaluation.metrics.MMEMetric`. An image missing from
    the folder is scored as a miss (both its questions), as the other benchmarks do.

    Args:
        ann_file (str): The release folder ``MME_Benchmark_release_version`` (or one subtask
            folder), relative to ``data_root`` unless absolute; ``''``: ``data_root`` itself.
        subtasks (Sequence[str], optional): The subtasks to read (each must be in the
            folder); None: all 14 (:data:`MME_SUBTASKS`) that the folder has.
        keep_instruction (bool): Keep ``Please answer yes or no.`` in the question (MME's own
            prompt, with ``prompt_suffix=''``); LLaVA drops it (False, the default).
        prompt_suffix (str): The instruction after the question (``''`` for none).
        data_root (str): Root of ``ann_file``.
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """
    extra_fields = ('category', )

    def __init__(self, ann_file: str = '', subtasks: Optional[Sequence[str]] = None,
                 keep_instruction: bool = False, prompt_suffix: str = SHORT_ANSWER_PROMPT,
                 data_root: str = '', **kwargs):
        if subtasks is not None:
            subtasks = [subtasks] if isinstance(subtasks, str) else list(subtasks)
            unknown = [s for s in subtasks if s not in MME_SUBTASKS]
            if unknown:
                raise ValueError(f'MMEDataset: unknown subtasks {unknown}; they are '
                                 f'{list(MME_SUBTASKS)}')
        self.subtasks = subtasks
        self.keep_instruction = keep_instruction
        super().__init__(ann_file=ann_file, data_root=data_root, prompt_suffix=prompt_suffix,
                         **kwargs)

    def _join_prefix(self):
        super()._join_prefix()
        self.ann_file = self.ann_file or self.data_root  # '': the data_root is the release
        if not self.ann_file:
            raise ValueError('MMEDataset: give the release folder as ann_file or data_root')

    def read_questions(self) -> List[dict]:
        """The questions of the release folder (:func:`read_mme`)."""
        records = []
        for r in read_mme([self.ann_file], self.subtasks):
            prompt = r['question'] if self.keep_instruction else strip_instruction(r['question'])
            records.append(dict(id=r['question_id'], question_id=r['question_id'],
                                prompt=prompt, official_question=r['question'],
                                path=r['path'], gt_answer=r['answer'], category=r['category']))
        return records

    def parse_record(self, record: dict) -> dict:
        """The test sample; ``question`` is the official question (the metric's writer of
        MME's result files puts it there)."""
        info = super().parse_record(record)
        info['question'] = record['official_question']
        return info
