"""SubtractBackground: the same silhouette whatever the ground's and figure's colours."""
import numpy as np
import pytest

from mmllava.datasets.transforms import SubtractBackground
from mmllava.registry import TRANSFORMS


def scene(ground, figure):
    image = np.empty((32, 32, 3), np.uint8)
    image[:] = ground
    image[8:24, 14:18] = figure  # a bar: 64 of 1024 pixels, far from the median
    return image


def test_magnitude_is_colour_invariant_silhouette():
    t = TRANSFORMS.build(dict(type='SubtractBackground'))
    a = t(dict(images=[scene((200, 30, 40), (10, 220, 60))]))['images'][0]
    b = t(dict(images=[scene((5, 90, 250), (245, 10, 5))]))['images'][0]
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert (a[..., 0] == a[..., 2]).all()  # grey
    assert (a[:8] == 0).all() and (b[:8] == 0).all()  # the ground vanishes
    assert (a[8:24, 14:18] == 255).all() and (b[8:24, 14:18] == 255).all()  # clipped, same
    np.testing.assert_array_equal(a, b)


def test_shift_moves_ground_to_gray_and_keeps_differences():
    t = SubtractBackground(mode='shift', gray=100)
    out = t(dict(images=[scene((50, 60, 70), (60, 80, 100))]))['images'][0]
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(out[10, 15]) == (110, 120, 130)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='mode'):
        SubtractBackground(mode='blur')
    with pytest.raises(ValueError, match='gray'):
        SubtractBackground(mode='shift', gray=300)
    with pytest.raises(TypeError, match='SubtractBackground'):
        SubtractBackground()(dict(images=[np.zeros((4, 4), np.float32)]))


@pytest.mark.parametrize('shape', [(32, 32), (7, 9), (1, 1), (2, 1)])  # even and odd counts
def test_shift_subtracts_the_rounded_median(shape):
    # The ground is np.median's value rounded half to even, ties and halves included.
    rng = np.random.default_rng(0)
    t = SubtractBackground(mode='shift', gray=128)
    for spread in (256, 3):  # anything, and few values (many ties, medians at .5)
        image = rng.integers(0, spread, size=shape + (3, ), dtype=np.uint8)
        median = np.round(np.median(image.reshape(-1, 3), axis=0))
        expected = np.clip(image.astype(np.int16) - median.astype(np.int16) + 128, 0, 255)
        np.testing.assert_array_equal(t(dict(images=[image]))['images'][0], expected)
