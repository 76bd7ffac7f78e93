"""COCO captions in the Karpathy split JSON (LAVIS / mmpretrain ``coco_karpathy_*.json``)."""
import os.path as osp
import re
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Callable, Sequence, Union

from mmllava.registry import DATASETS
from mmllava.structures import IMAGE_PLACEHOLDER

from .base import MALFORMED, MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError

# The LLaVA-1.5 short caption prompt (as configs/llava/llava-7b-v1.5_caption.py).
CAPTION_PROMPT = '<image>\nProvide a one-sentence caption for the provided image.'


def _image_id(record: dict):
    # "coco_391895" in the train file, absent in some copies: then the file name's number,
    # as mmpretrain's COCOCaption (COCO_val2014_000000391895.jpg -> 391895).
    image_id = record.get('image_id')
    if image_id is None:
        image_id = Path(record['image']).stem.split('_')[-1]
    if isinstance(image_id, str):
        digits = re.findall(r'\d+', image_id)
        if digits:
            return int(digits[-1])
    return image_id


@DATASETS.register_module()
class COCOCaptionDataset(BaseLlavaDataset):
    """COCO captions (Karpathy JSON) as LLaVA conversations.

    The file is a list of ``{"image": "val2014/COCO_val2014_000000391895.jpg", "caption": str
    or [str, ...], "image_id": "coco_391895" (optional)}``; the train file has one record per
    caption, the val/test files one per image with a list of captions.

    Training (``test_mode=False``): one sample per caption, the conversation
    ``[human: prompt, gpt: caption]`` (feature alignment with the ``plain`` template, which
    keeps only ``<image>`` and the caption). Testing: one sample per image, its captions in
    ``gt_caption``, the conversation only the prompt.

    Each sample holds ``sample_id`` (``"{image_id}"`` or ``"{image_id}_{k}"`` for the k-th
    caption), ``image_id`` (int where the id has digits), ``images`` ([path]), ``messages``,
    ``modality_length`` and, in test mode, ``gt_caption`` (list[str]).

    Args:
        ann_file (str): The Karpathy JSON, relative to ``data_root`` unless absolute.
        data_root (str): Root of ``ann_file`` and ``img_prefix``.
        img_prefix (str): The folder the ``image`` paths are relative to (the COCO root).
        prompt (str): The human turn; holds ``<image>``.
        pipeline (Sequence): Transforms.
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments
            (``skip_invalid``, ``check_images``, ``test_mode`` ...).
    """

    def __init__(self, ann_file: str, data_root: str = '', img_prefix: str = '',
                 prompt: str = CAPTION_PROMPT,
                 pipeline: Sequence[Union[dict, Callable]] = (), **kwargs):
        if IMAGE_PLACEHOLDER not in prompt:
            raise ValueError(f'The caption prompt must hold <image>, got {prompt!r}')
        self.prompt = prompt
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         pipeline=pipeline, **kwargs)

    def load_records(self):
        """One record per caption (training) or per image (test)."""
        data = self._read_json(self.ann_file)
        if not isinstance(data, list):
            raise ValueError(f'{self.ann_file!r}: a Karpathy caption file is a JSON list, '
                             f'got {type(data).__name__}')
        by_image = OrderedDict()
        exists, seen = {}, Counter()
        prompt_words = len(self.prompt.split())
        for index, ann in enumerate(data):
            try:
                if not isinstance(ann, dict) or not isinstance(ann.get('image'), str):
                    self._invalid(index, MALFORMED, 'a record needs an "image" path')
                captions = ann.get('caption')
                captions = [captions] if isinstance(captions, str) else captions
                if (not isinstance(captions, list) or not captions
                        or not all(isinstance(c, str) and c.strip() for c in captions)):
                    self._invalid(index, MALFORMED, f'bad "caption": {ann.get("caption")!r}')
                image_id = _image_id(ann)
                path = self.image_path(ann['image'])
                if self.check_images:
                    if path not in exists:
                        exists[path] = osp.exists(path)
                    if not exists[path] and not self.keeps_missing:
                        self._invalid(image_id, MISSING_IMAGE, 'image file not found', path)
            except InvalidSampleError as e:
                yield index, e
                continue
            if self.test_mode:
                entry = by_image.setdefault(ann['image'], dict(image=ann['image'],
                                                               image_id=image_id, caption=[]))
                entry['caption'].extend(captions)
                continue
            for caption in captions:
                # The k-th caption of this image in the file (the train file spreads them).
                sample_id = f'{image_id}_{seen[image_id]}'
                seen[image_id] += 1
                yield sample_id, dict(
                    id=sample_id, image=ann['image'], image_id=image_id, caption=caption,
                    modality_length=prompt_words + len(caption.split()))
        for entry in by_image.values():
            entry.update(id=str(entry['image_id']), modality_length=prompt_words)
            path = self.image_path(entry['image'])
            if self.check_images and not exists.get(path, True):  # a miss to score
                try:
                    self._invalid(entry['id'], MISSING_IMAGE, 'image file not found', path,
                                  record=entry)
                except InvalidSampleError as e:
                    yield entry['id'], e
                    continue
            yield entry['id'], entry

    def parse_record(self, record: dict) -> dict:
        """The caption conversation of a record."""
        info = dict(sample_id=record['id'], image_id=record['image_id'],
                    images=[self.image_path(record['image'])])
        if self.test_mode:
            info['messages'] = [dict(role='user', content=self.prompt)]
            info['gt_caption'] = list(record['caption'])
        else:
            info['messages'] = [dict(role='user', content=self.prompt),
                                dict(role='assistant', content=record['caption'])]
        return info
