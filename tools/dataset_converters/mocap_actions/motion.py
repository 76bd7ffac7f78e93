"""MoCap-Actions motion data: pybullet's DeepMimic clips, the humanoid and the joint table.

pybullet ships 15 DeepMimic motion-capture clips of a humanoid (:data:`MOTIONS`; zlib licence).
:func:`motion_rows` interpolates a clip's pose rows for the pybullet renderer;
:func:`motion_points` interpolates the stick figure's joint positions for the numpy renderer
and the camera. Those positions come from the joint table :data:`JOINT_TABLE` beside this
module: pybullet's forward kinematics of every keyframe (:func:`compute_joint_table`, written
by :func:`export_joint_table`, i.e. ``render_mocap_actions.py --export-joint-table``), shipped
so that the numpy renderer works without pybullet.
"""
import contextlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

MOTIONS = ('walk', 'run', 'jump', 'punch', 'kick', 'cartwheel', 'crawl', 'roll', 'spin',
           'spinkick', 'backflip', 'dance_a', 'dance_b', 'getup_faceup', 'getup_facedown')

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
# Index of each point along the table's point axis.
POINT_INDEX = {n: i for i, n in enumerate(POINT_NAMES)}

# DeepMimic frame layout: duration, root pos (3), root rot (4, w x y z), then the joints in
# this order, 4 numbers (quaternion w x y z) or 1 (revolute angle) each; humanoid link index.
_FRAME_JOINTS = (('chest', 1, 4), ('neck', 2, 4), ('right_hip', 3, 4), ('right_knee', 4, 1),
                 ('right_ankle', 5, 4), ('right_shoulder', 6, 4), ('right_elbow', 7, 1),
                 ('left_hip', 9, 4), ('left_knee', 10, 1), ('left_ankle', 11, 4),
                 ('left_shoulder', 12, 4), ('left_elbow', 13, 1))
_URDF_SCALE = 0.25  # as pybullet's deep_mimic env loads the humanoid

JOINT_TABLE = osp.join(osp.dirname(osp.abspath(__file__)), 'mocap_actions_joints.npz')


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


class Humanoid:
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
        p, c, ix = self.p, self.client, POINT_INDEX
        out = np.zeros((len(POINT_NAMES), 3))
        for name, link in _POINT_LINKS.items():
            if link == 0:  # the root link sits on the base
                out[ix[name]] = p.getBasePositionAndOrientation(self.body, physicsClientId=c)[0]
            else:
                out[ix[name]] = p.getLinkState(self.body, link, physicsClientId=c)[4]
        for name, link, offset in (('head', 2, _HEAD_OFFSET), ('right_toe', 5, _TOE_OFFSET),
                                   ('left_toe', 11, _TOE_OFFSET)):
            state = p.getLinkState(self.body, link, physicsClientId=c)
            out[ix[name]] = p.multiplyTransforms(state[4], state[5], offset, [0, 0, 0, 1])[0]
        return out

    def render(self, eye, target, size: int, color,
               fov_deg: float) -> Tuple[np.ndarray, np.ndarray]:
        """Camera image: ``(rgb (size, size, 3) uint8, body mask (size, size) bool)``.

        ``fov_deg`` is the camera's vertical field of view (the renderers' ``FOV_DEG``).
        """
        p, c = self.p, self.client
        if self._color != tuple(color):
            rgba = [v / 255 for v in color] + [1]
            for link in range(-1, self.num_links):
                p.changeVisualShape(self.body, link, rgbaColor=rgba, physicsClientId=c)
            self._color = tuple(color)
        view = p.computeViewMatrix(list(eye), list(target), [0, 1, 0], physicsClientId=c)
        proj = p.computeProjectionMatrixFOV(fov_deg, 1.0, 0.05, 30.0, physicsClientId=c)
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
    humanoid = Humanoid()
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

