"""MoCap-Actions renderers: the same poses drawn two ways, then flipped and noised per clip.

``'pybullet'`` draws the humanoid's capsules through pybullet's CPU TinyRenderer;
``'numpy'`` draws a stick figure with PIL from the joint table's positions, so it works where
pybullet is absent. Both follow the same camera (:mod:`.camera`).
"""
from typing import Dict, Optional

import numpy as np
from PIL import Image, ImageDraw

from .camera import FOV_DEG, camera_path, project
from .clips import ClipParams
from .motion import (
    MOTIONS,
    POINT_INDEX,
    POINT_NAMES,
    Humanoid,
    load_joint_table,
    load_motion_frames,
    motion_points,
    motion_rows,
)

# The stick figure's limbs, as pairs of point indices (POINT_NAMES order).
BONES = tuple((POINT_INDEX[a], POINT_INDEX[b]) for a, b in (
    ('pelvis', 'chest'), ('chest', 'neck'), ('neck', 'head'), ('pelvis', 'right_hip'),
    ('right_hip', 'right_knee'), ('right_knee', 'right_ankle'), ('right_ankle', 'right_toe'),
    ('pelvis', 'left_hip'), ('left_hip', 'left_knee'), ('left_knee', 'left_ankle'),
    ('left_ankle', 'left_toe'), ('neck', 'right_shoulder'), ('right_shoulder', 'right_elbow'),
    ('right_elbow', 'right_wrist'), ('neck', 'left_shoulder'), ('left_shoulder', 'left_elbow'),
    ('left_elbow', 'left_wrist')))
BODY_WIDTH = 0.07  # stick-figure limb thickness in metres
HEAD_RADIUS = 0.11


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
    uv, depth, focal = project(points, eye, target, big)
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
    h = POINT_INDEX['head']
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
        self.humanoid = Humanoid()
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
            rgb, mask = self.humanoid.render(eye, target, params.size, params.body_color,
                                              FOV_DEG)
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
