"""Train a LLaVA with mmengine's Runner.

Examples::

    python tools/train.py configs/llava/llava-tiny_finetune.py
    python tools/train.py CONFIG --work-dir work_dirs/run --amp
    python tools/train.py CONFIG --resume                 # the latest checkpoint of work_dir
    python tools/train.py CONFIG --resume work_dirs/run/iter_100.pth
    python tools/train.py CONFIG --cfg-options train_dataloader.dataset.data_root=DIR
    bash tools/dist_train.sh CONFIG 8                     # torchrun, one process a device
"""
import os
import os.path as osp

from mmllava.utils.cli import add_cfg_options, make_parser, parse_cfg_options, run_cli


def parse_args(argv=None):
    parser = make_parser(description='Train a LLaVA')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a value from the latest checkpoint of '
        'the work_dir; only checkpoints inside the work_dir are accepted (resuming unpickles)')
    parser.add_argument(
        '--amp', nargs='?', const='bf16', choices=['bf16', 'fp16'],
        help='mixed precision: bf16 autocast (CPU or GPU; the default of --amp), or fp16 with '
        'dynamic loss scaling (GPU only)')
    add_cfg_options(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (dist_train.sh sets pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    args.cfg_options = parse_cfg_options(args.cfg_options)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command line to an mmengine ``Config``."""
    import torch
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp == 'bf16':
        cfg.optim_wrapper.type = 'BF16OptimWrapper'
        cfg.optim_wrapper.pop('dtype', None)
        cfg.optim_wrapper.pop('loss_scale', None)
    elif args.amp == 'fp16':
        if not torch.cuda.is_available():
            raise ValueError('--amp fp16 needs a GPU (fp16 autocast with loss scaling); use '
                             '--amp (bf16) on the CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'float16'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    from mmllava.engine import build_runner
    from mmllava.utils import register_all_modules
    from mmllava.utils.compat import use_gloo_without_cuda

    register_all_modules(init_default_scope=False)
    cfg = merge_args(Config.fromfile(args.config), args)
    use_gloo_without_cuda(cfg, args.launcher)  # CPU runs (and tests) go through gloo
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    run_cli(main)
