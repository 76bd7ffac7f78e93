"""LLaVA instruction data (``llava_v1_5_mix665k.json`` and the like), read lazily.

The annotation file is a JSON list of records::

    {"id": "000000033471",
     "image": "coco/train2017/000000033471.jpg",      # a path, a list of paths, or absent
     "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                       {"from": "gpt", "value": "The bus is white and red."}, ...]}

Single-image, multi-image (``"image": [..]``) and text-only records may be mixed in one file.
Clips go in ``"video"`` (a path or a list: video files or rawframe folders, relative to the
same ``img_prefix``, with an optional ``"total_frames"`` for rawframe folders) and take
``<video>`` placeholders; images and clips mix in one record, each kind counted and ordered by
its placeholders (``LoadVisuals`` interleaves them).

Lazy: the dataset keeps the raw records (serialized by mmengine, so dataloader workers share
them) and turns one into messages only when it is asked for (:meth:`get_data_info`). At init it
only checks each record, cheaply: the conversation's shape, that the image files exist
(``os.path.exists``), that there is a ``gpt`` turn, and that the ``<image>`` placeholders match
the images.

``<image>`` placement follows the original's ``preprocess_multimodal``: in a single-image record
every turn that holds ``<image>`` has it moved to its front (``"<image>\\n" + rest``). Two points
differ, both so that no image and no placeholder is lost silently:

- A single-image record with no ``<image>`` in its text gets ``"<image>\\n"`` prepended to the
  first human turn (``prepend_missing_image=True``). The original loads such an image but its
  features never reach the LLM.
- A placeholder count unequal to the number of images is an error (the original collapses
  several ``<image>`` of a single-image record into one). Multi-image records keep their
  placeholders where they are (interleaved), one per image in order.

Bad records raise a ``ValueError`` naming the sample id, the annotation file and the image path
where relevant. With ``skip_invalid=True`` they are dropped instead, counted and logged, and
listed in :attr:`BaseLlavaDataset.skipped`; samples that fail later in the pipeline (e.g. a
conversation whose labels end up fully masked) are skipped for another random index, and each
such skip is logged and counted too.

Test mode is different: a sample whose image or clip is missing (at init) or cannot be read (in
the pipeline) becomes a miss to be scored, not an error (:mod:`~mmllava.datasets.invalid_samples`);
``fail_on_invalid=True`` restores the error at the first one.
"""
import os.path as osp
from typing import Callable, List, Sequence, Union

from mmllava.conversation import from_llava_conversations
from mmllava.registry import DATASETS
from mmllava.structures import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

from .base import (
    IMAGE_COUNT_MISMATCH,
    MALFORMED,
    MISSING_IMAGE,
    NO_GPT_TURN,
    BaseLlavaDataset,
    InvalidSampleError,
)


def _image_list(record: dict) -> List[str]:
    images = record.get('image')
    if images is None:
        return []
    if isinstance(images, str):
        return [images]
    if isinstance(images, (list, tuple)) and all(isinstance(p, str) for p in images):
        return list(images)
    raise ValueError(f'"image" must be a path or a list of paths, got {images!r}')


def _video_list(record: dict) -> List[str]:
    videos = record.get('video')
    if videos is None:
        return []
    if isinstance(videos, str):
        return [videos]
    if isinstance(videos, (list, tuple)) and all(isinstance(p, str) for p in videos):
        return list(videos)
    raise ValueError(f'"video" must be a path or a list of paths, got {videos!r}')


def _count_words(conversations) -> int:
    return sum(len(str(turn.get('value', '')).split()) for turn in conversations)


@DATASETS.register_module()
class LlavaInstructDataset(BaseLlavaDataset):
    """LLaVA instruction JSON: single-image, multi-image and text-only samples.

    See the module documentation for the format, ``<image>`` placement and validation.

    Each sample given to the pipeline holds:

    - ``sample_id``: the record's ``id`` (its index in the file when it has none).
    - ``images``: list of image paths (joined with ``img_prefix``), empty for text-only.
    - ``messages``: role/content dicts (:func:`~mmllava.conversation.from_llava_conversations`),
      ``<image>`` placed as described above.
    - ``modality_length``: the word count of the conversation, negative when text-only.
    - ``sample_idx``: the index in the dataset.

    Args:
        ann_file (str): The JSON file, relative to ``data_root`` unless absolute.
        data_root (str): Root of ``ann_file`` and ``img_prefix``.
        img_prefix (str): Image folder (the original's ``image_folder``).
        pipeline (Sequence): Transforms.
        skip_invalid (bool): Skip (count, log, list in :attr:`skipped`) invalid samples
            instead of raising.
        prepend_missing_image (bool): Give a single-image record without ``<image>`` one, at
            the front of its first human turn; otherwise that is a count mismatch.
        check_images (bool): Check at init that every image file exists.
        **kwargs: Other :class:`BaseLlavaDataset` / mmengine ``BaseDataset`` arguments.
    """

    def __init__(self, ann_file: str, data_root: str = '', img_prefix: str = '',
                 pipeline: Sequence[Union[dict, Callable]] = (), skip_invalid: bool = False,
                 prepend_missing_image: bool = True, check_images: bool = True, **kwargs):
        self.prepend_missing_image = prepend_missing_image
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         pipeline=pipeline, skip_invalid=skip_invalid,
                         check_images=check_images, **kwargs)

    def load_records(self):
        """Check each record of the JSON (see the module doc)."""
        data = self._read_json(self.ann_file)
        if not isinstance(data, list):
            raise ValueError(f'{self.ann_file!r}: a LLaVA instruction file is a JSON list of '
                             f'records, got {type(data).__name__}')
        for index, record in enumerate(data):
            sample_id = record.get('id', index) if isinstance(record, dict) else index
            try:
                yield sample_id, self._check(index, sample_id, record)
            except InvalidSampleError as e:
                yield sample_id, e

    def _check(self, index: int, sample_id, record) -> dict:
        if not isinstance(record, dict):
            self._invalid(sample_id, MALFORMED, f'a record must be a dict, got {record!r:.80}')
        try:
            images = _image_list(record)
            messages = from_llava_conversations(record.get('conversations'), training=False)
            videos = _video_list(record)
        except ValueError as e:
            self._invalid(sample_id, MALFORMED, str(e))
        missing = None  # (message, path) of the first missing file
        if self.check_images:
            for what, paths in (('image file not found', images), ('video not found', videos)):
                for full in map(self.image_path, paths):
                    if missing is None and not osp.exists(full):
                        missing = (what, full)
            if missing and not self.keeps_missing:
                self._invalid(sample_id, MISSING_IMAGE, *missing)
        if not self.test_mode and not any(m['role'] == 'assistant' for m in messages):
            self._invalid(sample_id, NO_GPT_TURN, 'conversations have no "gpt" turn: nothing '
                          'to train on')
        for tag, given, what in ((IMAGE_PLACEHOLDER, images, 'image'),
                                 (VIDEO_PLACEHOLDER, videos, 'video')):
            placeholders = sum(m['content'].count(tag) for m in messages)
            if placeholders != len(given) and not (
                    placeholders == 0 and len(given) == 1 and len(images) + len(videos) == 1
                    and self.prepend_missing_image):
                self._invalid(sample_id, IMAGE_COUNT_MISMATCH,
                              f'{placeholders} {tag} placeholder(s) in the conversations but '
                              f'{len(given)} {what}(s) {given}')
        length = max(1, _count_words(record['conversations']))
        record['modality_length'] = length if images or videos else -length
        record.setdefault('id', index)
        if missing:  # a miss to score (keeps_missing): the record is complete
            self._invalid(sample_id, MISSING_IMAGE, *missing, record=record)
        return record

    def parse_record(self, record: dict) -> dict:
        """Messages and image paths of a record (``<image>`` placed, see the module doc)."""
        images = _image_list(record)
        videos = _video_list(record)
        messages = from_llava_conversations(record['conversations'],
                                            training=not self.test_mode)
        if len(images) + len(videos) == 1:
            # The original's preprocess_multimodal: "<image>\n" first in its turn (and so
            # "<video>\n" for a clip).
            tag = IMAGE_PLACEHOLDER if images else VIDEO_PLACEHOLDER
            found = False
            for m in messages:
                if tag in m['content']:
                    rest = m['content'].replace(tag, '').strip()
                    m['content'] = f'{tag}\n{rest}'.strip()
                    found = True
            if not found:
                first = next(m for m in messages if m['role'] == 'user')
                first['content'] = f'{tag}\n{first["content"]}'
        info = dict(sample_id=record['id'], images=[self.image_path(p) for p in images],
                    messages=messages)
        if videos:
            info['videos'] = [self.image_path(p) for p in videos]
            if record.get('total_frames') is not None:  # rawframe folders, as their lists say
                info['total_frames'] = record['total_frames']
        return info
