"""TemporalChannels: each sampled frame with its neighbours (frames) or its motion (differences)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmllava.datasets.transforms import TemporalChannels
from mmllava.models.data_preprocessor import normalize_pixels
from mmllava.registry import MODELS, TRANSFORMS

ROOT = Path(__file__).resolve().parents[2]


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


def test_differences_hold_frame_and_signed_motion_around_128():
    t = TRANSFORMS.build(dict(type='TemporalChannels', mode='differences'))
    out = t(dict(images=[grey(v, colour=True) for v in (10, 20, 50, 40)],
                 visual_frames=[4]))['images']
    assert [im.shape for im in out] == [(4, 5, 3)] * 4 and out[0].dtype == np.uint8
    # (frame t, 128 + f[t+1] - f[t], 128 + f[t] - f[t-1]); the edges repeat, so move 0 there
    assert channel_values(out) == [(10, 138, 128), (20, 158, 138), (50, 118, 158),
                                   (40, 128, 118)]


def test_differences_gain_scales_and_clips_to_uint8():
    out = TemporalChannels(mode='differences', gain=3)(
        dict(images=[grey(0), grey(10), grey(250)]))['images']
    assert channel_values(out) == [(0, 158, 128), (10, 255, 158), (250, 128, 255)]
    out = TemporalChannels(mode='differences', gain=3)(
        dict(images=[grey(250), grey(0)]))['images']
    assert channel_values(out) == [(250, 0, 128), (0, 128, 0)]


def test_differences_of_reversed_frames_negate_and_swap_the_motion():
    frames = [grey(v) for v in (10, 30, 35, 80, 60)]
    forward = TemporalChannels('differences')(dict(images=list(frames)))['images']
    backward = TemporalChannels('differences')(dict(images=frames[::-1]))['images']
    for f, b in zip(forward, backward[::-1]):
        assert f[0, 0, 0] == b[0, 0, 0]
        # reversed time: forward motion f[t+1]-f[t] becomes the backward one, negated
        assert int(f[0, 0, 1]) - 128 == -(int(b[0, 0, 2]) - 128)
        assert int(f[0, 0, 2]) - 128 == -(int(b[0, 0, 1]) - 128)


def test_differences_of_an_image_are_still():
    out = TemporalChannels('differences')(dict(images=[grey(77), grey(5), grey(9)],
                                               visual_frames=[1, 2]))['images']
    assert channel_values(out) == [(77, 128, 128), (5, 132, 128), (9, 128, 132)]


def test_bad_mode_or_gain_is_refused():
    with pytest.raises(ValueError, match='mode must be one of'):
        TemporalChannels(mode='flow')
    with pytest.raises(ValueError, match='gain must be positive'):
        TemporalChannels(mode='differences', gain=0)
    assert repr(TemporalChannels('differences', 2)) == \
        "TemporalChannels(mode='differences', gain=2.0)"


def test_default_model_config_turns_a_still_pixel_into_zero_motion():
    """The shipped MoCap-Actions recipe: its preprocessor's mean and std fit 'differences'."""
    cfg = Config.fromfile(str(ROOT / 'configs' / 'llava_action' / 'llava-tiny_mocap-actions.py'))
    steps = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'TemporalChannels']
    assert steps and steps[0].mode == 'differences'
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    frames = TRANSFORMS.build(steps[0])(dict(images=[grey(90)] * 3))['images']
    pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    normalized = normalize_pixels(pixels, preprocessor.mean, preprocessor.std)
    assert normalized[:, 1:].abs().max() < 1e-6  # still: no motion
    assert abs(float(normalized[0, 0, 0, 0]) - (90 / 255 - 0.48145466) / 0.26862954) < 1e-5


@pytest.mark.parametrize('mode,gain', [('frames', 1.0), ('differences', 1.0),
                                       ('differences', 2.5)])
def test_random_clips_match_a_frame_by_frame_reference(mode, gain):
    # Reference: each frame's channel mean rounded, then its neighbours, one frame at a time.
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8) for _ in range(5)]
    grey_frames = [np.round(f.mean(-1)).astype(np.float64) for f in frames]
    out = TemporalChannels(mode, gain)(dict(images=list(frames)))['images']
    for t, image in enumerate(out):
        prev, cur = grey_frames[max(t - 1, 0)], grey_frames[t]
        nxt = grey_frames[min(t + 1, len(frames) - 1)]
        if mode == 'frames':
            expected = np.stack([prev, cur, nxt], -1)
        else:
            def motion(a, b):
                return np.clip(np.round(128 + gain * (a - b)), 0, 255)
            expected = np.stack([cur, motion(nxt, cur), motion(cur, prev)], -1)
        np.testing.assert_array_equal(image, expected.astype(np.uint8))


def test_frames_of_different_sizes_in_one_clip_are_refused():
    with pytest.raises(ValueError, match=r"'clip_3'.*differ in size"):
        TemporalChannels()(dict(sample_id='clip_3', images=[grey(1), np.zeros((3, 3, 3),
                                                                                np.uint8)]))
