"""mmllava.utils.video_io: clips written as mp4 and rawframes read back as the same clips."""
import os

import numpy as np
import pytest
from PIL import Image

from mmllava.utils.video_io import write_mp4, write_rawframes


def moving_clip(t=5, h=32, w=48):
    """A bright square moving over a colour gradient: smooth, so lossy codecs keep it close."""
    y, x = np.mgrid[:h, :w]
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
        frames[i, ..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
        frames[i, ..., 2] = 60
        frames[i, 8:20, 4 + 6 * i:16 + 6 * i] = (250, 250, 40)
    return frames


def test_mp4_reads_back_as_the_clip(tmp_path):
    av = pytest.importorskip('av')
    frames = moving_clip()
    path = str(tmp_path / 'c.mp4')
    write_mp4(path, frames, fps=10)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == 'mpeg4' and stream.average_rate == 10
        decoded = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])
    assert decoded.shape == frames.shape
    diff = np.abs(decoded.astype(int) - frames.astype(int))
    assert diff.mean() < 8, diff.mean()  # 4:2:0 chroma and the codec's own loss only
    # Each frame is its own frame, in order: nearest to the frame written at its place.
    for i, frame in enumerate(decoded):
        errors = [np.abs(frame.astype(int) - f.astype(int)).mean() for f in frames]
        assert int(np.argmin(errors)) == i, errors


def test_mp4_bytes_are_reproducible(tmp_path):
    pytest.importorskip('av')
    frames = moving_clip()
    a, b = str(tmp_path / 'a.mp4'), str(tmp_path / 'b.mp4')
    write_mp4(a, frames)
    write_mp4(b, frames)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        assert fa.read() == fb.read()


def test_rawframes_read_back_as_the_clip(tmp_path):
    frames = moving_clip(t=3)
    folder = str(tmp_path / 'new' / 'clip')  # made with its parents
    write_rawframes(folder, frames)
    assert sorted(os.listdir(folder)) == ['img_00001.jpg', 'img_00002.jpg', 'img_00003.jpg']
    for i, frame in enumerate(frames, 1):
        with Image.open(os.path.join(folder, f'img_{i:05d}.jpg')) as image:
            assert image.format == 'JPEG' and image.size == (48, 32)
            read = np.asarray(image.convert('RGB')).astype(int)
        assert np.abs(read - frame.astype(int)).mean() < 3  # quality 95
