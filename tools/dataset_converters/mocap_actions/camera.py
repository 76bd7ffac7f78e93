"""MoCap-Actions camera: where it looks from each frame, and its pinhole projection.

The camera follows the pelvis in the ground plane, so the figure stays in view while it walks
or runs. Both renderers use the same path and field of view (:data:`FOV_DEG`), so a clip frames
alike whichever draws it.
"""
from typing import Tuple

import numpy as np

from .clips import ClipParams
from .motion import POINT_INDEX

FOV_DEG = 45.0  # vertical field of view of both renderers


def camera_path(points: np.ndarray, params: ClipParams) -> Tuple[np.ndarray, np.ndarray]:
    """Eye and target per frame: the target follows the pelvis on the ground, at a fixed height.

    Both depend on the frame's pose only (and the clip-wide mean height), so reversing the
    frame order reverses the camera path too: no camera motion tells the direction of time.
    """
    target = points[:, POINT_INDEX['pelvis']].copy()
    target[:, 1] = np.clip(target[:, 1].mean(), 0.35, 0.9)
    az, el = np.deg2rad(params.azimuth), np.deg2rad(params.elevation)
    direction = np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    return target + params.distance * direction, target


def project(points: np.ndarray, eye: np.ndarray, target: np.ndarray, size: int):
    """Pinhole projection as OpenGL's look-at (y up) with :data:`FOV_DEG`.

    Returns:
        tuple: pixel coordinates ``(N, 2)`` (x right, y down), depth ``(N,)`` and the focal
        length in pixels.
    """
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

