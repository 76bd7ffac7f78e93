"""Write clips as files: an mp4 that is byte-reproducible, and mmaction2 rawframe folders.

A base layer (numpy, PyAV, PIL and the standard library only), so that the dataset renderer
under ``tools/`` and the tests write videos the same way without importing anything else of
mmllava.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image


def write_mp4(path: str, frames: np.ndarray, fps: int = 15):
    """Write an MPEG-4 (part 2) mp4 through PyAV: the same frames give the same bytes, always.

    Why not H.264: libx264 through PyAV gave different bytes (and decoded pixels off by up to
    25 levels) for the same frames in different processes, even single-threaded; FFmpeg's
    own ``mpeg4`` encoder with bitexact flags is reproducible, and every decoder reads it.

    Args:
        path (str): Output file (replaced if it exists).
        frames (np.ndarray): ``(T, H, W, 3)`` uint8 RGB; H and W even (4:2:0 chroma).
        fps (int): Nominal frame rate written in the stream.
    """
    import av  # PyAV is only needed to write videos
    # bitexact: no encoder version or other run-dependent bytes in the container either.
    with av.open(path, mode='w', options={'fflags': '+bitexact'}) as container:
        stream = container.add_stream('mpeg4', rate=fps, options={'flags': '+bitexact'})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        # The encoder's default rate (about 1.5 kbit a frame at 64 px) leaves the figure
        # blurred and blocky after the first frame; 2 Mbit/s keeps every frame within the
        # 4:2:0 conversion's own error (mean 6 levels against 5.5, noise included).
        stream.bit_rate = 2_000_000
        stream.pix_fmt = 'yuv420p'
        stream.thread_count = 1
        stream.thread_type = 'NONE'
        for frame in frames:
            yuv = av.VideoFrame.from_ndarray(frame, format='rgb24').reformat(format='yuv420p')
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_rawframes(folder: str, frames: np.ndarray):
    """Write ``folder/img_00001.jpg ...`` (mmaction2 rawframes, numbered from 1, JPEG q95).

    Args:
        folder (str): Output folder (created if missing).
        frames (np.ndarray): ``(T, H, W, 3)`` uint8 RGB.
    """
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(osp.join(folder, f'img_{i:05d}.jpg'), quality=95)
