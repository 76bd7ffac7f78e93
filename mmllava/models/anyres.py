"""LLaVA-NeXT's anyres feature merge: base view + stitched tiles, unpadded, a newline per row.

The geometry (grid, unpadded size, token count) is :mod:`mmllava.structures.anyres`, shared
with the pipeline that expands ``<image>``; this module applies it to features, as
LLaVA-NeXT's ``llava_arch.py`` (``spatial_unpad``) and transformers' ``pack_image_features`` of
``LlavaNextModel`` and ``LlavaOnevisionModel`` do.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from mmllava.structures.anyres import Size, anyres_grid, unpadded_size


def pack_anyres_features(features: torch.Tensor, image_size: Size,
                         resolutions: Sequence[Sequence[int]], tile_size: int,
                         newline: Optional[torch.Tensor] = None,
                         max_num_tiles: Optional[int] = None) -> torch.Tensor:
    """One anyres image's features as the LLM reads them.

    Args:
        features (Tensor): ``(1 + rows * cols, side * side, C)``: the base view's features,
            then the tiles' in row-major order (the processor's order), ``side`` patches a
            tile side. Or ``(1, tokens, C)``, an image given as its base view alone (OneVision's
            images of a multi-image sample): those tokens and the newline, as transformers.
        image_size (tuple[int, int]): The original image's (height, width).
        resolutions: ``image_grid_pinpoints``, each (height, width).
        tile_size (int): Pixels of a tile side (the tower's input size).
        newline (Tensor, optional): ``(C,)``, the learned ``image_newline`` that ends each row
            of the stitched map; none is added without it.
        max_num_tiles (int, optional): OneVision's ``anyres_max_N``: a map of more than about
            N tiles' features (ratio above 1.1) is resized down bilinearly by that ratio.

    Returns:
        Tensor: ``(tokens, C)``, as many as :func:`~mmllava.structures.anyres.anyres_num_tokens`
        counts (newline included).

    Raises:
        ValueError: ``features`` does not hold the base view and the grid's tiles.
    """
    count, tokens, channels = features.shape
    if count == 1:
        if newline is None:
            return features[0]
        return torch.cat((features[0], newline.to(features)[None]), dim=0)
    rows, cols = anyres_grid(image_size, resolutions, tile_size)
    side = math.isqrt(tokens)
    if side * side != tokens or count != 1 + rows * cols:
        raise ValueError(f'an anyres image of {image_size[0]}x{image_size[1]} needs the base '
                         f'view and {rows}x{cols} tiles of square feature maps, got features '
                         f'{tuple(features.shape)}')
    base, tiles = features[0], features[1:]
    # (rows, cols, side, side, C) -> (C, rows * side, cols * side): the tiles stitched.
    grid = tiles.view(rows, cols, side, side, channels).permute(4, 0, 2, 1, 3)
    grid = grid.reshape(channels, rows * side, cols * side)
    height, width = unpadded_size(image_size, (rows * side, cols * side))
    top, left = (rows * side - height) // 2, (cols * side - width) // 2
    grid = grid[:, top:top + height, left:left + width]
    if max_num_tiles is not None:
        ratio = math.sqrt(height * width / (max_num_tiles * side ** 2))
        if ratio > 1.1:
            size = [int(height // ratio), int(width // ratio)]
            grid = F.interpolate(grid[None], size, mode='bilinear')[0]
    if newline is not None:
        ends = newline.to(grid)[:, None, None].expand(channels, grid.shape[1], 1)
        grid = torch.cat((grid, ends), dim=-1)
    return torch.cat((base, grid.flatten(1, 2).transpose(0, 1)), dim=0)
