"""Image loading: any picture a user or a dataset gives, as an 8-bit RGB image.

Colour policy (kept identical to what LLaVA sees through transformers' ``convert_to_rgb``):

- Transparency (RGBA, LA, PA, RGBa, and P / L / RGB with a ``transparency`` entry) is composited
  over opaque white, through ``PIL.Image.alpha_composite`` exactly as transformers does.
- 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I`` holding 16-bit data) is
  scaled to 8 bits by keeping the high byte (``value >> 8``). PIL 13 itself decodes 16-bit RGB,
  RGBA and gray+alpha PNGs that way (it keeps the most significant byte), so every 16-bit picture
  gets the same rule. ``convert('L')`` is not used: it clips every value above 255 to white.
- Everything else (L, P, 1, CMYK, YCbCr ...) goes through PIL's ``convert('RGB')``.
- EXIF orientation is NOT applied, for parity with the original LLaVA and transformers, which
  open images with ``Image.open(...).convert('RGB')`` and never call ``exif_transpose``. A
  camera JPEG stored sideways is seen sideways by the model, as in the original evaluations.
- A truncated or corrupt file raises: the image is decoded fully (``.load()``) while PIL's
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False (nothing in mmllava sets it).
"""
import os
import os.path as osp
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

ImageSource = Union[str, Path, Image.Image, np.ndarray]

_GRAY16_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


def _gray16_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit grayscale to RGB by the high byte; a transparent grey level composites to white."""
    values = np.asarray(image).astype(np.int64)
    # Mode 'I' is 32-bit signed; PIL uses it for 16-bit grayscale, so read it on that range.
    values = np.clip(values, 0, 65535)
    gray = (values >> 8).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    transparency = image.info.get('transparency')
    if isinstance(transparency, int):
        # A fully transparent key colour over white is white, as alpha_composite would give.
        rgb[values == transparency] = 255
    return Image.fromarray(rgb, 'RGB')


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded PIL image to RGB by the module's colour policy."""
    if image.mode in _GRAY16_MODES:
        return _gray16_to_rgb(image)
    if image.mode == 'F':
        # No principled range for float pixels (could be [0, 1], [0, 255], depth in metres).
        raise ValueError("32-bit float images (PIL mode 'F') have no defined range; "
                         'convert them to 8-bit first')
    # Same test and compositing as transformers.image_transforms.convert_to_rgb.
    has_alpha = 'A' in image.getbands() or image.info.get('transparency') is not None
    if has_alpha:
        image = image.convert('RGBA')
        background = Image.new('RGBA', image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert('RGB')
    if image.mode == 'RGB':
        return image
    return image.convert('RGB')


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """Wrap an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/uint16 array as a PIL image."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError('an image array must be (H, W), (H, W, 1), (H, W, 3) RGB or '
                         f'(H, W, 4) RGBA, got shape {array.shape}')
    if array.dtype == np.uint16:
        # The same high-byte rule as 16-bit image files.
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(
            f'an image array must be uint8 (or uint16), got {array.dtype}: arrays in [0, 1] '
            'or [0, 255] are ambiguous; convert with (x * 255).round().astype(np.uint8) '
            'or x.astype(np.uint8) as your data requires')
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        return Image.fromarray(array, 'L')
    return Image.fromarray(array, 'RGB' if array.shape[-1] == 3 else 'RGBA')


def _open(path: str) -> Image.Image:
    """Open and fully decode an image file, with errors that name the file."""
    if not osp.exists(path):
        raise FileNotFoundError(f'image file not found: {path!r}')
    if not osp.isfile(path):
        raise ValueError(f'cannot read image {path!r}: not a regular file')
    try:
        with open(path, 'rb') as f:
            image = Image.open(f)
            # Decode now: a truncated file raises here instead of giving a partial picture,
            # and the file handle can be closed.
            image.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, DecompressionBombError ...
        raise ValueError(f'cannot read image {path!r}: {type(e).__name__}: {e}') from e
    return image


def load_image(src: ImageSource) -> Image.Image:
    """Load an image as an 8-bit RGB PIL image.

    Args:
        src (str | Path | PIL.Image.Image | np.ndarray): a file path; a PIL image (any mode); or
            a uint8 array, (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA (uint16 arrays are
            taken as 16-bit and scaled like 16-bit files). Float arrays are rejected.

    Returns:
        PIL.Image.Image: the image in mode ``'RGB'``; transparency composited over white,
        16-bit data scaled by its high byte, EXIF orientation not applied (see module doc).

    Raises:
        FileNotFoundError: ``src`` is a path that does not exist.
        ValueError: the file cannot be decoded (corrupt, truncated, not an image), or an array
            or image of an unsupported kind.
        TypeError: ``src`` is of an unsupported type.
    """
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        image = _open(path)
        try:
            return _to_rgb(image)
        except ValueError as e:
            raise ValueError(f'cannot read image {path!r}: {e}') from e
    if isinstance(src, Image.Image):
        return _to_rgb(src)
    if isinstance(src, np.ndarray):
        return _to_rgb(_array_to_pil(src))
    raise TypeError('an image source must be a path, a PIL image or a numpy array, '
                    f'got {type(src).__name__}')


def resolve_source(src, results: dict):
    """``(source, path)``: a path source joined to ``img_prefix`` (else ``data_root``) of
    ``results`` when relative; in-memory sources are returned as they are, with path None."""
    if not isinstance(src, (str, os.PathLike)):
        return src, None
    path = os.fspath(src)
    prefix = results.get('img_prefix')
    if prefix is None:
        prefix = results.get('data_root')
    if prefix and not osp.isabs(path):
        path = osp.join(os.fspath(prefix), path)
    return path, path
