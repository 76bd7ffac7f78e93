"""The MoCap-Actions renderer: pybullet's motion-capture clips to videos, lists and LLaVA JSON.

A tool, not part of the runtime package: training, evaluation and inference need only the
class list and question of :mod:`mmllava.datasets.mocap_actions`. Its CLI is
``tools/dataset_converters/render_mocap_actions.py``, which imports this folder as the package
``mocap_actions`` through its own folder on ``sys.path`` (as Python does for a script).

One concept a module:

* :mod:`.motion`: the DeepMimic clips, the pybullet humanoid and the joint table shipped
  beside it (``mocap_actions_joints.npz``), so the numpy renderer works without pybullet;
* :mod:`.clips`: what decides one clip (camera, colours, flip, time window, speed, noise),
  drawn per clip, and the held-out-viewpoint splits;
* :mod:`.camera`: the camera path that follows the pelvis, and its projection;
* :mod:`.render`: the ``'pybullet'`` (shaded capsules) and ``'numpy'`` (stick figure)
  renderers, flip and noise;
* :mod:`.writer`: :func:`render_mocap_actions`, which writes the whole benchmark (layout in
  its module docstring) through :mod:`mmllava.utils.video_io`.

The public names of all of them are gathered here, with the class list they render.
"""
from mmllava.datasets.mocap_actions import (
    CLASS_NAMES,
    CLASSES,
    MOCAP_ACTION_QUESTION,
    ActionClass,
)

from .camera import FOV_DEG, camera_path, project
from .clips import (
    AZIMUTH_SECTOR_DEG,
    NUM_SECTORS,
    SINGLE_MOVES,
    SPLITS,
    TEST_SECTORS,
    TRAIN_SECTORS,
    ClipParams,
    azimuth_sector,
    clip_rng,
    sample_clip_params,
    split_sectors,
)
from .motion import (
    JOINT_TABLE,
    MOTIONS,
    POINT_INDEX,
    POINT_NAMES,
    Humanoid,
    compute_joint_table,
    export_joint_table,
    load_joint_table,
    load_motion_frames,
    motion_duration,
    motion_file,
    motion_points,
    motion_rows,
)
from .render import (
    BODY_WIDTH,
    BONES,
    HEAD_RADIUS,
    RENDERERS,
    NumpyRenderer,
    PybulletRenderer,
    build_renderer,
    draw_stick_figure,
    finish_frames,
    render_clean_frames,
    render_clip,
)
from .writer import FPS, clip_name, llava_sample, render_mocap_actions, split_counts

__all__ = [
    'ActionClass', 'CLASSES', 'CLASS_NAMES', 'MOCAP_ACTION_QUESTION', 'FOV_DEG', 'camera_path',
    'project', 'AZIMUTH_SECTOR_DEG', 'NUM_SECTORS', 'SINGLE_MOVES', 'SPLITS', 'TEST_SECTORS',
    'TRAIN_SECTORS', 'ClipParams', 'azimuth_sector', 'clip_rng', 'sample_clip_params',
    'split_sectors', 'JOINT_TABLE', 'MOTIONS', 'POINT_INDEX', 'POINT_NAMES', 'Humanoid',
    'compute_joint_table', 'export_joint_table', 'load_joint_table', 'load_motion_frames',
    'motion_duration', 'motion_file', 'motion_points', 'motion_rows', 'BODY_WIDTH', 'BONES',
    'HEAD_RADIUS', 'RENDERERS', 'NumpyRenderer', 'PybulletRenderer', 'build_renderer',
    'draw_stick_figure', 'finish_frames', 'render_clean_frames', 'render_clip', 'FPS',
    'clip_name', 'llava_sample', 'render_mocap_actions', 'split_counts'
]
