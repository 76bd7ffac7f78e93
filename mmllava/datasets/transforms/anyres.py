"""LLaVA-NeXT / OneVision "anyres" image tiles: each image becomes its base view plus tiles.

Parity reference: transformers' PIL processors ``LlavaNextImageProcessorPil`` and
``LlavaOnevisionImageProcessorPil`` (their ``get_image_patches``). The image is resized with
PIL's BICUBIC filter, keeping its aspect ratio, to fit the best grid resolution
(:func:`~mmllava.structures.anyres.select_best_resolution`). It is pasted centred on black, and
cut into ``tile_size`` tiles in row-major order. The base view is the whole image resized to
``tile_size`` square, without keeping its aspect ratio. The frames stay uint8, and the data
preprocessor normalizes them as every other frame. A ``CLIPResizeCrop`` of ``tile_size`` after
this transform changes nothing.
"""
import math
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image

from mmllava.registry import TRANSFORMS
from mmllava.structures.anyres import anyres_num_tokens, select_best_resolution

from .processing import expand_to_square


def anyres_tiles(image: np.ndarray, resolutions: Sequence[Sequence[int]],
                 tile_size: int) -> List[np.ndarray]:
    """The base view, then the tiles, of one (H, W, 3) uint8 image, each ``tile_size`` square."""
    height, width = image.shape[:2]
    best_h, best_w = select_best_resolution((height, width), resolutions)
    # transformers' get_patch_output_size: the side that limits is filled, the other rounded up.
    if best_w / width < best_h / height:
        new_h, new_w = min(math.ceil(height * best_w / width), best_h), best_w
    else:
        new_h, new_w = best_h, min(math.ceil(width * best_h / height), best_w)
    picture = Image.fromarray(image)
    resized = np.array(picture.resize((new_w, new_h), resample=Image.Resampling.BICUBIC))
    canvas = np.zeros((best_h, best_w, 3), dtype=np.uint8)
    top, left = (best_h - new_h) // 2, (best_w - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    tiles = [np.ascontiguousarray(canvas[y:y + tile_size, x:x + tile_size])
             for y in range(0, best_h, tile_size) for x in range(0, best_w, tile_size)]
    base = np.array(picture.resize((tile_size, tile_size), resample=Image.Resampling.BICUBIC))
    return [base] + tiles


@TRANSFORMS.register_module()
class AnyresTiles(BaseTransform):
    """Cut each image of a sample into LLaVA-NeXT's base view + grid tiles (clips unchanged).

    Runs after :class:`~mmllava.datasets.transforms.LoadVisuals`. Each image visual of 1 frame
    becomes ``1 + rows * cols`` frames. Its placeholder count becomes the anyres count
    (:func:`~mmllava.structures.anyres.anyres_num_tokens`), so that ``TokenizeConversation``
    expands its ``<image>`` to exactly the tokens the model's feature merge gives.

    With ``multi_image='pad'`` (OneVision), the images of a sample holding more than one image
    are not tiled: each is padded to a square of ``background`` and resized to ``tile_size``
    (BICUBIC), and counts ``base_tokens + 1`` (its tokens and the newline), as transformers'
    ``LlavaOnevisionImageProcessor`` and model do.

    Required keys: ``images``, ``visual_frames``, ``visual_kinds`` (``LoadVisuals``).
    Modified keys: ``images``, ``visual_frames``, ``num_visual_tokens``, ``img_paths``,
    ``ori_shapes``, ``img_shapes``. Added keys: ``image_sizes``, per visual the original
    (H, W) of a tiled image and (0, 0) for the other visuals, which the model's merge reads.

    Args:
        image_grid_pinpoints (list): The grid resolutions, each (height, width).
        tile_size (int): Pixels of a tile side: the vision tower's input size (336, 384).
        patches_per_side (int): The tower's feature-map side for one tile (24, 27).
        base_tokens (int, optional): Tokens of the base view (``patches_per_side ** 2`` by
            default).
        max_num_tiles (int, optional): OneVision's ``anyres_max_N``.
        multi_image (str): ``'tiles'`` (LLaVA-1.6: every image tiled, the default) or
            ``'pad'`` (OneVision, see above).
        background (Sequence[int]): RGB fill of ``'pad'``; OneVision's SigLIP mean x 255.
        anyres (dict, optional): The model's ``anyres`` dict, for the fields not given (so a
            config can pass ``anyres={{_base_.anyres}}``).
    """

    MULTI_IMAGE = ('tiles', 'pad')

    def __init__(self, image_grid_pinpoints: Optional[Sequence[Sequence[int]]] = None,
                 tile_size: Optional[int] = None, patches_per_side: Optional[int] = None,
                 base_tokens: Optional[int] = None, max_num_tiles: Optional[int] = None,
                 multi_image: str = 'tiles', background: Sequence[int] = (127, 127, 127),
                 anyres: Optional[dict] = None):
        given = dict(image_grid_pinpoints=image_grid_pinpoints, tile_size=tile_size,
                     patches_per_side=patches_per_side, base_tokens=base_tokens,
                     max_num_tiles=max_num_tiles)
        for key, value in (anyres or {}).items():
            if key not in given:
                raise ValueError(f'AnyresTiles: anyres has an unknown field {key!r}')
            if given[key] is None:
                given[key] = value
        missing = [k for k in ('image_grid_pinpoints', 'tile_size', 'patches_per_side')
                   if given[k] is None]
        if missing:
            raise ValueError(f'AnyresTiles needs {", ".join(missing)} (or the model\'s anyres '
                             'dict as anyres=...)')
        image_grid_pinpoints, tile_size, patches_per_side, base_tokens, max_num_tiles = (
            given[k] for k in ('image_grid_pinpoints', 'tile_size', 'patches_per_side',
                               'base_tokens', 'max_num_tiles'))
        pinpoints = [tuple(int(v) for v in p) for p in image_grid_pinpoints]
        if not pinpoints or any(len(p) != 2 or p[0] % tile_size or p[1] % tile_size
                                for p in pinpoints):
            raise ValueError('image_grid_pinpoints must be (height, width) pairs, each a '
                             f'multiple of tile_size {tile_size}, got {image_grid_pinpoints!r}')
        if multi_image not in self.MULTI_IMAGE:
            raise ValueError(f'multi_image must be one of {self.MULTI_IMAGE}, got '
                             f'{multi_image!r}')
        self.image_grid_pinpoints = pinpoints
        self.tile_size = tile_size
        self.patches_per_side = patches_per_side
        self.base_tokens = base_tokens
        self.max_num_tiles = max_num_tiles
        self.multi_image = multi_image
        self.background = tuple(int(c) for c in background)

    def _single_view(self, image: np.ndarray) -> np.ndarray:
        square = Image.fromarray(expand_to_square(image, self.background))
        return np.array(square.resize((self.tile_size, self.tile_size),
                                      resample=Image.Resampling.BICUBIC))

    def transform(self, results: dict) -> dict:
        """Tile each image visual of ``results`` (see the class doc)."""
        for key in ('images', 'visual_frames', 'visual_kinds'):
            if key not in results:
                raise KeyError(f'AnyresTiles: sample {results.get("sample_id")!r} has no '
                               f'{key!r}: run LoadVisuals first')
        frames = iter(results['images'])
        paths = iter(results.get('img_paths') or [None] * len(results['images']))
        tokens = list(results.get('num_visual_tokens') or [None] * len(results['visual_kinds']))
        tile = self.multi_image == 'tiles' or results['visual_kinds'].count('image') == 1
        base = self.patches_per_side ** 2 if self.base_tokens is None else self.base_tokens
        images, new_paths, counts, sizes = [], [], [], []
        for i, (kind, count) in enumerate(zip(results['visual_kinds'],
                                              results['visual_frames'])):
            visual = [next(frames) for _ in range(count)]
            path = [next(paths) for _ in range(count)]
            size = (0, 0)
            if kind == 'image' and tile:
                size = tuple(visual[0].shape[:2])
                visual = anyres_tiles(visual[0], self.image_grid_pinpoints, self.tile_size)
                path = path[:1] * len(visual)
                tokens[i] = anyres_num_tokens(size, self.image_grid_pinpoints, self.tile_size,
                                              self.patches_per_side, self.base_tokens,
                                              self.max_num_tiles)
            elif kind == 'image':
                visual = [self._single_view(visual[0])]
                tokens[i] = base + 1
            images += visual
            new_paths += path
            counts.append(len(visual))
            sizes.append(size)
        results.update(images=images, visual_frames=counts, img_paths=new_paths,
                       image_sizes=sizes, ori_shapes=[f.shape[:2] for f in images],
                       img_shapes=[f.shape[:2] for f in images])
        if results.get('num_visual_tokens') is not None or 'image' in results['visual_kinds']:
            results['num_visual_tokens'] = tokens
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(image_grid_pinpoints={self.image_grid_pinpoints}, '
                f'tile_size={self.tile_size}, patches_per_side={self.patches_per_side}, '
                f'max_num_tiles={self.max_num_tiles}, multi_image={self.multi_image!r})')
