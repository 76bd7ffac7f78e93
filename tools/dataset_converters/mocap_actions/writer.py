"""MoCap-Actions dataset writer: renders every clip of every split into the benchmark's layout.

Layout written by :func:`render_mocap_actions` (``tools/dataset_converters/
render_mocap_actions.py`` is its CLI)::

    DIR/videos/<clip>.mp4                        MPEG-4 part 2, yuv420p
    DIR/rawframes/<clip>/img_00001.jpg ...       mmaction2 rawframe layout
    DIR/{train,val,test}_list_videos.txt         mmaction2 video list ``path label``, path
                                                 relative to DIR/videos
    DIR/{train,val,test}_list_rawframes.txt      mmaction2 rawframe list ``dir total_frames
                                                 label``, dir relative to DIR/rawframes
    DIR/label_map.txt                            one class name a line, line i = label i
    DIR/{train,val,test}_llava.json              LLaVA instruction JSON, ``"video"`` relative
                                                 to DIR/videos (as the video lists)

Deterministic per seed: each clip's random draws come from its own generator seeded by
``(seed, split, label, index)``, so the same seed gives the same frames, rawframes, lists and
JSON whatever the order of rendering; the mp4 files are byte-identical too (see
:func:`mmllava.utils.video_io.write_mp4`).
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, Optional, Sequence

from mmllava.datasets.mocap_actions import CLASS_NAMES, CLASSES, MOCAP_ACTION_QUESTION
from mmllava.utils.video_io import write_mp4, write_rawframes

from .clips import SPLITS, clip_rng, sample_clip_params
from .motion import load_joint_table
from .render import build_renderer, render_clip

FPS = 15  # nominal frame rate of the written videos


def clip_name(split: str, label: int, index: int) -> str:
    """A clip's file stem, e.g. ``train_walking_backward_0003``."""
    return f'{split}_{CLASS_NAMES[label].replace(" ", "_")}_{index:04d}'


def split_counts(clips_per_class: int) -> Dict[str, int]:
    """Clips per class in each split: train N, val ceil(N/4), test ceil(N/2)."""
    n = int(clips_per_class)
    if n < 1:
        raise ValueError('clips_per_class must be at least 1')
    return {'train': n, 'val': -(-n // 4), 'test': -(-n // 2)}


def llava_sample(name: str, video: str, label: int) -> dict:
    """One LLaVA instruction sample: the closed-set question and the class name."""
    return {'id': name, 'video': video, 'conversations': [
        {'from': 'human', 'value': '<video>\n' + MOCAP_ACTION_QUESTION},
        {'from': 'gpt', 'value': CLASS_NAMES[label]}]}


def render_mocap_actions(out_dir: str, seed: int = 0, clips_per_class: int = 40,
                         num_frames: int = 16, size: int = 64, renderer: str = 'pybullet',
                         write_videos: bool = True, write_frames: bool = True,
                         progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, int]:
    """Render the benchmark into ``out_dir`` (layout in the module docstring).

    Args:
        out_dir (str): Output folder (created; existing files of the same names are replaced).
        seed (int): Random seed; the same seed gives the same files.
        clips_per_class (int): Training clips per class; val gets a quarter, test a half
            (rounded up).
        num_frames (int): Frames per clip.
        size (int): Frame side in pixels (even, for 4:2:0 chroma).
        renderer (str): ``'pybullet'`` or ``'numpy'``.
        write_videos (bool): Write ``videos/*.mp4``.
        write_frames (bool): Write ``rawframes/``.
        progress (callable, optional): Called as ``progress(done, total)`` after each clip.

    Returns:
        dict: Number of clips per split.
    """
    if size % 2:
        raise ValueError('size must be even (4:2:0 chroma)')
    counts = split_counts(clips_per_class)
    table = load_joint_table()
    engine = build_renderer(renderer, table)
    os.makedirs(osp.join(out_dir, 'videos'), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'rawframes'), exist_ok=True)
    total = sum(counts.values()) * len(CLASSES)
    done = 0
    try:
        for split in SPLITS:
            videos, rawframes, samples = [], [], []
            for label, action in enumerate(CLASSES):
                for index in range(counts[split]):
                    params = sample_clip_params(clip_rng(seed, split, label, index), action,
                                                split, num_frames, size, table)
                    frames = render_clip(params, engine)
                    name = clip_name(split, label, index)
                    if write_videos:
                        write_mp4(osp.join(out_dir, 'videos', name + '.mp4'), frames, fps=FPS)
                    if write_frames:
                        write_rawframes(osp.join(out_dir, 'rawframes', name), frames)
                    videos.append(f'{name}.mp4 {label}')
                    rawframes.append(f'{name} {num_frames} {label}')
                    samples.append(llava_sample(name, name + '.mp4', label))
                    done += 1
                    if progress is not None:
                        progress(done, total)
            _write_lines(osp.join(out_dir, f'{split}_list_videos.txt'), videos)
            _write_lines(osp.join(out_dir, f'{split}_list_rawframes.txt'), rawframes)
            with open(osp.join(out_dir, f'{split}_llava.json'), 'w') as f:
                json.dump(samples, f, indent=1)
                f.write('\n')
    finally:
        engine.close()
    _write_lines(osp.join(out_dir, 'label_map.txt'), CLASS_NAMES)
    return {split: counts[split] * len(CLASSES) for split in SPLITS}


def _write_lines(path: str, lines: Sequence[str]):
    with open(path, 'w') as f:
        f.write(''.join(line + '\n' for line in lines))
