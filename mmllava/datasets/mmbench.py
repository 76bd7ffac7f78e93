"""MMBench from its released TSV (``mmbench_dev_20230712.tsv`` and the like), asked circularly.

The TSV has one row per question: ``index``, ``question``, ``hint``, the options ``A``-``D``
(a question with fewer options leaves the last ones empty), ``answer`` (the correct letter;
absent from the test split), ``category``, ``l2-category``, ``image`` (the picture, base64)
and possibly ``source``, ``split``, ``comment``.

**Circular evaluation** (MMBench's CircularEval): a question counts as right only when it is
answered right with its options rotated every way. The released TSVs carry the rotated copies
as rows of their own: index ``i + k * 1e6`` is question ``i`` with its options rotated ``k``
times (the official scorer groups the rows by ``index % 1e6``: ``mcq_circular_eval`` in
VLMEvalKit's ``vlmeval/dataset/utils/multiple_choice.py``; a copy's ``image`` may be the index
of the row whose picture it shares, as VLMEvalKit writes them). Such a file is asked row by
row, as written. A TSV without copies is rotated here, as LLaVA's
``llava/eval/model_vqa_mmbench.py --all-rounds`` does: ``n`` options give ``n`` samples,
rotation ``r`` asking the options ``options[r:] + options[:r]`` (the answer letter follows).
``circular=False`` asks each question once (rotation 0, the copies left out): the "vanilla"
accuracy.

The prompt is LLaVA's (``model_vqa_mmbench.py --single-pred-prompt``)::

    <image>
    {hint}                     (only when the hint is not NaN / "nan" / "none")
    {question}
    A. {option}
    B. {option}
    Answer with the option's letter from the given choices directly.

Images are decoded from the TSV's base64 in :meth:`MMBenchDataset.parse_record`, when a
sample is asked for, and go to the pipeline as a PIL image in ``images`` (``LoadImages``
takes in-memory images as they are): nothing is written to disk. One copy of each picture is
kept, so rotations cost no memory. A row whose picture is empty or does not decode is scored
as a miss (``fail_on_invalid=True`` raises instead), as a missing image file is elsewhere.
"""
import base64
import binascii
import io
import math
import string
from typing import Dict, List, NamedTuple, Optional, Sequence

from PIL import Image

from mmllava.registry import DATASETS
from mmllava.structures import IMAGE_PLACEHOLDER

from .annotations import AnnotationError
from .base import MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError
from .invalid_samples import INVALID_SAMPLE, one_line

# LLaVA's --single-pred-prompt (and its --lang cn one, for the Chinese TSVs).
MMBENCH_PROMPT = "Answer with the option's letter from the given choices directly."
MMBENCH_CN_PROMPT = '请直接回答选项字母。'
# Index offset of the circular copies in the released TSVs (row i + k * 1e6: rotation k of i).
CIRCULAR_OFFSET = 1_000_000
_REQUIRED = ('index', 'question', 'A', 'B', 'image')


def is_none(value) -> bool:
    """LLaVA's ``is_none``: None, NaN, or the text ``"nan"`` / ``"none"`` (any case)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.lower() in ('nan', 'none')


class MMBenchRow(NamedTuple):
    """One TSV row: its options (the non-empty ``A``, ``B`` ... up to the first empty one)
    and ``answer`` (a letter, None without answers) as written; ``image`` is the base64 text
    (a copy's reference resolved), ``''`` when the row has none."""
    index: int
    question: str
    hint: Optional[str]
    options: List[str]
    answer: Optional[str]
    category: Optional[str]
    l2_category: Optional[str]
    image: str


class MMBenchQuestion(NamedTuple):
    """One sample: a row asked with its options rotated ``rotation`` times."""
    index: int
    rotation: int
    group: int  # the question it belongs to: index % 1e6, as the official scorer groups
    row: MMBenchRow
    options: List[str]
    answer: Optional[str]

    @property
    def sample_id(self) -> str:
        """``"{index}"`` for rotation 0, ``"{index}_r{rotation}"`` for the others."""
        return sample_id(self.index, self.rotation)


def sample_id(index: int, rotation: int = 0) -> str:
    """The question id of a sample: ``"{index}"``, or ``"{index}_r{rotation}"``."""
    return str(index) if rotation == 0 else f'{index}_r{rotation}'


def _text(value) -> Optional[str]:
    return None if is_none(value) else str(value)


def read_mmbench_tsv(path: str) -> List[MMBenchRow]:
    """The rows of an MMBench TSV, checked, read with pandas as LLaVA and VLMEvalKit read it
    (so the same cells are empty: pandas' NA texts ``''``, ``'NA'``, ``'None'`` ...).

    Raises:
        AnnotationError: a missing column, a non-integer or repeated ``index``, an answer that
            is not one of the row's option letters, a copy (index >= 1e6) of a question the
            file does not have, an image reference to no row.
    """
    import pandas as pd
    try:
        df = pd.read_csv(path, sep='\t', dtype=str)
    except FileNotFoundError:
        raise FileNotFoundError(f'MMBench TSV not found: {path!r}') from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise AnnotationError(f'{path}: not a readable TSV ({type(e).__name__}: '
                              f'{one_line(e)})') from None
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise AnnotationError(f'{path}: no column {", ".join(map(repr, missing))} (an MMBench '
                              f'TSV has index, question, hint, A-D, answer, category, image); '
                              f'columns: {list(df.columns)}')
    letters = ''
    for letter in string.ascii_uppercase:
        if letter not in df.columns:
            break
        letters += letter
    records = df.to_dict('records')
    rows, images = [], {}
    for n, rec in enumerate(records, 2):  # line 1 is the header
        raw = rec['index']
        try:
            index = int(str(raw).strip())
        except ValueError:
            raise AnnotationError(f'{path}:{n}: "index" must be an integer, got {raw!r}') \
                from None
        if index in images:
            raise AnnotationError(f'{path}:{n}: index {index} appears twice')
        options = []
        for letter in letters:  # LLaVA's get_options: up to the first empty option
            if is_none(rec.get(letter)):
                break
            options.append(str(rec[letter]))
        if len(options) < 2:
            raise AnnotationError(f'{path}:{n}: question {index} has {len(options)} option(s); '
                                  'a multiple-choice question needs "A" and "B" at least')
        answer = _text(rec.get('answer'))
        if answer is not None:
            answer = answer.strip()
            if answer not in letters[:len(options)]:
                raise AnnotationError(f'{path}:{n}: question {index}: "answer" must be one of '
                                      f'its option letters {letters[:len(options)]}, got '
                                      f'{rec["answer"]!r}')
        question = rec.get('question')
        if is_none(question):
            raise AnnotationError(f'{path}:{n}: question {index} has no "question" text')
        images[index] = _text(rec.get('image')) or ''
        rows.append(MMBenchRow(index, str(question), _text(rec.get('hint')), options, answer,
                               _text(rec.get('category')), _text(rec.get('l2-category')),
                               images[index]))
    out = []
    for row in rows:
        if row.index >= CIRCULAR_OFFSET and row.index % CIRCULAR_OFFSET not in images:
            raise AnnotationError(f'{path}: row {row.index} is a circular copy of question '
                                  f'{row.index % CIRCULAR_OFFSET}, which the file does not have')
        image = row.image
        if 0 < len(image) <= 64 and image.strip().lstrip('-').isdigit():
            ref = int(image)  # VLMEvalKit's copies name the row whose picture they share
            if ref not in images or len(images[ref]) <= 64:
                raise AnnotationError(f'{path}: row {row.index}: "image" {image!r} is neither '
                                      'base64 nor the index of a row with a picture')
            row = row._replace(image=images[ref])
        out.append(row)
    return out


def has_circular_copies(rows: Sequence[MMBenchRow]) -> bool:
    """Whether the TSV carries the rotated copies itself (rows with index >= 1e6)."""
    return any(r.index >= CIRCULAR_OFFSET for r in rows)


def rotate(row: MMBenchRow, rotation: int) -> MMBenchQuestion:
    """``row`` with its options rotated ``rotation`` times (LLaVA's ``options[1:] +
    options[:1]`` per round): the answer letter follows its option."""
    n = len(row.options)
    options = row.options[rotation:] + row.options[:rotation]
    answer = row.answer
    if answer is not None:
        answer = string.ascii_uppercase[(string.ascii_uppercase.index(answer) - rotation) % n]
    return MMBenchQuestion(row.index, rotation, row.index % CIRCULAR_OFFSET, row, options,
                           answer)


def expand_questions(rows: Sequence[MMBenchRow], circular: bool = True) -> List[MMBenchQuestion]:
    """The samples of a TSV (see the module doc): its rows as written when it has circular
    copies, each row in every rotation when it has none; one per question if not circular."""
    if has_circular_copies(rows):
        return [rotate(r, 0) for r in rows if circular or r.index < CIRCULAR_OFFSET]
    return [rotate(r, k) for r in rows for k in range(len(r.options) if circular else 1)]


def question_text(question: MMBenchQuestion) -> str:
    """LLaVA's question (its ``cur_prompt``): the hint, the question, the lettered options."""
    row = question.row
    text = row.question if row.hint is None else f'{row.hint}\n{row.question}'
    for letter, option in zip(string.ascii_uppercase, question.options):
        text += f'\n{letter}. {option}'
    return text


def decode_image(data: str) -> Image.Image:
    """A base64 picture (LLaVA's ``load_image_from_base64``), decoded fully.

    Raises:
        ValueError: empty, not base64, or not an image.
    """
    if not data:
        raise ValueError('the row has no image')
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
    except (binascii.Error, ValueError) as e:
        raise ValueError(f'"image" is not base64 ({e})') from None
    except Exception as e:  # PIL: UnidentifiedImageError, OSError, DecompressionBombError
        raise ValueError(f'"image" does not decode ({type(e).__name__}: {e})') from None
    return image


@DATASETS.register_module()
class MMBenchDataset(BaseLlavaDataset):
    """MMBench (dev, or test for a submission) from the released TSV; see the module doc.

    Samples hold ``question_id`` / ``sample_id`` (:func:`sample_id`: ``"{index}"`` or
    ``"{index}_r{rotation}"``), ``index`` (the TSV's), ``rotation``, ``images`` (one PIL
    image), ``messages``, ``question``, ``choices`` (the option texts in the order asked),
    ``gt_answer`` (the letter of the right one in that order; None without answers),
    ``category`` and ``l2_category``, for :class:`~mmllava.evaluation.metrics.MMBenchMetric`.

    Args:
        ann_file (str): The TSV, relative to ``data_root`` unless absolute.
        circular (bool): Circular evaluation (every rotation asked); False asks each question
            once.
        prompt_suffix (str): The instruction after the options (``MMBENCH_CN_PROMPT`` for the
            Chinese TSVs, as LLaVA's ``--lang cn``; ``''`` for none).
        data_root (str): Root of ``ann_file``.
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """

    def __init__(self, ann_file: str, circular: bool = True,
                 prompt_suffix: str = MMBENCH_PROMPT, test_mode: bool = True, **kwargs):
        if not test_mode:
            raise ValueError('MMBenchDataset is an evaluation dataset: test_mode must be True')
        self.circular = circular
        self.prompt_suffix = prompt_suffix
        self._images: Dict[int, str] = {}
        super().__init__(ann_file=ann_file, test_mode=True, **kwargs)

    def load_records(self):
        """One record per sample; a row without a picture is a miss (see the module doc)."""
        rows = read_mmbench_tsv(self.ann_file)
        self._images = {r.index: r.image for r in rows if r.image}
        for q in expand_questions(rows, self.circular):
            row = q.row
            record = dict(id=q.sample_id, index=q.index, rotation=q.rotation,
                          image_key=q.index if row.image else None,
                          question=question_text(q), choices=q.options, gt_answer=q.answer,
                          category=row.category, l2_category=row.l2_category)
            record['modality_length'] = max(1, len(self.text(record).split()))
            if not row.image:
                try:
                    self._invalid(q.sample_id, MISSING_IMAGE, 'the row has no image',
                                  record=record)
                except InvalidSampleError as e:
                    yield q.sample_id, e
                    continue
            yield q.sample_id, record

    def text(self, record: dict) -> str:
        """The user turn: ``<image>``, LLaVA's question, the instruction."""
        text = f'{IMAGE_PLACEHOLDER}\n{record["question"]}'
        return f'{text}\n{self.prompt_suffix}' if self.prompt_suffix else text

    def parse_record(self, record: dict) -> dict:
        """The test sample, its picture decoded (a miss when it does not decode)."""
        info = dict(sample_id=record['id'], question_id=record['id'], index=record['index'],
                    rotation=record['rotation'], question=record['question'],
                    messages=[dict(role='user', content=self.text(record))],
                    choices=list(record['choices']), gt_answer=record['gt_answer'],
                    category=record['category'], l2_category=record['l2_category'], images=[])
        key = record.get('image_key')
        if key is not None and not record.get(INVALID_SAMPLE):
            try:
                info['images'] = [decode_image(self._images.get(key, ''))]
            except ValueError as e:
                message = (f'MMBenchDataset: sample {record["id"]!r} of {self.ann_file!r} '
                           f'(row {record["index"]}): {e}')
                if not self.scores_misses:
                    raise InvalidSampleError(message, MISSING_IMAGE) from None
                info[INVALID_SAMPLE] = one_line(message)
        return info
