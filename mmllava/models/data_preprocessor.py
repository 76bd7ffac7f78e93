"""Batches packed LLaVA samples: normalizes images, pads token ids, builds attention masks."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmllava.registry import MODELS
from mmllava.structures import CLIP_MEAN, CLIP_STD, IGNORE_INDEX


def pad_sequences(seqs: Sequence[torch.Tensor], value: int, side: str) -> torch.Tensor:
    """Pad 1-D tensors to a (B, L) tensor on the ``'left'`` or ``'right'``."""
    length = max(len(s) for s in seqs)
    out = seqs[0].new_full((len(seqs), length), value)
    for i, s in enumerate(seqs):
        if side == 'left':
            out[i, length - len(s):] = s
        else:
            out[i, :len(s)] = s
    return out



def normalize_pixels(images: torch.Tensor, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Normalize uint8 images as transformers' CLIP processor: ``(x / 255 - mean) / std``.

    Computed in float32 in that order. ``x / 255`` in float32 equals transformers'
    ``float32(float64(x) * (1 / 255))`` for every byte value; ``x * (1 / 255)`` in float32 does
    not (it is one ulp off for about half of them).

    Args:
        images (Tensor): uint8 images, (..., 3, H, W), e.g. (N, 3, H, W).
        mean (Sequence[float] | Tensor): per-channel mean in [0, 1].
        std (Sequence[float] | Tensor): per-channel std in [0, 1].

    Returns:
        Tensor: float32 tensor of the same shape, on the images' device.
    """
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return (images.to(torch.float32) / 255 - mean) / std


@MODELS.register_module()
class LlavaDataPreprocessor(BaseDataPreprocessor):
    """Collates ``PackLlavaInputs`` outputs into model inputs.

    Training batches are padded on the right; evaluation/prediction batches on the left, as
    batched generation needs.

    Args:
        mean (Sequence[float]): Image mean in [0, 1] (CLIP's by default).
        std (Sequence[float]): Image std in [0, 1].
        pad_token_id (int): Id written into padded positions (masked out anyway).
        train_padding_side (str): ``'right'`` by default.
        test_padding_side (str): ``'left'`` by default.
    """

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                 pad_token_id: int = 0, train_padding_side: str = 'right',
                 test_padding_side: str = 'left', non_blocking: bool = False):
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32), False)
        self.pad_token_id = pad_token_id
        self.train_padding_side = train_padding_side
        self.test_padding_side = test_padding_side

    def forward(self, data: dict, training: bool = False) -> dict:
        """Collate a list of packed samples (or an already batched dict).

        Returns:
            dict: ``inputs`` (``input_ids``, ``attention_mask``, ``pixel_values``, and
            ``labels`` when present; ``visual_frames``, a flat list of frames per visual in
            batch order, when a sample holds a clip; ``image_sizes``, (V, 2) per visual of the
            batch, when a sample holds anyres images) and ``data_samples``.
        """
        inputs = data['inputs']
        data_samples = data.get('data_samples')
        if isinstance(inputs, dict):  # already a batch (e.g. built by the inferencer)
            inputs = [dict(zip(inputs, vals)) for vals in zip(*inputs.values())]
        side = self.train_padding_side if training else self.test_padding_side
        ids = [torch.as_tensor(s['input_ids'], dtype=torch.long) for s in inputs]
        batch = dict(
            input_ids=pad_sequences(ids, self.pad_token_id, side),
            attention_mask=pad_sequences([torch.ones_like(i) for i in ids], 0, side))
        if all('labels' in s for s in inputs):
            labels = [torch.as_tensor(s['labels'], dtype=torch.long) for s in inputs]
            batch['labels'] = pad_sequences(labels, IGNORE_INDEX, side)
        images = [s['images'] for s in inputs if s.get('images') is not None and len(s['images'])]
        batch['pixel_values'] = self._images(images)
        if any(s.get('visual_frames') is not None for s in inputs):
            batch['visual_frames'] = self._visual_frames(inputs)
        if any(s.get('image_sizes') is not None for s in inputs):
            batch['image_sizes'] = self._image_sizes(inputs)
        batch = self.cast_data(batch)
        if batch['pixel_values'] is not None:
            batch['pixel_values'] = normalize_pixels(batch['pixel_values'], self.mean, self.std)
        return dict(inputs=batch, data_samples=data_samples)

    @staticmethod
    def _images(images: list) -> Optional[torch.Tensor]:
        if not images:
            return None
        shapes = {tuple(im.shape[-3:]) for im in images}
        if len(shapes) > 1:
            raise ValueError(f'All images in a batch must share one shape, got {sorted(shapes)}')
        return torch.cat([torch.as_tensor(im) for im in images])

    @staticmethod
    def _visual_frames(inputs: list) -> list:
        # Samples packed without ``visual_frames`` hold images only: one frame per visual.
        frames = []
        for s in inputs:
            if s.get('visual_frames') is not None:
                frames += [int(f) for f in s['visual_frames']]
            elif s.get('images') is not None:
                frames += [1] * len(s['images'])
        return frames

    @staticmethod
    def _image_sizes(inputs: list) -> torch.Tensor:
        # Per visual of the batch; zeros for the visuals of samples without anyres images.
        rows = []
        for s in inputs:
            if s.get('image_sizes') is not None:
                rows.append(torch.as_tensor(s['image_sizes'], dtype=torch.long).reshape(-1, 2))
            else:
                frames, images = s.get('visual_frames'), s.get('images')
                count = len(frames) if frames is not None else \
                    (0 if images is None else len(images))
                rows.append(torch.zeros(count, 2, dtype=torch.long))
        return torch.cat(rows)
