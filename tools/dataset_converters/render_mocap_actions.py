"""Render MoCap-Actions: human actions from pybullet's motion-capture clips (videos + lists).

    python tools/dataset_converters/render_mocap_actions.py --out data/mocap_actions \\
        [--seed 0] [--clips-per-class 40] [--frames 16] [--size 64] \\
        [--renderer {pybullet,numpy}]

Writes ``OUT/videos/*.mp4``, ``OUT/rawframes/<clip>/img_00001.jpg ...``,
``OUT/{train,val,test}_list_videos.txt`` (and ``_list_rawframes.txt``), ``OUT/label_map.txt``
and ``OUT/{train,val,test}_llava.json``; split rule and layout in the ``mocap_actions/``
renderer beside this script, the classes in :mod:`mmllava.datasets.mocap_actions`. The test
split's camera azimuths are held out of train and val.

    python tools/dataset_converters/render_mocap_actions.py --export-joint-table

remakes the joint-position table the numpy renderer reads (needs pybullet).
"""
import os.path as osp
import sys
import time
from typing import List, Optional

from mmllava.utils.cli import make_parser, run_cli

# The renderer is the ``mocap_actions/`` folder beside this script (tools are not a package).
# Run as a script, this folder is already first on sys.path; loaded by path (tests), it is not.
# It is imported once the arguments are parsed (it imports mmllava.datasets): --help is fast.
_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# mocap_actions.RENDERERS' names (tests/test_tools/test_startup.py checks that they agree).
RENDERER_NAMES = ('numpy', 'pybullet')


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser(description='Render the MoCap-Actions benchmark.')
    parser.add_argument('--out', help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--clips-per-class', type=int, default=40,
                        help='training clips per class (val gets a quarter, test a half)')
    parser.add_argument('--frames', type=int, default=16, help='frames per clip')
    parser.add_argument('--size', type=int, default=64, help='frame side in pixels (even)')
    parser.add_argument('--renderer', choices=RENDERER_NAMES, default='pybullet',
                        help='pybullet (shaded humanoid) or numpy (stick figure, no pybullet)')
    parser.add_argument('--no-videos', action='store_true', help='skip videos/*.mp4')
    parser.add_argument('--no-rawframes', action='store_true', help='skip rawframes/')
    parser.add_argument('--export-joint-table', nargs='?', const='', default=None,
                        metavar='PATH', help='write the numpy renderer\'s joint table (default: '
                        'mocap_actions/mocap_actions_joints.npz beside this script) and exit')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.export_joint_table is None and not args.out:
        parser.error('--out is required')
    if args.size % 2 or args.size < 2:
        parser.error(f'--size must be even and positive (4:2:0 chroma), got {args.size}')
    if args.frames < 1 or args.clips_per_class < 1:
        parser.error('--frames and --clips-per-class must be at least 1')
    from mocap_actions import JOINT_TABLE, export_joint_table, render_mocap_actions

    if args.export_joint_table is not None:
        print(f'Wrote {export_joint_table(args.export_joint_table or JOINT_TABLE)}')
        return 0

    bar = None
    if not args.quiet:
        try:
            from tqdm import tqdm
            bar = tqdm(unit='clip', desc='rendering')
        except ImportError:  # progress is a nicety
            bar = None

    def progress(done: int, total: int):
        if bar is not None:
            bar.total = total
            bar.update(1)

    start = time.time()
    counts = render_mocap_actions(
        args.out, seed=args.seed, clips_per_class=args.clips_per_class, num_frames=args.frames,
        size=args.size, renderer=args.renderer, write_videos=not args.no_videos,
        write_frames=not args.no_rawframes, progress=progress)
    if bar is not None:
        bar.close()
    print(f'Wrote {args.out} in {time.time() - start:.1f} s: '
          + ', '.join(f'{k} {v} clips' for k, v in counts.items()))
    return 0


if __name__ == '__main__':
    run_cli(main)
