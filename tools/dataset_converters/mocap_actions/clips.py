"""MoCap-Actions clip draws: what decides one clip's frames, and the held-out-viewpoint splits.

Every clip draws a random camera (azimuth, elevation, distance), body colour, background colour,
mirror flip, time window, playback speed and pixel noise (:class:`ClipParams`, drawn by
:func:`sample_clip_params`) from its own generator (:func:`clip_rng`), so the same seed gives
the same clips whatever the order of rendering.

Split rule (held-out viewpoints): the azimuth circle is cut into 12 sectors of 30 degrees;
sectors :data:`TEST_SECTORS` (60-90, 180-210 and 300-330 degrees) give the test split's
azimuths, the other nine give train and val azimuths. Train and val share viewpoints, test
has viewpoints never seen in training.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from mmllava.datasets.mocap_actions import ActionClass

from .motion import load_joint_table, motion_duration

# Single moves between two standing poses. DeepMimic's files loop them (its policies repeat
# them), but a window of 0.9-1.6 s of the loop, as for walking, often shows only the standing ends
# (spinning is 4.4 s long): a clip nobody could label. They play as one-off motions do.
SINGLE_MOVES = ('jump', 'cartwheel', 'roll', 'spin', 'backflip')

SPLITS = ('train', 'val', 'test')
AZIMUTH_SECTOR_DEG = 30
NUM_SECTORS = 360 // AZIMUTH_SECTOR_DEG
TEST_SECTORS = (2, 6, 10)
TRAIN_SECTORS = tuple(s for s in range(NUM_SECTORS) if s not in TEST_SECTORS)


@dataclasses.dataclass(frozen=True)
class ClipParams:
    """Everything that decides one clip's frames (all drawn by :func:`sample_clip_params`)."""
    motion: str
    reverse: bool
    times: Tuple[float, ...]  # motion time of each frame, in playing order (reversed if so)
    azimuth: float  # degrees, about the vertical axis
    elevation: float  # degrees above the horizontal
    distance: float  # metres from the tracked point
    body_color: Tuple[int, int, int]
    background: Tuple[int, int, int]
    flip: bool  # mirror left-right
    noise_std: float  # Gaussian pixel noise, in 0-255 units
    noise_seed: int
    size: int


def azimuth_sector(azimuth: float) -> int:
    """The 30-degree sector an azimuth (degrees) falls in."""
    return int(np.floor((azimuth % 360.0) / AZIMUTH_SECTOR_DEG)) % NUM_SECTORS


def split_sectors(split: str) -> Tuple[int, ...]:
    """Azimuth sectors a split draws from: test's are held out of train and val."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return TEST_SECTORS if split == 'test' else TRAIN_SECTORS


def _distinct_color(rng: np.random.Generator, avoid=None, min_dist: float = 120.0):
    # Background far enough from the body that the figure never vanishes.
    while True:
        c = rng.integers(0, 256, size=3)
        if avoid is None or np.linalg.norm(c - np.asarray(avoid)) >= min_dist:
            return tuple(int(v) for v in c)


def sample_clip_params(rng: np.random.Generator, action: ActionClass, split: str,
                       num_frames: int = 16, size: int = 64,
                       table: Optional[Dict[str, np.ndarray]] = None) -> ClipParams:
    """Draw one clip of an action class.

    Time window: cyclic motions (walk, run, crawl, spin kick, dances) play a window of 0.9-1.6 s
    (wrapping round the loop) from a random start; one-off motions (getups, kick, punch) and
    :data:`SINGLE_MOVES` play 75-95% of the clip, so the move (the getting-up or lying-down
    transition, the flip, the roll) is always in view. Playback speed 0.8-1.25 scales the window
    of cyclic motions (more or less motion in the same number of frames).
    """
    table = table if table is not None else load_joint_table()
    motion = action.motions[int(rng.integers(len(action.motions)))]
    duration = motion_duration(motion, table)
    cyclic = bool(table[f'{motion}/loop']) and motion not in SINGLE_MOVES
    speed = float(rng.uniform(0.8, 1.25))
    if cyclic:
        window = float(rng.uniform(0.9, 1.6)) * speed
        start = float(rng.uniform(0.0, duration))
    else:
        window = duration * float(rng.uniform(0.75, 0.95))
        start = float(rng.uniform(0.0, duration - window))
    times = start + np.linspace(0.0, window, num_frames)
    if action.reverse:
        times = times[::-1]
    sectors = split_sectors(split)
    sector = sectors[int(rng.integers(len(sectors)))]
    azimuth = (sector + float(rng.uniform(0.0, 1.0))) * AZIMUTH_SECTOR_DEG
    body = _distinct_color(rng)
    return ClipParams(
        motion=motion, reverse=action.reverse, times=tuple(float(t) for t in times),
        azimuth=azimuth, elevation=float(rng.uniform(-5.0, 30.0)),
        distance=float(rng.uniform(2.4, 3.4)), body_color=body,
        background=_distinct_color(rng, avoid=body), flip=bool(rng.integers(2)),
        noise_std=float(rng.uniform(0.0, 8.0)), noise_seed=int(rng.integers(2**31)), size=size)


def clip_rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    """A clip's own generator: independent of the order clips are rendered in."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), label,
                                                         index]))

