"""LLaVA-NeXT "anyres" geometry: the tile grid of an image and the tokens it becomes.

LLaVA-1.6 and OneVision encode an image as its resized base view plus the tiles of the
best-fitting grid resolution (``image_grid_pinpoints``); the tiles' features are stitched,
cropped back to the image's aspect ratio (``spatial_unpad``) and end each row with an
``image_newline`` token. How many placeholder tokens an image needs therefore depends on its
size. The pipeline (which expands ``<image>``) and the model (which scatters the features)
must agree exactly, so both count with these functions; they follow LLaVA-NeXT's
``llava_arch.py`` (``get_anyres_image_grid_shape``, ``unpad_image``) as transformers'
processors do, and are tested against those processors.

A base module (the standard library only), so datasets and models share it.
"""
import math
from typing import Optional, Sequence, Tuple

Size = Tuple[int, int]  # (height, width)


def select_best_resolution(image_size: Size, resolutions: Sequence[Sequence[int]]) -> Size:
    """The grid resolution an image is tiled at: the most of its pixels kept, then the least
    padding (LLaVA-NeXT's ``select_best_resolution``; the first wins a full tie).

    Args:
        image_size (tuple[int, int]): The image's (height, width).
        resolutions: The candidates, each (height, width) (``image_grid_pinpoints``).

    Returns:
        tuple[int, int]: The chosen (height, width).

    Raises:
        ValueError: No candidates, or a size that is not positive.
    """
    height, width = image_size
    if height <= 0 or width <= 0:
        raise ValueError(f'an image size must be positive, got {image_size!r}')
    if not resolutions:
        raise ValueError('image_grid_pinpoints is empty: give at least one (height, width)')
    best, best_kept, best_wasted = None, 0, math.inf
    for res_h, res_w in resolutions:
        scale = min(res_w / width, res_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        wasted = res_w * res_h - kept
        if kept > best_kept or (kept == best_kept and wasted < best_wasted):
            best, best_kept, best_wasted = (int(res_h), int(res_w)), kept, wasted
    return best


def anyres_grid(image_size: Size, resolutions: Sequence[Sequence[int]], tile_size: int) -> Size:
    """(rows, columns) of tiles of ``tile_size`` pixels the image is cut into."""
    res_h, res_w = select_best_resolution(image_size, resolutions)
    return res_h // tile_size, res_w // tile_size


def unpadded_size(image_size: Size, feature_size: Size) -> Size:
    """The (height, width) of a stitched feature map once the padding of the resize-and-pad
    is cropped away (LLaVA-NeXT's ``unpad_image``, as transformers' processors count it).

    Args:
        image_size (tuple[int, int]): The original image's (height, width).
        feature_size (tuple[int, int]): The stitched grid's (height, width) in patches.
    """
    height, width = image_size
    cur_h, cur_w = feature_size
    if width / height > cur_w / cur_h:  # wider than the grid: rows of padding above and below
        new_h = int(round(height * (cur_w / width), 7))
        cur_h -= (cur_h - new_h) // 2 * 2
    else:
        new_w = int(round(width * (cur_h / height), 7))
        cur_w -= (cur_w - new_w) // 2 * 2
    return cur_h, cur_w


def anyres_num_tokens(image_size: Size, resolutions: Sequence[Sequence[int]], tile_size: int,
                      patches_per_side: int, base_tokens: Optional[int] = None,
                      max_num_tiles: Optional[int] = None) -> int:
    """Placeholder tokens of one anyres image: the base view, the unpadded tiles, a newline
    token per row of them.

    Args:
        image_size (tuple[int, int]): The image's (height, width) before any processing.
        resolutions: ``image_grid_pinpoints``, each (height, width).
        tile_size (int): Pixels of a tile side (the vision tower's input size, 336 / 384).
        patches_per_side (int): Feature-map side of one tile (24 for CLIP-L/14-336, 27 for
            SigLIP-so400m-384).
        base_tokens (int, optional): Tokens of the base view; ``patches_per_side ** 2`` by
            default (a tower that keeps its CLS token adds one: LLaVA-1.6 with ``full``).
        max_num_tiles (int, optional): OneVision's ``anyres_max_N``: a stitched map of more
            than about N tiles' features (ratio above 1.1) is downsampled by that ratio.

    Returns:
        int: The count.
    """
    rows, cols = anyres_grid(image_size, resolutions, tile_size)
    cur_h, cur_w = unpadded_size(image_size, (rows * patches_per_side, cols * patches_per_side))
    if max_num_tiles is not None:
        ratio = math.sqrt(cur_h * cur_w / (max_num_tiles * patches_per_side ** 2))
        if ratio > 1.1:
            cur_h, cur_w = int(cur_h // ratio), int(cur_w // ratio)
    base = patches_per_side ** 2 if base_tokens is None else base_tokens
    return base + cur_h * cur_w + cur_h
