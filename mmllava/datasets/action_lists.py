"""Action recognition lists in mmaction2's formats, as LLaVA conversations.

Three list formats, one sample a line, fields separated by whitespace (blank lines are
skipped)::

    videos      path label                   e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0
    rawframes   dir total_frames label       e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 121 0
    images      path label                   e.g. applauding_001.jpg 0   (Stanford40 style)

and a label map: one class name a line, line ``i`` (counted from 0) naming label ``i``, as
mmaction2 ships them (``tools/data/ucf101/label_map.txt`` ...), read by
:func:`mmllava.datasets.label_map.read_label_map`: identifier names are asked and answered as
words (``ApplyEyeMakeup`` -> ``apply eye makeup``, ``brush_hair`` -> ``brush hair``).

A sample becomes a one-turn conversation: a question (:func:`action_question`), the class name
as the answer. ``'closed'`` questions list the classes (:func:`closed_set_question`, the same
text as :data:`~mmllava.datasets.mocap_actions.MOCAP_ACTION_QUESTION` for the MoCap classes);
``'open'`` ones ask :data:`OPEN_QUESTION` alone, for label sets too long to list in a prompt
(Kinetics-400, Something-Something-v2).

Two ways to train on them, giving the same conversations:

- :class:`ActionListDataset` reads a list and its label map directly (a config points at
  ``ucf101_train_split_1_videos.txt``);
- ``tools/dataset_converters/action_to_llava.py`` writes LLaVA instruction JSON
  (:func:`llava_action_sample`) for :class:`~mmllava.datasets.LlavaInstructDataset`.

Bad input raises a ``ValueError`` naming the list file and line (``train_list.txt:17: label
40 is outside the label map label_map.txt (30 classes)``): a line with the wrong number of
fields, a label or frame count that is not an integer, a label outside the label map, an empty
list or label map, a missing file, or a rawframe folder with fewer frames than its line says.
"""
import os.path as osp
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

from mmllava.conversation import from_llava_conversations
from mmllava.datasets.label_map import read_label_map, read_text_lines
from mmllava.registry import DATASETS

from .base import MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError
from .invalid_samples import LlavaCompose
from .llava_instruct import _count_words

LIST_FORMATS = ('videos', 'rawframes', 'images')
QUESTION_MODES = ('closed', 'open')
OPEN_QUESTION = 'What is the person doing?'
# mmaction2's rawframe layout (tools/data/build_rawframes.py): img_00001.jpg, img_00002.jpg ...
RAWFRAME_TMPL = 'img_{:05}.jpg'
_FIELDS = {'videos': ('path', 'label'), 'rawframes': ('dir', 'total_frames', 'label'),
           'images': ('path', 'label')}


class ActionListEntry(NamedTuple):
    """One line of an action list: ``path`` (file or rawframe folder, as written in the
    list), ``label``, ``total_frames`` (rawframes only, else None) and its 1-based ``line``."""
    path: str
    label: int
    total_frames: Optional[int]
    line: int


def closed_set_question(class_names: Sequence[str], question: str = OPEN_QUESTION) -> str:
    """``question`` followed by the classes to choose from.

    ``closed_set_question(MOCAP_ACTION_CLASSES) == MOCAP_ACTION_QUESTION``.
    """
    return f'{question} Answer with one of: ' + ', '.join(class_names) + '.'


def action_question(class_names: Sequence[str], question_mode: str = 'closed',
                    question: Optional[str] = None) -> str:
    """The question of every sample of a list.

    Args:
        class_names (Sequence[str]): The label map.
        question_mode (str): ``'closed'`` lists the classes after the question; ``'open'``
            asks the question alone.
        question (str, optional): The question, :data:`OPEN_QUESTION` when not given. In
            closed mode the class list is appended to it.

    Returns:
        str: The question text (without the ``<video>``/``<image>`` placeholder).
    """
    if question_mode not in QUESTION_MODES:
        raise ValueError(f'question_mode must be one of {QUESTION_MODES}, got {question_mode!r}')
    question = OPEN_QUESTION if question is None else question.strip()
    if not question:
        raise ValueError('the question is empty')
    if question_mode == 'closed':
        return closed_set_question(class_names, question)
    return question


def _int_field(value: str, what: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'{where}: {what} {value!r} is not an integer') from None


def read_action_list(path: str, list_format: str = 'videos',
                     num_classes: Optional[int] = None,
                     label_map: str = 'the label map') -> List[ActionListEntry]:
    """Read an mmaction2 list (see the module doc for the formats).

    Args:
        path (str): The list file.
        list_format (str): ``'videos'``, ``'rawframes'`` or ``'images'``.
        num_classes (int, optional): Size of the label map; labels must lie in
            ``[0, num_classes)``. Only non-negative labels are checked when not given.
        label_map (str): Name of the label map, for error messages.

    Returns:
        list[ActionListEntry]: The entries in file order.

    Raises:
        FileNotFoundError: no such list file.
        ValueError: a malformed line, a bad label or frame count, or an empty list; the message
            starts with ``path:line``.
    """
    if list_format not in LIST_FORMATS:
        raise ValueError(f'list_format must be one of {LIST_FORMATS}, got {list_format!r}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'action list not found: {path!r}')
    fields = _FIELDS[list_format]
    entries = []
    for number, line in enumerate(read_text_lines(path, 'action list'), 1):
        parts = line.split()
        if not parts:
            continue
        where = f'{path}:{number}'
        if len(parts) != len(fields):
            # Multi-label lines (mmaction2's multi_class) and paths with spaces land here.
            raise ValueError(
                f'{where}: expected "{" ".join(fields)}" ({len(fields)} fields) for a '
                f'{list_format} list, got {len(parts)}: {line.strip()!r:.120}')
        label = _int_field(parts[-1], 'label', where)
        if label < 0 or (num_classes is not None and label >= num_classes):
            size = f' ({num_classes} classes)' if num_classes is not None else ''
            raise ValueError(f'{where}: label {label} is outside the label map '
                             f'{label_map}{size}')
        total = None
        if list_format == 'rawframes':
            total = _int_field(parts[1], 'total_frames', where)
            if total < 1:
                raise ValueError(f'{where}: total_frames must be positive, got {total}')
        entries.append(ActionListEntry(parts[0], label, total, number))
    if not entries:
        raise ValueError(f'{path}: the action list has no samples')
    return entries


def sample_id_of(entry) -> str:
    """A sample's id: its path without the extension (a rawframe folder as it is).

    Args:
        entry (ActionListEntry | str): A list entry, or its path.
    """
    path = entry if isinstance(entry, str) else entry.path
    stem, ext = osp.splitext(path)
    return stem if ext else path


def llava_action_sample(entry: ActionListEntry, class_names: Sequence[str], question: str,
                        list_format: str = 'videos', path_prefix: str = '') -> dict:
    """One LLaVA instruction record of a list entry.

    Args:
        entry (ActionListEntry): The list line.
        class_names (Sequence[str]): The label map; the answer is ``class_names[label]``.
        question (str): The question (:func:`action_question`).
        list_format (str): ``'videos'`` and ``'rawframes'`` give ``"video"`` and ``<video>``
            (rawframes add ``"total_frames"``); ``'images'`` gives ``"image"`` and ``<image>``.
        path_prefix (str): Joined in front of the entry's path.

    Returns:
        dict: ``{"id", "video" | "image", ["total_frames"], "conversations"}``.
    """
    kind = 'image' if list_format == 'images' else 'video'
    record = {'id': sample_id_of(entry),
              kind: osp.join(path_prefix, entry.path) if path_prefix else entry.path}
    if entry.total_frames is not None:
        record['total_frames'] = entry.total_frames
    record['conversations'] = [
        {'from': 'human', 'value': f'<{kind}>\n{question}'},
        {'from': 'gpt', 'value': class_names[entry.label]}]
    return record


class _LocatedCompose(LlavaCompose):
    """The pipeline, with ``list_file:line`` of the sample put in front of its errors (raised
    from the original, so an unreadable clip stays recognizable as one)."""

    def __call__(self, data: dict):
        try:
            return super().__call__(data)
        except (ValueError, OSError) as e:
            where = f'{data.get("list_file")}:{data.get("list_line")}'
            message = f'{where}: {e}'
            if isinstance(e, InvalidSampleError):
                raise InvalidSampleError(message, e.reason) from e
            try:
                located = type(e)(message)
            except TypeError:  # an error class with another signature: keep the text
                located = ValueError(message)
            raise located from e


@DATASETS.register_module()
class ActionListDataset(BaseLlavaDataset):
    """An mmaction2 video, rawframe or image list with its label map, as conversations.

    No conversion step: a config points at the list mmaction2's data tools write. Each sample
    given to the pipeline holds (as :class:`~mmllava.datasets.LlavaInstructDataset`'s, plus
    the clip keys :class:`~mmllava.datasets.transforms.LoadVisuals` reads):

    - ``sample_id``: the path without its extension (:func:`sample_id_of`).
    - ``messages``: the question (with ``<video>`` or ``<image>``) and the class name.
    - ``videos`` (videos, rawframes) or ``images`` (images): one path, joined with
      ``img_prefix``; ``total_frames``: the list's frame count (rawframes) or None.
    - ``gt_label``: the label (for :class:`~mmllava.evaluation.ActionAccuracy`).
    - ``answer_candidates`` (test mode, with ``rank_classes``): the class names, which
      ``TokenizeConversation`` turns into the ids the model ranks (``pred_scores``).
    - ``list_file`` and ``list_line``: where the sample was read. Errors in the pipeline (an
      unreadable video, a rawframe folder with fewer frames than its line says) start with
      ``list_file:list_line``.
    - ``modality_length`` and ``sample_idx`` as in :class:`BaseLlavaDataset`.

    Errors of the list itself (a malformed line, a label outside the label map, an empty list
    or label map) always raise; missing files (and, for rawframes, a folder without its last
    frame) are invalid samples: in training they raise at init, or are skipped with
    ``skip_invalid``; in test mode they, and clips that cannot be decoded, are scored as misses
    (see :class:`~mmllava.datasets.base.BaseLlavaDataset`), or raise with
    ``fail_on_invalid=True``.

    Args:
        ann_file (str): The list, relative to ``data_root`` unless absolute.
        label_map (str | Sequence[str]): The label map file (relative to ``data_root`` unless
            absolute; its names as words, :func:`~mmllava.datasets.label_map.read_label_map`), or
            the class names (taken as given).
        list_format (str): ``'videos'``, ``'rawframes'`` or ``'images'``.
        data_root (str): Root of ``ann_file``, ``label_map`` and ``img_prefix``.
        img_prefix (str): Folder the list's paths are relative to (``videos``, ``rawframes``,
            ``JPEGImages`` ...), relative to ``data_root`` unless absolute.
        question_mode (str): ``'closed'`` (the classes listed in the question) or ``'open'``.
        question (str, optional): The question; :data:`OPEN_QUESTION` when not given.
        pipeline (Sequence): Transforms (``LoadVisuals`` first).
        skip_invalid (bool): Skip samples whose files are missing instead of raising (in test
            mode they are scored as misses unless this is set).
        check_images (bool): Check at init that every file exists; for rawframes, that each
            folder holds the last frame its line counts (``img_{total_frames:05}.jpg``).
        rank_classes (bool): In test mode, give every sample the classes as answer candidates
            to rank by likelihood (top-k needs them). Defaults to True.
        filter_cfg (dict, optional): mmengine's filter: ``dict(classes=[names])`` keeps the
            samples of those classes only (labels stay those of the whole label map), e.g. to
            oversample hard classes with ``ConcatDataset`` and ``RepeatDataset``.
        **kwargs: Other :class:`BaseLlavaDataset` / mmengine ``BaseDataset`` arguments.
    """

    def __init__(self, ann_file: str, label_map: Union[str, Sequence[str]],
                 list_format: str = 'videos', data_root: str = '', img_prefix: str = '',
                 question_mode: str = 'closed', question: Optional[str] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (), skip_invalid: bool = False,
                 check_images: bool = True, rank_classes: bool = True, **kwargs):
        if list_format not in LIST_FORMATS:
            raise ValueError(f'list_format must be one of {LIST_FORMATS}, got {list_format!r}')
        self.list_format = list_format
        if isinstance(label_map, str):
            if data_root and not osp.isabs(label_map):
                label_map = osp.join(data_root, label_map)
            self.label_map = label_map
            self.class_names = read_label_map(label_map)
        else:
            self.label_map = None
            self.class_names = [str(name) for name in label_map]
            if not self.class_names:
                raise ValueError('ActionListDataset: the label map is empty')
        self.question_mode = question_mode
        self.rank_classes = rank_classes
        self.question = action_question(self.class_names, question_mode, question)
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         pipeline=pipeline, skip_invalid=skip_invalid,
                         check_images=check_images, metainfo=dict(classes=self.class_names),
                         **kwargs)
        self.pipeline = _LocatedCompose(self.pipeline.transforms)

    def filter_data(self) -> List[dict]:
        """Keep the samples of ``filter_cfg['classes']`` (all of them without it)."""
        cfg = dict(self.filter_cfg or {})
        classes = cfg.pop('classes', None)
        if cfg:
            raise ValueError(f'ActionListDataset: filter_cfg takes only "classes", got '
                             f'{sorted(cfg)}')
        if classes is None:
            return self.data_list
        if isinstance(classes, str):
            classes = [classes]
        unknown = [name for name in classes if name not in self.class_names]
        if unknown or not classes:
            raise ValueError(f'ActionListDataset ({self.ann_file}): filter_cfg classes '
                             f'{unknown or classes} are not in the label map '
                             f'{self.class_names}')
        keep = {self.class_names.index(name) for name in classes}
        kept = [record for record in self.data_list if record['label'] in keep]
        if not kept:
            raise ValueError(f'ActionListDataset ({self.ann_file}): no sample of the classes '
                             f'{list(classes)} (filter_cfg)')
        return kept

    def _missing(self, entry: ActionListEntry) -> Optional[str]:
        """Why an entry's file is unusable, or None."""
        full = self.image_path(entry.path)
        if self.list_format != 'rawframes':
            return None if osp.isfile(full) else f'file not found: {full!r}'
        if not osp.isdir(full):
            return f'rawframe folder not found: {full!r}'
        last = osp.join(full, RAWFRAME_TMPL.format(entry.total_frames))
        if not osp.isfile(last):
            return (f'rawframe folder {full!r} has fewer frames than the {entry.total_frames} '
                    f'its line says ({osp.basename(last)!r} is missing)')
        return None

    def load_records(self):
        """Read the list; yield a small raw record per line (see the class doc)."""
        label_map = self.label_map or 'given as class names'
        entries = read_action_list(self.ann_file, self.list_format, len(self.class_names),
                                   label_map)
        for entry in entries:
            record = llava_action_sample(entry, self.class_names, self.question,
                                         self.list_format)
            record.update(label=entry.label, list_line=entry.line,
                          modality_length=max(1, _count_words(record['conversations'])))
            if self.check_images:
                problem = self._missing(entry)
                if problem is not None:
                    yield record['id'], InvalidSampleError(
                        f'{self.ann_file}:{entry.line}: {problem}', MISSING_IMAGE, record)
                    continue
            yield record['id'], record

    def parse_record(self, record: dict) -> dict:
        """The pipeline's input dict of a raw record."""
        messages = from_llava_conversations(record['conversations'],
                                            training=not self.test_mode)
        info = dict(sample_id=record['id'], messages=messages, gt_label=record['label'],
                    list_file=self.ann_file, list_line=record['list_line'])
        if self.test_mode and self.rank_classes:
            info['answer_candidates'] = self.class_names
        if self.list_format == 'images':
            info.update(images=[self.image_path(record['image'])], videos=[])
        else:
            info.update(images=[], videos=[self.image_path(record['video'])],
                        total_frames=[record.get('total_frames')])
        return info
