"""MoCap-Actions: the rendered action benchmark (tools/dataset_converters/mocap_actions/, CLI)."""
import dataclasses
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from fixtures_llava import load_tool_module

ma = load_tool_module('tools/dataset_converters/mocap_actions')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLI = osp.join(ROOT, 'tools', 'dataset_converters', 'render_mocap_actions.py')
HAS_PYBULLET = importlib.util.find_spec('pybullet') is not None
# Tiny settings: 2 training clips a class (1 val, 1 test), 6 frames of 32 px, stick figures.
TINY = dict(clips_per_class=2, num_frames=6, size=32, renderer='numpy')


def _cli():
    spec = importlib.util.spec_from_file_location('render_mocap_actions', CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('mocap') / 'a')
    assert _cli().main(['--out', out, '--seed', '3', '--clips-per-class', '2', '--frames', '6',
                        '--size', '32', '--renderer', 'numpy', '--quiet']) == 0
    return out


def _list(path):
    with open(path) as f:
        return [line.split() for line in f.read().splitlines()]


def test_classes_and_question():
    assert len(ma.CLASS_NAMES) >= 10 and len(set(ma.CLASS_NAMES)) == len(ma.CLASS_NAMES)
    for forward, backward in (('walking', 'walking backward'), ('getting up', 'lying down')):
        f, b = (ma.CLASSES[ma.CLASS_NAMES.index(n)] for n in (forward, backward))
        assert f.motions == b.motions and not f.reverse and b.reverse
    assert {m for c in ma.CLASSES for m in c.motions} == set(ma.MOTIONS)
    assert all(name in ma.MOCAP_ACTION_QUESTION for name in ma.CLASS_NAMES)


def test_files_and_formats(rendered):
    with open(osp.join(rendered, 'label_map.txt')) as f:
        assert f.read().splitlines() == list(ma.CLASS_NAMES)
    counts = ma.split_counts(2)
    for split in ma.SPLITS:
        videos = _list(osp.join(rendered, f'{split}_list_videos.txt'))
        assert len(videos) == counts[split] * len(ma.CLASSES)
        labels = [int(label) for _, label in videos]
        assert set(labels) == set(range(len(ma.CLASSES)))  # every class, labels in range
        for path, _ in videos:
            assert osp.isfile(osp.join(rendered, 'videos', path)), path
        for name, total, label in _list(osp.join(rendered, f'{split}_list_rawframes.txt')):
            frames = sorted(os.listdir(osp.join(rendered, 'rawframes', name)))
            assert int(total) == 6 and frames[0] == 'img_00001.jpg' and len(frames) == 6
        with open(osp.join(rendered, f'{split}_llava.json')) as f:
            samples = json.load(f)
        assert [s['video'] for s in samples] == [p for p, _ in videos]
        for sample, (_, label) in zip(samples, videos):
            human, gpt = sample['conversations']
            assert human == {'from': 'human', 'value': '<video>\n' + ma.MOCAP_ACTION_QUESTION}
            assert gpt == {'from': 'gpt', 'value': ma.CLASS_NAMES[int(label)]}


def test_video_decodes(rendered):
    av = pytest.importorskip('av')
    path = _list(osp.join(rendered, 'train_list_videos.txt'))[0][0]
    with av.open(osp.join(rendered, 'videos', path)) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)


def test_deterministic(rendered, tmp_path):
    again = str(tmp_path / 'b')
    ma.render_mocap_actions(again, seed=3, **TINY)
    names = [f'{s}_{k}' for s in ma.SPLITS
             for k in ('list_videos.txt', 'list_rawframes.txt', 'llava.json')]
    for name in names + ['label_map.txt']:
        with open(osp.join(rendered, name), 'rb') as a, open(osp.join(again, name), 'rb') as b:
            assert a.read() == b.read(), name
    for clip in sorted(os.listdir(osp.join(rendered, 'rawframes')))[::7]:
        for frame in ('img_00001.jpg', 'img_00006.jpg'):
            with open(osp.join(rendered, 'rawframes', clip, frame), 'rb') as a, \
                    open(osp.join(again, 'rawframes', clip, frame), 'rb') as b:
                assert a.read() == b.read(), (clip, frame)
    videos = sorted(os.listdir(osp.join(rendered, 'videos')))
    assert videos == sorted(os.listdir(osp.join(again, 'videos')))
    for video in videos:
        with open(osp.join(rendered, 'videos', video), 'rb') as a, \
                open(osp.join(again, 'videos', video), 'rb') as b:
            assert a.read() == b.read(), video
    # Another seed draws other clips.
    rng_a, rng_b = ma.clip_rng(3, 'train', 0, 0), ma.clip_rng(4, 'train', 0, 0)
    assert ma.sample_clip_params(rng_a, ma.CLASSES[0], 'train') != \
        ma.sample_clip_params(rng_b, ma.CLASSES[0], 'train')


def test_held_out_azimuths():
    assert set(ma.TEST_SECTORS).isdisjoint(ma.TRAIN_SECTORS)
    assert set(ma.TEST_SECTORS) | set(ma.TRAIN_SECTORS) == set(range(ma.NUM_SECTORS))
    sectors = {}
    for split in ma.SPLITS:
        sectors[split] = {
            ma.azimuth_sector(ma.sample_clip_params(ma.clip_rng(0, split, label, i), action,
                                                    split).azimuth)
            for label, action in enumerate(ma.CLASSES) for i in range(8)}
    assert sectors['test'] <= set(ma.TEST_SECTORS)
    assert (sectors['train'] | sectors['val']) <= set(ma.TRAIN_SECTORS)
    assert sectors['test'].isdisjoint(sectors['train'] | sectors['val'])


@pytest.mark.parametrize('motion', ma.SINGLE_MOVES)
def test_single_moves_always_in_view(motion):
    # The move's lowest head (the flip, the roll, the crouch of the jump) lies in every clip's
    # window; with the walking window of 0.9-1.6 s many clips of these would miss it.
    table = ma.load_joint_table()
    assert table[f'{motion}/loop']  # the file loops it: the rule below is what keeps it whole
    duration = ma.motion_duration(motion, table)
    grid = np.linspace(0.0, duration, 400)
    head = ma.motion_points(motion, grid, table)[:, ma.POINT_NAMES.index('head'), 1]
    lowest = grid[head.argmin()]
    assert head.min() < head[0] - 0.3 and head[-1] > head.min() + 0.3  # stand, move, stand
    label = next(i for i, c in enumerate(ma.CLASSES) if motion in c.motions)
    for index in range(40):
        times = ma.sample_clip_params(ma.clip_rng(0, 'train', label, index), ma.CLASSES[label],
                                      'train', num_frames=8, table=table).times
        assert min(times) <= lowest <= max(times) <= duration
        assert 0.75 * duration - 1e-6 <= max(times) - min(times) <= 0.95 * duration + 1e-6
    # Cyclic motions keep the short wrapping window.
    walk = ma.sample_clip_params(ma.clip_rng(0, 'train', 0, 0), ma.CLASSES[0], 'train',
                                 table=table).times
    assert max(walk) - min(walk) <= 1.6 * 1.25


@pytest.mark.parametrize('backward', ['walking backward', 'lying down'])
def test_reversed_pair_is_time_reversal(backward):
    label = ma.CLASS_NAMES.index(backward)
    params = ma.sample_clip_params(ma.clip_rng(0, 'train', label, 0), ma.CLASSES[label],
                                   'train', num_frames=8, size=32)
    assert params.reverse and list(params.times) == sorted(params.times, reverse=True)
    forward = dataclasses.replace(params, reverse=False, times=params.times[::-1])
    renderer = ma.build_renderer('numpy')
    frames_b = ma.render_clean_frames(params, renderer)
    frames_f = ma.render_clean_frames(forward, renderer)
    np.testing.assert_array_equal(frames_b, frames_f[::-1])
    assert not np.array_equal(frames_b, frames_f)  # the motion really moves
    # Flip and noise are per-clip, not per-time: the finished clip reverses too (noise aside).
    clean = dataclasses.replace(params, noise_std=0.0)
    np.testing.assert_array_equal(
        ma.render_clip(clean, renderer),
        ma.render_clip(dataclasses.replace(forward, noise_std=0.0), renderer)[::-1])


def test_numpy_renderer_draws_figure():
    params = ma.sample_clip_params(ma.clip_rng(0, 'val', 0, 0), ma.CLASSES[0], 'val',
                                   num_frames=4, size=32)
    frames = ma.render_clean_frames(params, ma.build_renderer('numpy'))
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    figure = np.any(frames != np.asarray(params.background, np.uint8), axis=-1)
    # A figure: some pixels, but far from the whole frame, and near the centre (camera tracks).
    for mask in figure:
        assert 10 < mask.sum() < 0.5 * mask.size
        ys, xs = np.nonzero(mask)
        assert 8 < xs.mean() < 24 and 4 < ys.mean() < 28


def test_motion_points_loop_continuity():
    table = ma.load_joint_table()
    duration = ma.motion_duration('walk', table)
    eps = 1e-4
    before, after = ma.motion_points('walk', [duration - eps, duration + eps], table)
    # The next cycle starts where this one ended: the pelvis exactly, limbs as well as the
    # capture's own loop closes (a few cm).
    assert np.abs(before[0] - after[0]).max() < 0.005 and np.abs(before - after).max() < 0.1
    points = ma.motion_points('getup_faceup', [0.0, ma.motion_duration('getup_faceup')])
    head = ma.POINT_NAMES.index('head')
    assert points[0, head, 1] < 0.4 < 1.3 < points[1, head, 1]  # lying, then standing (y up)


def test_missing_table_without_pybullet(tmp_path, monkeypatch):
    monkeypatch.setattr(ma.motion, '_require_pybullet',
                        lambda: (_ for _ in ()).throw(ImportError('no pybullet')))
    with pytest.raises(FileNotFoundError, match='pybullet'):
        ma.load_joint_table(str(tmp_path / 'missing.npz'))


@pytest.mark.skipif(not HAS_PYBULLET, reason='pybullet not installed')
def test_pybullet_renderer_matches_table():
    # The shipped table is pybullet's forward kinematics (float16), and pybullet renders.
    computed = ma.compute_joint_table()
    shipped = ma.load_joint_table()
    for motion in ma.MOTIONS:
        np.testing.assert_allclose(shipped[f'{motion}/points'], computed[f'{motion}/points'],
                                   atol=5e-3)
    label = ma.CLASS_NAMES.index('lying down')
    params = ma.sample_clip_params(ma.clip_rng(0, 'test', label, 0), ma.CLASSES[label], 'test',
                                   num_frames=4, size=32)
    renderer = ma.build_renderer('pybullet')
    try:
        frames = ma.render_clean_frames(params, renderer)
        forward = dataclasses.replace(params, reverse=False, times=params.times[::-1])
        np.testing.assert_array_equal(frames, ma.render_clean_frames(forward, renderer)[::-1])
    finally:
        renderer.close()
    figure = np.any(frames != np.asarray(params.background, np.uint8), axis=-1)
    assert all(10 < m.sum() < 0.6 * m.size for m in figure)
