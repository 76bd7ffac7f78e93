"""LLaVA image preprocessing: pad to square, CLIP resize and centre crop, normalization.

Parity reference: transformers' PIL/NumPy ("slow") CLIP image processor, which in transformers 5
is ``CLIPImageProcessorPil`` (``CLIPImageProcessor`` is now the torchvision backend). It is the
path the original LLaVA ran (``CLIPImageProcessor`` of transformers 4.3x, PIL resize), so it is
the one we reproduce bit for bit: the shortest edge is resized with PIL's BICUBIC filter on the
uint8 picture, then the centre is cropped, then ``(x / 255 - mean) / std`` in float32. The
torchvision backend resizes with its own antialiased bicubic kernel and may differ by a grey level
here and there; we do not follow it.

The transforms keep images as (H, W, 3) uint8 arrays; normalization happens in the model's data
preprocessor (:func:`mmllava.models.data_preprocessor.normalize_pixels`), so batches travel as
bytes, not floats.
"""
import math
from typing import List, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image

from mmllava.registry import TRANSFORMS
from mmllava.structures import CLIP_MEAN_RGB

_PIL_INTERPOLATION = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
    'lanczos': Image.Resampling.LANCZOS,
    'box': Image.Resampling.BOX,
    'hamming': Image.Resampling.HAMMING,
}


def _check_images(results: dict, transform: str) -> List[np.ndarray]:
    images = results.get('images')
    if images is None:
        images = []
    for i, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[-1] == 3):
            got = (f'{image.dtype} array of shape {image.shape}'
                   if isinstance(image, np.ndarray) else type(image).__name__)
            raise TypeError(f'{transform}: sample {results.get("sample_id")!r}, image #{i}: '
                            f'expected an (H, W, 3) uint8 array (run LoadImages first), got {got}')
    return images


def expand_to_square(image: np.ndarray, background: Sequence[int] = CLIP_MEAN_RGB) -> np.ndarray:
    """Pad an (H, W, 3) image to a square, as the original LLaVA's ``expand2square``.

    The picture keeps its size; it is pasted at ``(x, y) = (0, (w - h) // 2)`` in a wide image's
    ``w x w`` square, or at ``((h - w) // 2, 0)`` in a tall image's ``h x h`` square.

    Args:
        image (np.ndarray): (H, W, 3) uint8.
        background (Sequence[int]): RGB fill colour.

    Returns:
        np.ndarray: (S, S, 3) uint8 with ``S = max(H, W)``; ``image`` itself if already square.
    """
    height, width = image.shape[:2]
    if height == width:
        return image
    side = max(height, width)
    out = np.empty((side, side, image.shape[2]), dtype=image.dtype)
    out[...] = np.asarray(background, dtype=image.dtype)
    top, left = ((width - height) // 2, 0) if width > height else (0, (height - width) // 2)
    out[top:top + height, left:left + width] = image
    return out


@TRANSFORMS.register_module()
class PadToSquare(BaseTransform):
    """Pad every image to a square with a flat colour: LLaVA-1.5's ``image_aspect_ratio='pad'``.

    Required keys: ``images`` (list of (H, W, 3) uint8 arrays; may be empty).
    Modified keys: ``images``, ``img_shapes``.

    Args:
        background (Sequence[int]): RGB fill, by default the CLIP mean x 255 truncated to
            integers, ``(122, 116, 104)``, as the original computes it.
    """

    def __init__(self, background: Sequence[int] = CLIP_MEAN_RGB):
        background = tuple(background)
        if len(background) != 3 or not all(
                isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in background):
            raise ValueError(f'background must be three integers in [0, 255], got {background}')
        self.background = tuple(int(c) for c in background)

    def transform(self, results: dict) -> dict:
        """Pad each image of ``results['images']``."""
        images = _check_images(results, 'PadToSquare')
        results['images'] = [expand_to_square(im, self.background) for im in images]
        results['img_shapes'] = [im.shape[:2] for im in results['images']]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(background={self.background})'


def _pair(size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f'{name} must be an int or (height, width), got {size}')


def shortest_edge_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """Output ``(h, w)`` of a shortest-edge resize, as transformers computes it.

    transformers' ``get_resize_output_image_size(default_to_square=False)``: the short side
    becomes ``size`` and the long side ``int(size * long / short)`` (truncated, not rounded).
    """
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(image: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """Centre crop an (H, W, C) image as transformers' numpy ``center_crop``.

    The window starts at ``((H - crop_h) // 2, (W - crop_w) // 2)``; an image smaller than the
    window is first zero-padded around it (ceil of half the missing size before), as there.
    """
    height, width = image.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return image[top:top + crop_h, left:left + crop_w]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    canvas = np.zeros((new_h, new_w) + image.shape[2:], dtype=image.dtype)
    top_pad, left_pad = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
    canvas[top_pad:top_pad + height, left_pad:left_pad + width] = image
    top, left = top + top_pad, left + left_pad
    return canvas[max(0, top):min(new_h, top + crop_h), max(0, left):min(new_w, left + crop_w)]


@TRANSFORMS.register_module()
class CLIPResizeCrop(BaseTransform):
    """Resize the shortest edge and centre crop, exactly as transformers' CLIP image processor.

    Bit-identical (uint8) to the PIL path of transformers' CLIP processor (``CLIPImageProcessorPil``
    in transformers 5; the slow ``CLIPImageProcessor`` before) before its rescale/normalize.

    Required keys: ``images`` (list of (H, W, 3) uint8 arrays; may be empty).
    Modified keys: ``images`` (each ``crop_size``), ``img_shapes``.

    Args:
        size (int): target length of the shortest edge. Defaults to 336.
        crop_size (int | tuple[int, int], optional): centre crop ``(height, width)``; an int
            gives a square. Defaults to ``size``.
        interpolation (str): PIL filter: ``'bicubic'`` (CLIP's), ``'bilinear'``, ``'nearest'``,
            ``'lanczos'``, ``'box'`` or ``'hamming'``.
    """

    def __init__(self, size: int = 336, crop_size: Union[int, Sequence[int], None] = None,
                 interpolation: str = 'bicubic'):
        if not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f'size must be a positive int (the shortest edge), got {size}')
        if interpolation not in _PIL_INTERPOLATION:
            raise ValueError(f'interpolation must be one of {sorted(_PIL_INTERPOLATION)}, '
                             f'got {interpolation!r}')
        self.size = int(size)
        self.crop_size = _pair(size if crop_size is None else crop_size, 'crop_size')
        self.interpolation = interpolation

    def _process(self, image: np.ndarray) -> np.ndarray:
        new_h, new_w = shortest_edge_size(*image.shape[:2], self.size)
        # PIL on the uint8 picture, as transformers' resize (reducing_gap=None).
        resized = Image.fromarray(image).resize(
            (new_w, new_h), resample=_PIL_INTERPOLATION[self.interpolation])
        return np.ascontiguousarray(center_crop(np.array(resized), *self.crop_size))

    def transform(self, results: dict) -> dict:
        """Resize and crop each image of ``results['images']``."""
        images = _check_images(results, 'CLIPResizeCrop')
        results['images'] = [self._process(im) for im in images]
        results['img_shapes'] = [im.shape[:2] for im in results['images']]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, crop_size={self.crop_size}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class ResizeSquare(BaseTransform):
    """Resize every image to ``size`` x ``size`` without keeping its aspect ratio (PIL).

    LLaVA-OneVision's clip frames (its video processor's ``size={'height': 384, 'width':
    384}``, no crop). Images already of that size (anyres tiles) are left as they are.

    Required keys: ``images``. Modified keys: ``images``, ``img_shapes``.

    Args:
        size (int): The output side.
        interpolation (str): PIL filter, as :class:`CLIPResizeCrop`.
    """

    def __init__(self, size: int = 384, interpolation: str = 'bicubic'):
        if not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f'size must be a positive int, got {size}')
        if interpolation not in _PIL_INTERPOLATION:
            raise ValueError(f'interpolation must be one of {sorted(_PIL_INTERPOLATION)}, '
                             f'got {interpolation!r}')
        self.size = int(size)
        self.interpolation = interpolation

    def _process(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (self.size, self.size):
            return image
        return np.array(Image.fromarray(image).resize(
            (self.size, self.size), resample=_PIL_INTERPOLATION[self.interpolation]))

    def transform(self, results: dict) -> dict:
        """Resize each image of ``results['images']``."""
        images = _check_images(results, 'ResizeSquare')
        results['images'] = [self._process(im) for im in images]
        results['img_shapes'] = [im.shape[:2] for im in results['images']]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class SubtractBackground(BaseTransform):
    """Remove a plain background: each frame's median colour is taken as its ground.

    For a figure on a plain ground (a rendered clip, a studio shot) the median colour of a
    frame is the ground's. ``'magnitude'`` writes each pixel's distance from it (the sum of
    the absolute channel differences, clipped to 255) to all three channels: a grey silhouette
    with its shading, the same whatever the ground's and the figure's colours were.
    ``'shift'`` only moves the colours so the ground becomes mid-grey.

    Why: a vision tower trained from scratch on a few thousand clips (the MoCap-Actions model)
    otherwise spends its data learning colour invariance (measurements:
    ``docs/mocap_actions.md``). Pretrained CLIP towers do not need it.

    Required keys: ``images`` (list of (H, W, 3) uint8 arrays; may be empty).
    Modified keys: ``images``.

    Args:
        mode (str): ``'magnitude'`` (default) or ``'shift'``.
        gray (int): ``'shift'`` only: the value the median colour maps to. Defaults to 128.
    """

    MODES = ('magnitude', 'shift')

    def __init__(self, mode: str = 'magnitude', gray: int = 128):
        if mode not in self.MODES:
            raise ValueError(f'mode must be one of {self.MODES}, got {mode!r}')
        if not 0 <= int(gray) <= 255:
            raise ValueError(f'gray must be in [0, 255], got {gray}')
        self.mode = mode
        self.gray = int(gray)

    def _process(self, image: np.ndarray) -> np.ndarray:
        median = np.round(np.median(image.reshape(-1, image.shape[-1]), axis=0))
        diff = image.astype(np.int16) - median.astype(np.int16)
        if self.mode == 'shift':
            return np.clip(diff + self.gray, 0, 255).astype(np.uint8)
        magnitude = np.clip(np.abs(diff).sum(-1), 0, 255).astype(np.uint8)
        return np.repeat(magnitude[..., None], 3, axis=-1)

    def transform(self, results: dict) -> dict:
        """Process each image of ``results['images']``."""
        images = _check_images(results, 'SubtractBackground')
        results['images'] = [self._process(im) for im in images]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(mode={self.mode!r}, gray={self.gray})'


@TRANSFORMS.register_module()
class TemporalChannels(BaseTransform):
    """Write each frame of a clip as three channels that carry its motion.

    A grey clip (after :class:`SubtractBackground` ``'magnitude'``) leaves two of its three
    channels redundant; here they carry the frame's neighbours in the *sampled* clip (the
    first and last frames repeat themselves), so the vision tower's patch embedding sees each
    patch's local motion at no extra cost, as a two-stream network's motion input does:

    - ``'frames'``: channel 0 holds frame ``t - 1``, channel 1 frame ``t``, channel 2 frame
      ``t + 1``.
    - ``'differences'``: channel 0 holds frame ``t``, channel 1 ``128 + gain * (f[t+1] - f[t])``
      and channel 2 ``128 + gain * (f[t] - f[t-1])``, clipped to [0, 255]: signed motion, 128
      where nothing moves. Normalize channels 1 and 2 with mean ``128 / 255`` (the data
      preprocessor's ``mean``/``std``) so that a still pixel enters the tower as 0.

    Only the sampled frames are used, in the order :class:`LoadVisuals` gives them: shuffled or
    reversed frames shuffle or reverse the motion too, so the frame-order probes stay
    meaningful. Images (one frame) become grey and still (``'differences'``: 128 motion).

    Why ``'differences'``: the same motion is there, linearly mixed, in ``'frames'`` too, but a
    tower trained from scratch finds it only when it is explicit and a still background is
    zero (measurements: ``docs/mocap_actions.md``). The default MoCap-Actions model uses it.

    Required keys: ``images``; ``visual_frames`` (set by :class:`LoadVisuals`) when the sample
    holds more than its clip. Modified keys: ``images``.

    Args:
        mode (str): ``'frames'`` (default) or ``'differences'``.
        gain (float): ``'differences'`` only: the scale of the frame differences. Defaults to 1.
    """

    MODES = ('frames', 'differences')

    def __init__(self, mode: str = 'frames', gain: float = 1.0):
        if mode not in self.MODES:
            raise ValueError(f'mode must be one of {self.MODES}, got {mode!r}')
        if not float(gain) > 0:
            raise ValueError(f'gain must be positive, got {gain}')
        self.mode = mode
        self.gain = float(gain)

    def _clip(self, grey: List[np.ndarray]) -> List[np.ndarray]:
        last = len(grey) - 1
        if self.mode == 'frames':
            return [np.stack([grey[max(t - 1, 0)], grey[t], grey[min(t + 1, last)]], -1)
                    for t in range(len(grey))]
        signed = [g.astype(np.float32) for g in grey]

        def motion(a, b):
            return np.clip(np.round(128 + self.gain * (a - b)), 0, 255).astype(np.uint8)

        return [np.stack([grey[t], motion(signed[min(t + 1, last)], signed[t]),
                          motion(signed[t], signed[max(t - 1, 0)])], -1)
                for t in range(len(grey))]

    def transform(self, results: dict) -> dict:
        """Restack the frames of every clip in ``results['images']``."""
        images = _check_images(results, 'TemporalChannels')
        counts = results.get('visual_frames')
        if counts is None:
            counts = [len(images)] if images else []
        counts = [int(c) for c in counts]
        if sum(counts) != len(images):
            raise ValueError(f'TemporalChannels: sample {results.get("sample_id")!r}: '
                             f'visual_frames {counts} do not add up to its {len(images)} '
                             'images')
        out, start = [], 0
        for count in counts:
            shapes = {im.shape for im in images[start:start + count]}
            if len(shapes) > 1:
                raise ValueError(f'TemporalChannels: sample {results.get("sample_id")!r}: '
                                 f'the frames of a clip differ in size: {sorted(shapes)}')
            grey = [im.mean(-1).round().astype(np.uint8) for im in images[start:start + count]]
            out += self._clip(grey)
            start += count
        results['images'] = out
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(mode={self.mode!r}, gain={self.gain})'
