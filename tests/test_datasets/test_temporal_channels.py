"""TemporalChannels: frames t-1, t, t+1 of each sampled clip as the three channels."""
import numpy as np
import pytest

from mmllava.datasets.transforms import TemporalChannels
from mmllava.registry import TRANSFORMS


def grey(value, colour=False):
    image = np.full((4, 5, 3), value, np.uint8)
    if colour:  # channels that differ: the transform takes their mean
        image[..., 0] = value - 3
        image[..., 2] = value + 3
    return image


def channel_values(images):
    return [tuple(int(im[0, 0, c]) for c in range(3)) for im in images]


def test_clip_channels_hold_previous_current_next_with_edges_repeated():
    t = TRANSFORMS.build(dict(type='TemporalChannels'))
    out = t(dict(images=[grey(v, colour=True) for v in (10, 20, 30, 40)],
                 visual_frames=[4]))['images']
    assert [im.shape for im in out] == [(4, 5, 3)] * 4 and out[0].dtype == np.uint8
    assert channel_values(out) == [(10, 10, 20), (10, 20, 30), (20, 30, 40), (30, 40, 40)]


def test_visuals_do_not_leak_into_each_other():
    out = TemporalChannels()(dict(images=[grey(v) for v in (99, 10, 20, 30, 50, 60)],
                                  visual_frames=[1, 3, 2]))['images']
    assert channel_values(out) == [(99, 99, 99),  # an image: its own grey
                                   (10, 10, 20), (10, 20, 30), (20, 30, 30),
                                   (50, 50, 60), (50, 60, 60)]


def test_reversed_frames_swap_previous_and_next():
    frames = [grey(v) for v in (10, 20, 30, 40, 50)]
    forward = TemporalChannels()(dict(images=list(frames), visual_frames=[5]))['images']
    backward = TemporalChannels()(dict(images=frames[::-1], visual_frames=[5]))['images']
    for f, b in zip(forward, backward[::-1]):
        np.testing.assert_array_equal(f[..., ::-1], b)


def test_without_visual_frames_the_images_are_one_clip():
    out = TemporalChannels()(dict(images=[grey(1), grey(2)]))['images']
    assert channel_values(out) == [(1, 1, 2), (1, 2, 2)]
    assert TemporalChannels()(dict(images=[]))['images'] == []


def test_frame_count_mismatch_names_the_sample():
    with pytest.raises(ValueError, match=r"'clip_7'.*\[4\].*3 images"):
        TemporalChannels()(dict(sample_id='clip_7', images=[grey(1)] * 3, visual_frames=[4]))
