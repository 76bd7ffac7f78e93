"""Clip loading: PyAV decoding, rawframes, arrays, uniform sampling, placeholder order."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmllava.datasets.transforms import LoadVisuals, load_video_frames, sample_frame_indices
from mmllava.registry import TRANSFORMS

REAL_CLIPS = Path(__file__).parents[1] / 'data' / 'real_clips'


def numbered_clip(t, h=8, w=10):
    """A (T, H, W, 3) clip whose frame i is filled with the value 10 * i."""
    return np.stack([np.full((h, w, 3), 10 * i, np.uint8) for i in range(t)])


def write_rawframes(folder, t):
    folder.mkdir()
    for i in range(t):
        Image.fromarray(np.full((6, 6, 3), 10 * i, np.uint8)).save(
            folder / f'img_{i + 1:05}.jpg', quality=100)
    return folder


def test_sampling_is_segment_midpoints():
    # floor((i + 0.5) * 100 / 8) = 6, 18, 31, 43, 56, 68, 81, 93
    assert sample_frame_indices(100, 8).tolist() == [6, 18, 31, 43, 56, 68, 81, 93]
    assert sample_frame_indices(8, 8).tolist() == list(range(8))
    assert sample_frame_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def test_training_jitter_draws_one_frame_in_each_segment():
    """Train mode: a random frame of each of the 8 segments; test mode: the midpoints."""
    np.random.seed(0)
    draws = np.stack([sample_frame_indices(100, 8, jitter=True) for _ in range(200)])
    lo = np.floor(np.arange(8) * 100 / 8)
    hi = np.ceil((np.arange(8) + 1) * 100 / 8)
    assert ((draws >= lo) & (draws < hi)).all()  # each index inside its own segment
    assert (np.diff(draws, axis=1) >= 0).all()  # temporal order kept
    # It covers each segment, not just the midpoint: every frame of the clip is drawn.
    assert set(draws.ravel().tolist()) == set(range(100))
    np.random.seed(1)
    first = sample_frame_indices(100, 8, jitter=True)
    np.random.seed(1)
    assert sample_frame_indices(100, 8, jitter=True).tolist() == first.tolist()  # seeded
    # Fewer frames than segments: each draw still lies in its segment, in order.
    for _ in range(50):
        few = sample_frame_indices(3, 8, jitter=True)
        assert (few >= np.floor(np.arange(8) * 3 / 8)).all() and (few < np.ceil(
            (np.arange(8) + 1) * 3 / 8)).all() and (np.diff(few) >= 0).all()


@pytest.mark.parametrize('source', ['array', 'rawframes'])
def test_load_visuals_jitters_in_training_only(source, tmp_path):
    clip = numbered_clip(24) if source == 'array' else str(write_rawframes(tmp_path / 'c', 24))
    results = lambda: dict(videos=[clip], messages=[dict(role='user', content='<video>\nhi')])  # noqa: E731
    values = lambda r: [int(round(f[0, 0, 0] / 10)) for f in r['images']]  # noqa: E731
    test = LoadVisuals(num_frames=4, num_image_tokens=2)
    train = LoadVisuals(num_frames=4, num_image_tokens=2, temporal_jitter=True)
    assert values(test(results())) == [3, 9, 15, 21]  # floor((i + 0.5) * 24 / 4)
    assert values(test(results())) == [3, 9, 15, 21]
    np.random.seed(0)
    seen = [values(train(results())) for _ in range(20)]
    assert len({tuple(v) for v in seen}) > 1
    assert all(6 * i <= v[i] < 6 * (i + 1) for v in seen for i in range(4))
    assert 'temporal_jitter=True' in repr(train)


@pytest.mark.parametrize('name,hw', [('arm_wrestling.mp4', (128, 170)),
                                     ('applying_eye_makeup.avi', (120, 160))])
def test_decode_real_clips(name, hw):
    frames = load_video_frames(REAL_CLIPS / name, num_frames=8)
    assert len(frames) == 8
    assert all(f.shape == (*hw, 3) and f.dtype == np.uint8 for f in frames)
    # Distinct, moving footage: the first and last sampled frames differ.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1


def test_real_clip_sampled_frames_match_full_decode():
    import av
    with av.open(str(REAL_CLIPS / 'applying_eye_makeup.avi')) as c:
        every = [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]
    frames = load_video_frames(REAL_CLIPS / 'applying_eye_makeup.avi', num_frames=4)
    for f, i in zip(frames, sample_frame_indices(len(every), 4)):
        np.testing.assert_array_equal(f, every[i])


def test_numpy_clip_and_too_few_frames_repeat_with_warning():
    frames = load_video_frames(numbered_clip(10), num_frames=4)
    assert [int(f[0, 0, 0]) for f in frames] == [10, 30, 60, 80]  # indices 1, 3, 6, 8
    with pytest.warns(UserWarning, match='fewer than the 8 requested'):
        frames = load_video_frames(numbered_clip(3), num_frames=8)
    assert [int(f[0, 0, 0]) // 10 for f in frames] == [0, 0, 0, 1, 1, 2, 2, 2]


def test_rawframe_folder(tmp_path):
    folder = write_rawframes(tmp_path / 'clip', 10)
    frames = load_video_frames(folder, num_frames=4)
    assert [round(f[0, 0, 0] / 10) for f in frames] == [1, 3, 6, 8]
    frames = load_video_frames(folder, num_frames=2, total_frames=4)  # the list's count wins
    assert [round(f[0, 0, 0] / 10) for f in frames] == [1, 3]


def test_errors_name_the_file(tmp_path):
    folder = write_rawframes(tmp_path / 'short', 3)
    with pytest.raises(ValueError, match=r"short.*fewer frames than the 5"):
        load_video_frames(folder, 4, total_frames=5)
    with pytest.raises(FileNotFoundError, match='missing_dir'):
        load_video_frames(tmp_path / 'missing_dir', 4)
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'not a video at all')
    with pytest.raises(ValueError, match='bad.mp4'):
        load_video_frames(bad, 4)
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match='empty.mp4'):
        load_video_frames(empty, 4)
    with pytest.raises(ValueError, match='none.*holds no'):
        load_video_frames(write_rawframes(tmp_path / 'none', 0), 4)
    with pytest.raises(ValueError, match=r'\(T, H, W, 3\) uint8'):
        load_video_frames(np.zeros((2, 4, 4, 3), np.float32), 4)


def test_load_visuals_orders_by_placeholders_and_counts_tokens():
    image = np.full((5, 7, 3), 200, np.uint8)
    results = dict(
        messages=[dict(role='user', content='<video> then <image>, and <video>?')],
        images=[image], videos=[numbered_clip(8), numbered_clip(4, 3, 3)])
    t = TRANSFORMS.build(dict(type='LoadVideo', num_frames=4, num_image_tokens=16,
                              video_pooling='avgpool2x2'))
    out = t(results)
    assert out['visual_frames'] == [4, 1, 4]
    assert out['visual_kinds'] == ['video', 'image', 'video']
    assert out['num_visual_tokens'] == [16, 16, 16]  # 4 frames x 4 pooled tokens; image 16
    assert len(out['images']) == 9
    assert out['images'][4] is not None and out['images'][4].shape == (5, 7, 3)
    assert [int(f[0, 0, 0]) for f in out['images'][:4]] == [10, 30, 50, 70]
    assert out['images'][5].shape == (3, 3, 3)
    st = LoadVisuals(num_frames=4, num_image_tokens=16, video_pooling='spatial_temporal')
    assert st._tokens(4) == 20 and LoadVisuals(4, 16)._tokens(4) == 64


def test_load_visuals_mismatch_and_no_text():
    t = LoadVisuals(num_frames=2, num_image_tokens=4)
    with pytest.raises(ValueError, match=r'1 <image> and 0 <video>.*0 images and 1 videos'):
        t(dict(messages=[dict(role='user', content='<image>')], videos=[numbered_clip(2)],
               sample_id='s1'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = t(dict(images=[np.zeros((4, 4, 3), np.uint8)], videos=[numbered_clip(2)]))
    assert out['visual_frames'] == [1, 2] and out['visual_kinds'] == ['image', 'video']
    with pytest.raises(FileNotFoundError, match="sample 's2'.*nope.mp4"):
        t(dict(videos=['nope.mp4'], img_prefix='/nonexistent', sample_id='s2'))


def test_load_visuals_real_clip_with_prefix():
    out = LoadVisuals(num_frames=3, num_image_tokens=4)(
        dict(conversations=[dict(**{'from': 'human', 'value': 'What happens? <video>'})],
             videos=['arm_wrestling.mp4'], data_root=str(REAL_CLIPS)))
    assert out['visual_frames'] == [3] and out['img_paths'][0].endswith('arm_wrestling.mp4')


def test_frame_order_probes():
    clip = numbered_clip(8)
    values = lambda out: [int(f[0, 0, 0]) for f in out['images']]  # noqa: E731
    base = dict(videos=[clip], messages=[dict(role='user', content='<video>')])
    temporal = values(LoadVisuals(num_frames=4, num_image_tokens=4)(dict(base, sample_id=1)))
    assert temporal == [10, 30, 50, 70]  # segment midpoints of 8 frames
    rev = LoadVisuals(num_frames=4, num_image_tokens=4, frame_order='reversed')
    assert values(rev(dict(base, sample_id=1))) == temporal[::-1]
    shuf = LoadVisuals(num_frames=4, num_image_tokens=4, frame_order='shuffled', seed=3)
    orders = [values(shuf(dict(base, sample_id=i))) for i in range(6)]
    assert all(sorted(o) == temporal for o in orders)
    assert any(o != temporal for o in orders)  # shuffled for most samples
    assert orders[0] == values(shuf(dict(base, sample_id=0)))  # the same sample, the same way
    with pytest.raises(ValueError, match='frame_order'):
        LoadVisuals(frame_order='random')


def _truncated_avi(tmp_path, keep: float, frames: int = 40):
    """An AVI of ``frames`` random frames cut to its first ``keep`` share of bytes: its header
    still states ``frames``, the stream ends (or breaks mid-packet) early."""
    from mmllava.utils.video_io import write_mp4
    full = tmp_path / 'full.avi'
    write_mp4(str(full), np.random.default_rng(0).integers(0, 255, (frames, 32, 32, 3), np.uint8))
    data = full.read_bytes()
    cut = tmp_path / f'cut{keep}.avi'
    cut.write_bytes(data[:int(len(data) * keep)])
    return cut


@pytest.mark.parametrize('keep', [0.7, 0.9])  # the stream ends / a packet breaks
def test_partly_decodable_clip_warns_with_the_counts(tmp_path, keep):
    from mmllava.datasets.transforms.video import PartialVideoWarning
    clip = _truncated_avi(tmp_path, keep)
    with pytest.warns(PartialVideoWarning, match=r'(\d+) of the 40 frames its header states') as w:
        frames = load_video_frames(clip, num_frames=8)
    decoded = int(str(w[0].message).split(': ')[1].split(' of')[0])
    assert 20 <= decoded < 40 and len(frames) == 8
    # Sampled from the decodable part: the same frames as decoding that part in full.
    import av
    with av.open(str(clip)) as c:
        every = []
        try:
            for f in c.decode(c.streams.video[0]):
                every.append(f.to_ndarray(format='rgb24'))
        except av.error.InvalidDataError:
            pass
    assert len(every) == decoded
    for got, i in zip(frames, sample_frame_indices(decoded, 8).tolist()):
        np.testing.assert_array_equal(got, every[i])


def test_clip_decoding_below_the_threshold_fails(tmp_path):
    clip = _truncated_avi(tmp_path, 0.3)
    with pytest.raises(ValueError, match=r'cut0.3.avi.*only \d+ of the 40 frames.*'
                       r'min_decoded_fraction=0.5'):
        load_video_frames(clip, num_frames=8)
    with pytest.warns(UserWarning, match='of the 40 frames'):  # the config's threshold
        assert len(load_video_frames(clip, num_frames=8, min_decoded_fraction=0.1)) == 8
    load = TRANSFORMS.build(dict(type='LoadVisuals', num_frames=4, num_image_tokens=4,
                                 min_decoded_fraction=0.9))
    with pytest.raises(ValueError, match='min_decoded_fraction=0.9'):
        load(dict(videos=[str(_truncated_avi(tmp_path, 0.7))], sample_id=0))
    with pytest.raises(ValueError, match='within'):
        LoadVisuals(min_decoded_fraction=1.5)


def test_recipe_sets_the_threshold():
    from mmengine.config import Config
    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs' / 'llava_action' /
                              'llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py'))
    load = cfg.test_dataloader.dataset.pipeline[0]
    assert load.type == 'LoadVisuals' and load.min_decoded_fraction == cfg.min_decoded_fraction
