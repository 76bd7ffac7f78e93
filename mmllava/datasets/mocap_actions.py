"""MoCap-Actions: a human action benchmark rendered from the motion-capture clips pybullet ships.

pybullet ships 15 DeepMimic clips of a humanoid (walk, run, jump, punch, kick, cartwheel, crawl,
roll, spin, spinkick, backflip, dance_a, dance_b, getup_faceup, getup_facedown). We render them
into :data:`CLASS_NAMES` (15 classes), two of them time-reversed pairs that no single frame and
no unordered set of frames can separate: "walking backward" is the walk clip played in reverse,
"lying down" is a getup clip played in reverse. A model has to use frame order to tell them
apart.

The motion data is pybullet's (zlib licence); ``mocap_actions_joints.npz`` beside this module
holds joint positions computed from it by pybullet (``--export-joint-table`` remakes it), so
the numpy renderer works without pybullet.

Every clip draws a random camera (azimuth, elevation, distance), body colour, background colour,
mirror flip, time window, playback speed and pixel noise. The camera follows the pelvis in the
ground plane, so the figure stays in view while it walks or runs.

Split rule (held-out viewpoints): the azimuth circle is cut into 12 sectors of 30 degrees;
sectors :data:`TEST_SECTORS` (60-90, 180-210 and 300-330 degrees) give the test split's
azimuths, the other nine give train and val azimuths. Train and val share viewpoints, test
has viewpoints never seen in training.

Layout written by :func:`render_mocap_actions` (also ``tools/dataset_converters/
render_mocap_actions.py``)::

    DIR/videos/<clip>.mp4                        MPEG-4 part 2, yuv420p
    DIR/rawframes/<clip>/img_00001.jpg ...       mmaction2 rawframe layout
    DIR/{train,val,test}_list_videos.txt         mmaction2 video list ``path label``, path
                                                 relative to DIR/videos
    DIR/{train,val,test}_list_rawframes.txt      mmaction2 rawframe list ``dir total_frames
                                                 label``, dir relative to DIR/rawframes
    DIR/label_map.txt                            one class name a line, line i = label i
    DIR/{train,val,test}_llava.json              LLaVA instruction JSON, ``"video"`` relative
                                                 to DIR/videos (as the video lists)

Two renderers draw the same poses: ``'pybullet'`` (the humanoid's capsules through pybullet's
CPU TinyRenderer) and ``'numpy'`` (a stick figure drawn with PIL from the humanoid's joint
positions). The numpy renderer reads the joint positions from a small table shipped beside
this module (:data:`JOINT_TABLE`, made from pybullet by :func:`export_joint_table`), so it works
where pybullet is absent.

Deterministic per seed: each clip's random draws come from its own generator seeded by
``(seed, split, label, index)``, so the same seed gives the same frames, rawframes, lists and
JSON whatever the order of rendering; the mp4 files are byte-identical too (see
:func:`write_mp4`).
"""
import contextlib
import dataclasses
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

MOTIONS = ('walk', 'run', 'jump', 'punch', 'kick', 'cartwheel', 'crawl', 'roll', 'spin',
           'spinkick', 'backflip', 'dance_a', 'dance_b', 'getup_faceup', 'getup_facedown')


@dataclasses.dataclass(frozen=True)
class ActionClass:
    """One action class: its name, the motions it draws from and whether they play reversed."""
    name: str
    motions: Tuple[str, ...]
    reverse: bool = False


CLASSES = (
    ActionClass('walking', ('walk', )),
    ActionClass('walking backward', ('walk', ), reverse=True),
    ActionClass('running', ('run', )),
    ActionClass('jumping', ('jump', )),
    ActionClass('punching', ('punch', )),
    ActionClass('kicking', ('kick', )),
    ActionClass('doing a cartwheel', ('cartwheel', )),
    ActionClass('crawling', ('crawl', )),
    ActionClass('rolling', ('roll', )),
    ActionClass('spinning', ('spin', )),
    ActionClass('doing a spin kick', ('spinkick', )),
    ActionClass('doing a backflip', ('backflip', )),
    ActionClass('dancing', ('dance_a', 'dance_b')),
    ActionClass('getting up', ('getup_faceup', 'getup_facedown')),
    ActionClass('lying down', ('getup_faceup', 'getup_facedown'), reverse=True),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
# The closed-set question; the model's default question for this benchmark.
MOCAP_ACTION_QUESTION = ('What is the person doing? Answer with one of: ' + ', '.join(CLASS_NAMES)
                         + '.')

# Single moves between two standing poses. DeepMimic's files loop them (its policies repeat
# them), but a window of 0.9-1.6 s of the loop, as for walking, often shows only the standing ends
# (spinning is 4.4 s long): a clip nobody could label. They play as one-off motions do.
SINGLE_MOVES = ('jump', 'cartwheel', 'roll', 'spin', 'backflip')

SPLITS = ('train', 'val', 'test')
AZIMUTH_SECTOR_DEG = 30
NUM_SECTORS = 360 // AZIMUTH_SECTOR_DEG
TEST_SECTORS = (2, 6, 10)
TRAIN_SECTORS = tuple(s for s in range(NUM_SECTORS) if s not in TEST_SECTORS)

# Points of the stick figure, in the table's order; humanoid link indices in the comments.
POINT_NAMES = ('pelvis', 'chest', 'neck', 'head', 'right_hip', 'right_knee', 'right_ankle',
               'right_toe', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_hip',
               'left_knee', 'left_ankle', 'left_toe', 'left_shoulder', 'left_elbow',
               'left_wrist')
# Link frame origins of the humanoid URDF (pybullet link index) for the joint points.
_POINT_LINKS = {'pelvis': 0, 'chest': 1, 'neck': 2, 'right_hip': 3, 'right_knee': 4,
                'right_ankle': 5, 'right_shoulder': 6, 'right_elbow': 7, 'right_wrist': 8,
                'left_hip': 9, 'left_knee': 10, 'left_ankle': 11, 'left_shoulder': 12,
                'left_elbow': 13, 'left_wrist': 14}
# Head centre in the neck's frame and toe in the ankle's frame (URDF visual shapes, scaled).
_HEAD_OFFSET = (0.0, 0.175, 0.0)
_TOE_OFFSET = (0.13, -0.045, 0.0)
_P = {n: i for i, n in enumerate(POINT_NAMES)}
BONES = tuple((_P[a], _P[b]) for a, b in (
    ('pelvis', 'chest'), ('chest', 'neck'), ('neck', 'head'), ('pelvis', 'right_hip'),
    ('right_hip', 'right_knee'), ('right_knee', 'right_ankle'), ('right_ankle', 'right_toe'),
    ('pelvis', 'left_hip'), ('left_hip', 'left_knee'), ('left_knee', 'left_ankle'),
    ('left_ankle', 'left_toe'), ('neck', 'right_shoulder'), ('right_shoulder', 'right_elbow'),
    ('right_elbow', 'right_wrist'), ('neck', 'left_shoulder'), ('left_shoulder', 'left_elbow'),
    ('left_elbow', 'left_wrist')))

# DeepMimic frame layout: duration, root pos (3), root rot (4, w x y z), then the joints in
# this order, 4 numbers (quaternion w x y z) or 1 (revolute angle) each; humanoid link index.
_FRAME_JOINTS = (('chest', 1, 4), ('neck', 2, 4), ('right_hip', 3, 4), ('right_knee', 4, 1),
                 ('right_ankle', 5, 4), ('right_shoulder', 6, 4), ('right_elbow', 7, 1),
                 ('left_hip', 9, 4), ('left_knee', 10, 1), ('left_ankle', 11, 4),
                 ('left_shoulder', 12, 4), ('left_elbow', 13, 1))
_URDF_SCALE = 0.25  # as pybullet's deep_mimic env loads the humanoid

JOINT_TABLE = osp.join(osp.dirname(osp.abspath(__file__)), 'mocap_actions_joints.npz')

FPS = 15  # nominal frame rate of the written videos
FOV_DEG = 45.0
BODY_WIDTH = 0.07  # stick-figure limb thickness in metres
HEAD_RADIUS = 0.11


# --------------------------------------------------------------------------------------------
# Motion data
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_fds():
    """Silence C-level stdout and stderr (pybullet prints its build time and URDF warnings)."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def _require_pybullet():
    try:
        with _quiet_fds():
            import pybullet
            import pybullet_data
    except ImportError as e:
        raise ImportError('This needs pybullet (pip install pybullet): it ships the DeepMimic '
                          'motion-capture clips and the humanoid.') from e
    return pybullet, pybullet_data


def motion_file(motion: str) -> str:
    """Path of a DeepMimic motion file in pybullet's data (needs pybullet)."""
    _, pybullet_data = _require_pybullet()
    return osp.join(pybullet_data.getDataPath(), 'data', 'motions', f'humanoid3d_{motion}.txt')


def load_motion_frames(motion: str) -> Tuple[np.ndarray, bool]:
    """Read a DeepMimic motion: ``(frames (K, 44), loops)``, keyframe rows as in the file."""
    with open(motion_file(motion)) as f:
        data = json.load(f)
    frames = np.asarray(data['Frames'], dtype=np.float64)
    assert frames.shape[1] == 44, f'unexpected DeepMimic frame width {frames.shape}'
    return frames, data['Loop'] == 'wrap'


class _Humanoid:
    """The DeepMimic humanoid in a pybullet DIRECT client: poses and camera images."""

    def __init__(self):
        p, pybullet_data = _require_pybullet()
        self.p = p
        with _quiet_fds():
            self.client = p.connect(p.DIRECT)
            self.body = p.loadURDF(
                osp.join(pybullet_data.getDataPath(), 'humanoid', 'humanoid.urdf'), [0, 0, 0],
                globalScaling=_URDF_SCALE, useFixedBase=True,
                flags=p.URDF_MAINTAIN_LINK_ORDER, physicsClientId=self.client)
        self.num_links = p.getNumJoints(self.body, physicsClientId=self.client)
        self._color = None

    def close(self):
        self.p.disconnect(self.client)

    def set_pose(self, row: np.ndarray):
        """Set a DeepMimic frame row (duration first; quaternions w x y z)."""
        p, c = self.p, self.client
        p.resetBasePositionAndOrientation(self.body, row[1:4].tolist(), _xyzw(row[4:8]),
                                          physicsClientId=c)
        i = 8
        for _, link, width in _FRAME_JOINTS:
            value = _xyzw(row[i:i + 4]) if width == 4 else [float(row[i])]
            p.resetJointStateMultiDof(self.body, link, value, physicsClientId=c)
            i += width

    def points(self) -> np.ndarray:
        """The stick figure's points (``(len(POINT_NAMES), 3)``) for the current pose."""
        p, c = self.p, self.client
        out = np.zeros((len(POINT_NAMES), 3))
        for name, link in _POINT_LINKS.items():
            if link == 0:  # the root link sits on the base
                out[_P[name]] = p.getBasePositionAndOrientation(self.body, physicsClientId=c)[0]
            else:
                out[_P[name]] = p.getLinkState(self.body, link, physicsClientId=c)[4]
        for name, link, offset in (('head', 2, _HEAD_OFFSET), ('right_toe', 5, _TOE_OFFSET),
                                   ('left_toe', 11, _TOE_OFFSET)):
            state = p.getLinkState(self.body, link, physicsClientId=c)
            out[_P[name]] = p.multiplyTransforms(state[4], state[5], offset, [0, 0, 0, 1])[0]
        return out

    def render(self, eye, target, size: int, color) -> Tuple[np.ndarray, np.ndarray]:
        """Camera image: ``(rgb (size, size, 3) uint8, body mask (size, size) bool)``."""
        p, c = self.p, self.client
        if self._color != tuple(color):
            rgba = [v / 255 for v in color] + [1]
            for link in range(-1, self.num_links):
                p.changeVisualShape(self.body, link, rgbaColor=rgba, physicsClientId=c)
            self._color = tuple(color)
        view = p.computeViewMatrix(list(eye), list(target), [0, 1, 0], physicsClientId=c)
        proj = p.computeProjectionMatrixFOV(FOV_DEG, 1.0, 0.05, 30.0, physicsClientId=c)
        _, _, rgba, _, seg = p.getCameraImage(size, size, view, proj,
                                              renderer=p.ER_TINY_RENDERER,
                                              physicsClientId=c)
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)
        seg = np.asarray(seg).reshape(size, size)
        return rgba[..., :3].copy(), seg >= 0


def _xyzw(q_wxyz: np.ndarray) -> List[float]:
    w, x, y, z = (float(v) for v in q_wxyz)
    return [x, y, z, w]


def compute_joint_table() -> Dict[str, np.ndarray]:
    """Forward kinematics of every keyframe of every motion through pybullet.

    Returns:
        dict: for each motion ``m``: ``m/points`` ``(K, P, 3)`` float32 (metres, y up),
        ``m/times`` ``(K,)`` float32 (seconds) and ``m/loop`` (bool).
    """
    humanoid = _Humanoid()
    table = {}
    try:
        for motion in MOTIONS:
            frames, loop = load_motion_frames(motion)
            points = []
            for row in frames:
                humanoid.set_pose(row)
                points.append(humanoid.points())
            table[f'{motion}/points'] = np.asarray(points, dtype=np.float32)
            table[f'{motion}/times'] = np.concatenate(
                [[0.0], np.cumsum(frames[:-1, 0])]).astype(np.float32)
            table[f'{motion}/loop'] = np.asarray(loop)
    finally:
        humanoid.close()
    return table


def export_joint_table(path: str = JOINT_TABLE) -> str:
    """Write the joint table the numpy renderer reads (positions as float16: ~2 mm steps)."""
    table = compute_joint_table()
    table = {k: v.astype(np.float16) if k.endswith('/points') else v for k, v in table.items()}
    np.savez_compressed(path, **table)
    return path


_TABLE_CACHE: Dict[str, Dict[str, np.ndarray]] = {}


def load_joint_table(path: str = JOINT_TABLE) -> Dict[str, np.ndarray]:
    """The joint table: the shipped file, else computed through pybullet, else an error."""
    if path not in _TABLE_CACHE:
        if osp.exists(path):
            with np.load(path) as data:
                table = {k: data[k] for k in data.files}
            table = {k: v.astype(np.float32) if k.endswith('/points') else v
                     for k, v in table.items()}
        else:
            try:
                table = compute_joint_table()
            except ImportError as e:
                raise FileNotFoundError(
                    f'No joint table at {path} and pybullet is absent: install pybullet, or '
                    'make the table where it is present with `python tools/dataset_converters/'
                    'render_mocap_actions.py --export-joint-table`.') from e
        _TABLE_CACHE[path] = table
    return _TABLE_CACHE[path]


def motion_duration(motion: str, table: Optional[Dict[str, np.ndarray]] = None) -> float:
    """Length of a motion in seconds."""
    table = table if table is not None else load_joint_table()
    return float(table[f'{motion}/times'][-1])


def _keyframe_lookup(times: np.ndarray, loop: bool, t: np.ndarray):
    """Keyframe index, fraction and whole cycles for each time (loops wrap, others clamp)."""
    duration = float(times[-1])
    if loop:
        cycles = np.floor(t / duration)
        local = t - cycles * duration
    else:
        cycles = np.zeros_like(t)
        local = np.clip(t, 0.0, duration)
    idx = np.clip(np.searchsorted(times, local, side='right') - 1, 0, len(times) - 2)
    frac = np.clip((local - times[idx]) / (times[idx + 1] - times[idx]), 0.0, 1.0)
    return idx, frac, cycles


def motion_points(motion: str, t: Sequence[float],
                  table: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
    """Stick-figure points at times ``t`` (seconds): ``(len(t), P, 3)``.

    Linear between keyframes. Looping clips wrap and carry on from where the last cycle ended
    (the pelvis displacement of a cycle is added per cycle, as DeepMimic does).
    """
    table = table if table is not None else load_joint_table()
    points, times = table[f'{motion}/points'], table[f'{motion}/times']
    idx, frac, cycles = _keyframe_lookup(times, bool(table[f'{motion}/loop']),
                                         np.asarray(t, dtype=np.float64))
    out = points[idx] * (1 - frac)[:, None, None] + points[idx + 1] * frac[:, None, None]
    shift = points[-1, 0] - points[0, 0]
    shift[1] = 0.0  # cycles move along the ground only
    return out + cycles[:, None, None] * shift


def _slerp(q0: np.ndarray, q1: np.ndarray, f: float) -> np.ndarray:
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    d = float(np.dot(q0, q1))
    if d < 0:  # the short way round
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + f * (q1 - q0)
    else:
        theta = np.arccos(d)
        q = (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


def motion_rows(motion: str, t: Sequence[float],
                frames: Optional[np.ndarray] = None, loop: Optional[bool] = None) -> np.ndarray:
    """DeepMimic pose rows at times ``t``: slerp between keyframes, loops wrap as above."""
    if frames is None:
        frames, loop = load_motion_frames(motion)
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    idx, frac, cycles = _keyframe_lookup(times, bool(loop), np.asarray(t, dtype=np.float64))
    shift = frames[-1, 1:4] - frames[0, 1:4]
    shift[1] = 0.0
    rows = []
    for i, f, k in zip(idx, frac, cycles):
        a, b = frames[i], frames[i + 1]
        row = a.copy()
        row[1:4] = a[1:4] + f * (b[1:4] - a[1:4]) + k * shift
        row[4:8] = _slerp(a[4:8], b[4:8], f)
        j = 8
        for _, _, width in _FRAME_JOINTS:
            if width == 4:
                row[j:j + 4] = _slerp(a[j:j + 4], b[j:j + 4], f)
            else:
                row[j] = a[j] + f * (b[j] - a[j])
            j += width
        rows.append(row)
    return np.asarray(rows)


# --------------------------------------------------------------------------------------------
# Clip parameters
# --------------------------------------------------------------------------------------------
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


def camera_path(points: np.ndarray, params: ClipParams) -> Tuple[np.ndarray, np.ndarray]:
    """Eye and target per frame: the target follows the pelvis on the ground, at a fixed height.

    Both depend on the frame's pose only (and the clip-wide mean height), so reversing the
    frame order reverses the camera path too: no camera motion tells the direction of time.
    """
    target = points[:, _P['pelvis']].copy()
    target[:, 1] = np.clip(target[:, 1].mean(), 0.35, 0.9)
    az, el = np.deg2rad(params.azimuth), np.deg2rad(params.elevation)
    direction = np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    return target + params.distance * direction, target


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------
def _project(points: np.ndarray, eye: np.ndarray, target: np.ndarray, size: int):
    """Pinhole projection as OpenGL's look-at (y up) with :data:`FOV_DEG`: pixels and depth."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r = r / np.linalg.norm(r)
    u = np.cross(r, f)
    rel = points - eye
    x, y, z = rel @ r, rel @ u, rel @ f
    focal = (size / 2) / np.tan(np.deg2rad(FOV_DEG) / 2)
    z = np.maximum(z, 1e-3)
    return np.stack([size / 2 + focal * x / z, size / 2 - focal * y / z], -1), z, focal


def _shade(color, factor: float):
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)


def draw_stick_figure(points: np.ndarray, eye: np.ndarray, target: np.ndarray, size: int,
                      body_color, background) -> np.ndarray:
    """Draw one pose as thick limbs and a round head, far bones first (numpy renderer).

    Left limbs are drawn darker than right ones, as the lit capsules of the pybullet renderer
    tell left from right.

    Returns:
        np.ndarray: ``(size, size, 3)`` uint8 RGB.
    """
    scale = 4  # draw large and downsample: smooth edges at 32-64 px
    big = size * scale
    uv, depth, focal = _project(points, eye, target, big)
    image = Image.new('RGB', (big, big), tuple(background))
    draw = ImageDraw.Draw(image)
    left = {i for i, n in enumerate(POINT_NAMES) if n.startswith('left')}
    order = sorted(BONES, key=lambda b: -(depth[b[0]] + depth[b[1]]))
    for a, b in order:
        z = (depth[a] + depth[b]) / 2
        width = max(1, int(round(focal * BODY_WIDTH / z)))
        color = _shade(body_color, 0.7 if (a in left or b in left) else 1.0)
        pa, pb = tuple(uv[a]), tuple(uv[b])
        draw.line([pa, pb], fill=color, width=width)
        for q in (pa, pb):  # round joints
            r = width / 2
            draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=color)
    h = _P['head']
    r = focal * HEAD_RADIUS / depth[h]
    draw.ellipse([uv[h, 0] - r, uv[h, 1] - r, uv[h, 0] + r, uv[h, 1] + r],
                 fill=tuple(body_color))
    image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


class NumpyRenderer:
    """Stick figures from the joint table, drawn with PIL (needs no pybullet)."""

    name = 'numpy'

    def __init__(self, table: Optional[Dict[str, np.ndarray]] = None):
        self.table = table if table is not None else load_joint_table()

    def render(self, params: ClipParams) -> np.ndarray:
        points = motion_points(params.motion, params.times, self.table)
        eyes, targets = camera_path(points, params)
        return np.stack([
            draw_stick_figure(p, e, t, params.size, params.body_color, params.background)
            for p, e, t in zip(points, eyes, targets)])

    def close(self):
        pass


class PybulletRenderer:
    """The humanoid's capsules through pybullet's CPU TinyRenderer; background from its mask."""

    name = 'pybullet'

    def __init__(self, table: Optional[Dict[str, np.ndarray]] = None):
        self.table = table if table is not None else load_joint_table()
        self.humanoid = _Humanoid()
        self._motions = {m: load_motion_frames(m) for m in MOTIONS}

    def render(self, params: ClipParams) -> np.ndarray:
        # The camera follows the table's pelvis, as the numpy renderer's, so both frame alike.
        points = motion_points(params.motion, params.times, self.table)
        eyes, targets = camera_path(points, params)
        frames, loop = self._motions[params.motion]
        rows = motion_rows(params.motion, params.times, frames, loop)
        out = []
        for row, eye, target in zip(rows, eyes, targets):
            self.humanoid.set_pose(row)
            rgb, mask = self.humanoid.render(eye, target, params.size, params.body_color)
            rgb[~mask] = params.background
            out.append(rgb)
        return np.stack(out)

    def close(self):
        self.humanoid.close()


RENDERERS = {'numpy': NumpyRenderer, 'pybullet': PybulletRenderer}


def build_renderer(name: str = 'pybullet', table=None):
    """A renderer by name; ``'pybullet'`` needs pybullet."""
    if name not in RENDERERS:
        raise ValueError(f'renderer must be one of {sorted(RENDERERS)}, got {name!r}')
    return RENDERERS[name](table)


def render_clean_frames(params: ClipParams, renderer) -> np.ndarray:
    """A clip's frames before flip and noise: ``(T, size, size, 3)`` uint8, in playing order.

    A reversed class's frames are exactly the forward clip's frames in reverse order (same
    params with ``reverse`` flipped and ``times`` reversed): the pairs differ by time only.
    """
    return renderer.render(params)


def finish_frames(frames: np.ndarray, params: ClipParams) -> np.ndarray:
    """Mirror flip and pixel noise (its own generator, so noise never depends on the pose)."""
    if params.flip:
        frames = frames[:, :, ::-1]
    if params.noise_std > 0:
        noise = np.random.default_rng(params.noise_seed).normal(0.0, params.noise_std,
                                                                frames.shape)
        frames = np.clip(frames.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames)


def render_clip(params: ClipParams, renderer) -> np.ndarray:
    """A clip's final frames: rendered, flipped, noised."""
    return finish_frames(render_clean_frames(params, renderer), params)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def write_mp4(path: str, frames: np.ndarray, fps: int = FPS):
    """An MPEG-4 (part 2) mp4 through PyAV: the same frames give the same bytes, always.

    Why not H.264: libx264 through PyAV gave different bytes (and decoded pixels off by up to
    25 levels) for the same frames in different processes, even single-threaded; FFmpeg's
    own ``mpeg4`` encoder with bitexact flags is reproducible, and every decoder reads it.
    """
    import av
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
    """``folder/img_00001.jpg ...`` (mmaction2 rawframes, numbered from 1)."""
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(osp.join(folder, f'img_{i:05d}.jpg'), quality=95)


def clip_name(split: str, label: int, index: int) -> str:
    """A clip's file stem, e.g. ``train_walking_backward_0003``."""
    return f'{split}_{CLASS_NAMES[label].replace(" ", "_")}_{index:04d}'


def split_counts(clips_per_class: int) -> Dict[str, int]:
    """Clips per class in each split: train N, val ceil(N/4), test ceil(N/2)."""
    n = int(clips_per_class)
    if n < 1:
        raise ValueError('clips_per_class must be at least 1')
    return {'train': n, 'val': -(-n // 4), 'test': -(-n // 2)}


def clip_rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    """A clip's own generator: independent of the order clips are rendered in."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), label,
                                                         index]))


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
                        write_mp4(osp.join(out_dir, 'videos', name + '.mp4'), frames)
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
