"""From pixels to the features scattered into a prompt: images, anyres images and clips.

One visual of the batch is one of:

- an image of one frame: its tokens as the tower and projector give them (LLaVA-1.5); with
  anyres on, followed by ``image_newline`` (OneVision's images of a multi-image sample);
- an anyres image (its ``image_sizes`` row is its original (H, W)): the base view and the
  tiles, merged by :func:`~mmllava.models.anyres.pack_anyres_features` (LLaVA-1.6, OneVision);
- a clip (more than one frame, no size): its frames pooled (:mod:`mmllava.models.video`),
  then ``image_newline`` when the pooling asks for it (OneVision).

The pipeline counts the same tokens through :mod:`mmllava.structures` (``AnyresTiles``,
``LoadVisuals``), and :meth:`LlavaVisualsMixin.embed_inputs` checks that the two agree.
"""
from typing import List, Optional, Sequence

import torch
from torch import nn

from mmllava.structures.visual_tokens import grid_side

from .anyres import pack_anyres_features
from .video import frame_position_embedding

ANYRES_KEYS = ('image_grid_pinpoints', 'tile_size', 'patches_per_side', 'base_tokens',
               'max_num_tiles')


def check_anyres(cfg: Optional[dict]) -> Optional[dict]:
    """The model's ``anyres`` config with its pinpoints as tuples; a clear error on a bad one."""
    if cfg is None:
        return None
    unknown = set(cfg) - set(ANYRES_KEYS)
    if unknown or 'image_grid_pinpoints' not in cfg or 'tile_size' not in cfg:
        raise ValueError(f'anyres takes image_grid_pinpoints and tile_size (required), '
                         f'patches_per_side, base_tokens, max_num_tiles; got {sorted(cfg)}')
    cfg = dict(cfg)
    cfg['image_grid_pinpoints'] = [tuple(int(v) for v in p) for p in cfg['image_grid_pinpoints']]
    return cfg


def _sizes(image_sizes, count: int) -> List[Optional[tuple]]:
    """Per visual the original (H, W) of an anyres image, None for the others (zeros)."""
    if image_sizes is None:
        return [None] * count
    rows = [tuple(int(v) for v in row) for row in torch.as_tensor(image_sizes).reshape(-1, 2)]
    if len(rows) != count:
        raise ValueError(f'image_sizes has {len(rows)} rows but the batch has {count} visuals '
                         '(one row per visual, zeros for those that are not anyres images)')
    return [row if min(row) > 0 else None for row in rows]


class LlavaVisualsMixin:
    """Encoding and scattering of visuals for :class:`~mmllava.models.Llava`.

    Needs ``vision_tower``, ``projector``, ``llm``, ``video_pooling``, ``frame_position_scale``,
    ``anyres`` (a dict or None), ``image_newline`` (a parameter or None) and
    ``image_token_index`` on the model.
    """

    def _build_image_newline(self, hidden_size: int) -> None:
        """``image_newline`` when anyres or the clip pooling needs it (init as LLaVA-NeXT)."""
        needed = self.anyres is not None or getattr(self.video_pooling, 'newline', False)
        self.image_newline = nn.Parameter(torch.randn(hidden_size) * hidden_size ** -0.5) \
            if needed else None

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision encoder + projector: (N, 3, H, W) -> (N, num_image_tokens, llm_hidden)."""
        return self.projector(self.vision_tower(pixel_values))

    def encode_visuals(self, pixel_values: torch.Tensor, visual_frames: Sequence[int],
                       image_sizes=None) -> torch.Tensor:
        """Encode all frames in one batch, then merge each visual's frames into its tokens.

        Args:
            pixel_values (Tensor): (F, 3, H, W), the frames of all visuals, in order.
            visual_frames (Sequence[int]): Frames per visual (1 for an image); sums to F.
            image_sizes (Tensor | list, optional): (V, 2), per visual the original (H, W) of
                an anyres image (its frames are the base view and the tiles), zeros for the
                other visuals.

        Returns:
            Tensor: (K, llm_hidden), the tokens of all visuals concatenated in order.
        """
        visual_frames = [int(f) for f in visual_frames]
        if sum(visual_frames) != len(pixel_values) or min(visual_frames, default=1) < 1:
            raise ValueError(f'visual_frames {visual_frames} (sum {sum(visual_frames)}) do not '
                             f'match the {len(pixel_values)} frames given')
        sizes = _sizes(image_sizes, len(visual_frames))
        if any(s is not None for s in sizes) and self.anyres is None:
            raise ValueError('the batch holds anyres images (image_sizes) but the model has no '
                             'anyres config')
        pool_first = getattr(self.video_pooling, 'stage', 'projector') == 'vision'
        if pool_first:  # clips pooled on the tower's features, then projected (NeXT-Video)
            vision = self.vision_tower(pixel_values).split(visual_frames)
            features = [self.projector(self.video_pooling(v)) if len(v) > 1 and s is None
                        else self.projector(v) for v, s in zip(vision, sizes)]
        else:
            features = self.encode_images(pixel_values).split(visual_frames)
        return torch.cat([self._merge(f, s) for f, s in zip(features, sizes)])

    def _merge(self, frames: torch.Tensor, size: Optional[tuple]) -> torch.Tensor:
        """One visual's tokens from its projected frames (see the module doc)."""
        if frames.ndim == 2:  # a clip pooled before the projector
            tokens = frames
        elif size is not None or (len(frames) == 1 and self.anyres is not None):
            cfg = self.anyres
            return pack_anyres_features(frames, size, cfg['image_grid_pinpoints'],
                                        cfg['tile_size'], self.image_newline,
                                        cfg.get('max_num_tiles'))
        elif len(frames) == 1:
            return frames[0]
        else:
            if self.frame_position_scale:
                pe = frame_position_embedding(len(frames), frames.shape[-1], frames.device,
                                              frames.dtype)
                frames = frames + self.frame_position_scale * pe[:, None]
            tokens = self.video_pooling(frames)
        newline = getattr(self.video_pooling, 'newline', False)
        if newline == 'one_token':
            tokens = torch.cat((tokens, self.image_newline.to(tokens)[None]))
        elif newline == 'grid':  # one at the end of each row of each frame (LLaVA-NeXT repo)
            side = grid_side(len(tokens) // len(frames))
            rows = tokens.reshape(len(frames) * side, side, -1)
            ends = self.image_newline.to(tokens)[None, None].expand(len(rows), 1, -1)
            tokens = torch.cat((rows, ends), dim=1).flatten(0, 1)
        return tokens

    def embed_inputs(self, input_ids: torch.Tensor,
                     pixel_values: Optional[torch.Tensor] = None,
                     visual_frames: Optional[Sequence[int]] = None,
                     image_sizes=None) -> torch.Tensor:
        """Embed token ids and scatter visual features into the placeholder positions.

        Args:
            input_ids (Tensor): (B, L) ids with ``image_token_index`` placeholders.
            pixel_values (Tensor, optional): (N, 3, H, W), the batch's images (or frames) in
                the order their placeholders appear (row by row).
            visual_frames (Sequence[int], optional): Frames per visual over the whole batch in
                order (1 for an image); ``None`` when every visual is an image of one frame.
            image_sizes (Tensor, optional): (V, 2) per visual, as :meth:`encode_visuals`.

        Returns:
            Tensor: (B, L, hidden) input embeddings.
        """
        placeholder = input_ids == self.image_token_index
        embed = self.llm.get_input_embeddings()
        # The placeholder lies outside the vocabulary: look up any valid id, then overwrite.
        embeds = embed(input_ids.masked_fill(placeholder, 0))
        num_slots = int(placeholder.sum())
        if pixel_values is None or len(pixel_values) == 0:
            if num_slots:
                raise ValueError(f'The token ids hold {num_slots} image placeholders but no '
                                 'images were given')
            return embeds
        if visual_frames is None:
            visual_frames = [1] * len(pixel_values)
        features = self.encode_visuals(pixel_values, visual_frames, image_sizes)
        if features.shape[0] != num_slots:
            raise ValueError(
                f'{len(pixel_values)} frames give {features.shape[0]} visual tokens '
                f'({self.num_image_tokens} a frame, clips pooled by {self.video_pooling}, '
                f'anyres {self.anyres}), but the token ids hold {num_slots} placeholders: '
                'each <image>/<video> must expand to the count of the pipeline, which must '
                'be configured as the model (AnyresTiles, LoadVisuals video_pooling)')
        return embeds.masked_scatter(placeholder.unsqueeze(-1), features.to(embeds.dtype))
