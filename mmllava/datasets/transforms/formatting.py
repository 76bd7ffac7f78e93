"""Pack a transformed sample into the ``inputs`` / ``data_samples`` pair the model takes."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from mmllava.registry import TRANSFORMS


def _to_long_tensor(value, key: str, sample_id) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    if tensor.ndim != 1:
        raise ValueError(f'PackLlavaInputs: sample {sample_id!r}: {key} must be 1-D, '
                         f'got shape {tuple(tensor.shape)}')
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f'PackLlavaInputs: sample {sample_id!r}: {key} must hold integers, '
                        f'got {tensor.dtype}')
    return tensor.to(torch.long)


@TRANSFORMS.register_module()
class PackLlavaInputs(BaseTransform):
    """Pack token ids, labels and images into tensors, and the rest into a ``DataSample``.

    Required keys: ``input_ids``. Optional keys: ``labels``, ``images`` (list of (H, W, 3)
    uint8 arrays, all of one size), the ``meta_keys`` and ``gt_keys``.

    Output:

    - ``inputs`` (dict):

      - ``input_ids``: LongTensor (L,), the token ids (image placeholders included).
      - ``labels``: LongTensor (L,), only when ``results`` has ``labels``.
      - ``images``: uint8 tensor (K, 3, H, W), the sample's K images in prompt order; the key
        is omitted when the sample has no image (text-only), so batches never have to stack
        empty tensors of a made-up size. With clips, the frames of all visuals, flat.
      - ``visual_frames``: LongTensor (V,), frames per visual (1 for an image), only when
        ``results`` has ``visual_frames`` (set by ``LoadVisuals``).
      - ``image_sizes``: LongTensor (V, 2), per visual the original (H, W) of an anyres image
        and zeros for the others, only when ``results`` has ``image_sizes`` (``AnyresTiles``).

    - ``data_samples`` (:class:`mmpretrain.structures.DataSample`): metainfo from the
      ``meta_keys`` present in ``results``; the ``gt_keys`` present as data fields
      (``gt_label`` through ``set_gt_label``, so it becomes a label tensor as mmpretrain's
      metrics expect).

    ``invalid_sample`` (a test-mode miss's reason, see :mod:`mmllava.datasets.invalid_samples`)
    is among the default ``meta_keys``: the model skips such samples and the metrics count them.

    Args:
        meta_keys (Sequence[str]): keys copied into the data sample's metainfo when present.
        gt_keys (Sequence[str]): ground-truth keys set as data fields when present.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('sample_id', 'question_id', 'image_id', 'prompt',
                                             'question', 'answer_type', 'choices', 'category',
                                             'img_paths', 'ori_shapes', 'img_shapes',
                                             'invalid_sample', 'answer_candidates',
                                             'candidate_ids'),
                 gt_keys: Sequence[str] = ('gt_answer', 'gt_caption', 'gt_label')):
        self.meta_keys = tuple(meta_keys)
        self.gt_keys = tuple(gt_keys)

    @staticmethod
    def _pack_images(images, sample_id) -> torch.Tensor:
        arrays = []
        for i, image in enumerate(images):
            image = image.numpy() if torch.is_tensor(image) else np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise TypeError(f'PackLlavaInputs: sample {sample_id!r}, image #{i}: expected an '
                                f'(H, W, 3) uint8 array, got {image.dtype} {image.shape}')
            arrays.append(image)
        shapes = sorted({im.shape[:2] for im in arrays})
        if len(shapes) > 1:
            raise ValueError(f'PackLlavaInputs: sample {sample_id!r}: all images must have the '
                             f'same size to be stacked, got (h, w) {shapes}; resize and crop '
                             'them first (e.g. CLIPResizeCrop)')
        stacked = np.stack(arrays)  # (K, H, W, 3)
        return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``dict(inputs=..., data_samples=...)``."""
        sample_id = results.get('sample_id')
        if 'input_ids' not in results:
            raise KeyError(f'PackLlavaInputs: sample {sample_id!r} has no input_ids '
                           '(run TokenizeConversation first)')
        inputs = {'input_ids': _to_long_tensor(results['input_ids'], 'input_ids', sample_id)}
        if results.get('labels') is not None:
            labels = _to_long_tensor(results['labels'], 'labels', sample_id)
            if labels.shape != inputs['input_ids'].shape:
                raise ValueError(f'PackLlavaInputs: sample {sample_id!r}: labels {labels.shape} '
                                 f'and input_ids {inputs["input_ids"].shape} differ in length')
            inputs['labels'] = labels
        images = results.get('images')
        if images is not None and len(images):
            inputs['images'] = self._pack_images(images, sample_id)
        if results.get('visual_frames') is not None and len(results['visual_frames']):
            frames = _to_long_tensor(results['visual_frames'], 'visual_frames', sample_id)
            if int(frames.sum()) != len(inputs.get('images', ())):
                raise ValueError(f'PackLlavaInputs: sample {sample_id!r}: visual_frames '
                                 f'{frames.tolist()} do not sum to the '
                                 f'{len(inputs.get("images", ()))} frames')
            inputs['visual_frames'] = frames
        if results.get('image_sizes') is not None and len(results['image_sizes']):
            sizes = torch.as_tensor(np.asarray(results['image_sizes'], dtype=np.int64))
            count = len(inputs.get('visual_frames', ()))
            if sizes.ndim != 2 or sizes.shape != (count, 2):
                raise ValueError(f'PackLlavaInputs: sample {sample_id!r}: image_sizes must be '
                                 f'one (H, W) per visual ({count}), got shape '
                                 f'{tuple(sizes.shape)}')
            inputs['image_sizes'] = sizes

        data_sample = DataSample()
        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        for key in self.gt_keys:
            if key not in results or results[key] is None:
                continue
            if key == 'gt_label':
                data_sample.set_gt_label(results[key])
            else:
                data_sample.set_field(results[key], key, field_type='data')
        return {'inputs': inputs, 'data_samples': data_sample}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(meta_keys={self.meta_keys}, '
                f'gt_keys={self.gt_keys})')
