"""Parity of LLaVA image preprocessing with transformers' CLIP processor and the original."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmllava.datasets.transforms.processing import CLIPResizeCrop, PadToSquare
from mmllava.models.data_preprocessor import normalize_pixels
from mmllava.registry import TRANSFORMS
from mmllava.structures import CLIP_MEAN, CLIP_STD

SIZES = [(500, 375), (224, 224), (100, 700), (337, 336), (375, 500), (1000, 3)]  # (w, h)
PROCESSOR_KWARGS = dict(size={'shortest_edge': 336}, crop_size={'height': 336, 'width': 336},
                        do_convert_rgb=True)


def _slow_processor():
    """transformers' PIL/NumPy CLIP processor, built offline from its constructor."""
    try:  # transformers >= 5: CLIPImageProcessor is the torchvision backend
        from transformers.models.clip import CLIPImageProcessorPil as cls
    except ImportError:  # transformers 4: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor as cls
    return cls(**PROCESSOR_KWARGS)


def _expand2square(pil_img, background_color):
    """haotian-liu/LLaVA llava/mm_utils.py expand2square, for reference."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


def _ours(images, pad=False):
    results = {'images': list(images)}
    if pad:
        results = PadToSquare()(results)
    results = CLIPResizeCrop(336)(results)
    batch = torch.from_numpy(np.stack(results['images'])).permute(0, 3, 1, 2)
    return normalize_pixels(batch, CLIP_MEAN, CLIP_STD), results


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize('wh', SIZES)
def test_clip_resize_crop_matches_transformers(rng, wh):
    w, h = wh
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours, results = _ours([image])
    theirs = _slow_processor()(Image.fromarray(image), return_tensors='pt')['pixel_values']
    assert ours.dtype == torch.float32 and ours.shape == theirs.shape == (1, 3, 336, 336)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert results['images'][0].dtype == np.uint8
    assert results['img_shapes'] == [(336, 336)]


def test_smooth_image_matches_torchvision_backend_closely(rng):
    # transformers 5's default CLIPImageProcessor resizes with torchvision's antialiased bicubic:
    # not bit-identical to PIL, which is why our reference is the PIL path. Measure the drift.
    from transformers import CLIPImageProcessor
    image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    ours, _ = _ours([image])
    theirs = CLIPImageProcessor(**PROCESSOR_KWARGS)(Image.fromarray(image),
                                                    return_tensors='pt')['pixel_values']
    # At most a few grey levels (1 level = 1 / (255 * std) ~ 0.015).
    assert (ours - theirs).abs().max() < 0.05


def test_pad_then_resize_matches_original(rng):
    background = tuple(int(x * 255) for x in _slow_processor().image_mean)
    assert background == (122, 116, 104)
    processor = _slow_processor()
    for w, h in [(500, 375), (101, 300), (336, 337)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours, results = _ours([image], pad=True)
        squared = _expand2square(Image.fromarray(image), background)
        theirs = processor.preprocess(squared, return_tensors='pt')['pixel_values']
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize('wh', [(7, 4), (4, 7), (8, 5), (5, 8), (6, 6)])
def test_pad_to_square_offsets(rng, wh):
    w, h = wh
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    results = TRANSFORMS.build(dict(type='PadToSquare'))({'images': [image]})
    expected = np.array(_expand2square(Image.fromarray(image), (122, 116, 104)))
    np.testing.assert_array_equal(results['images'][0], expected)
    side = max(h, w)
    assert results['img_shapes'] == [(side, side)]


def test_pad_to_square_background_and_empty():
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    out = PadToSquare(background=(1, 2, 3))({'images': [image]})['images'][0]
    np.testing.assert_array_equal(out[0, 0], [1, 2, 3])  # wide image: (4 - 2) // 2 = 1 row on top
    np.testing.assert_array_equal(out[1:3], 0)
    np.testing.assert_array_equal(out[3], [[1, 2, 3]] * 4)
    assert PadToSquare()({'images': []})['images'] == []
    with pytest.raises(ValueError):
        PadToSquare(background=(1, 2))


def test_transforms_reject_unloaded_images():
    with pytest.raises(TypeError, match='LoadImages'):
        CLIPResizeCrop()({'images': ['a.jpg'], 'sample_id': 5})
    with pytest.raises(TypeError, match='uint8'):
        PadToSquare()({'images': [np.zeros((3, 3, 3), np.float32)]})


def test_clip_resize_crop_options(rng):
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = CLIPResizeCrop(size=20, crop_size=(10, 16))({'images': [image]})
    assert out['images'][0].shape == (10, 16, 3) and out['img_shapes'] == [(10, 16)]
    # Crop larger than the resized image: zero-padded as transformers' center_crop.
    out = CLIPResizeCrop(size=20, crop_size=24)({'images': [image]})['images'][0]
    assert out.shape == (24, 24, 3)
    np.testing.assert_array_equal(out[:2], 0)
    np.testing.assert_array_equal(out[22:], 0)
    from transformers.image_transforms import center_crop
    resized = np.array(Image.fromarray(image).resize((30, 20), Image.Resampling.BICUBIC))
    expected = center_crop(resized, (24, 24), input_data_format='channels_last')
    np.testing.assert_array_equal(out, expected)
    assert CLIPResizeCrop()({'images': []})['images'] == []
    with pytest.raises(ValueError):
        CLIPResizeCrop(interpolation='cubic')


def test_normalize_pixels_op_order():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    out = normalize_pixels(x, CLIP_MEAN, CLIP_STD)
    # transformers: float64(x) * (1 / 255) cast to float32, then (x - mean) / std in float32.
    scaled = torch.from_numpy((x.numpy().astype(np.float64) * (1 / 255)).astype(np.float32))
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    assert out.dtype == torch.float32
    assert torch.equal(out, (scaled - mean) / std)
