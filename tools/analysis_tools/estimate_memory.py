"""Per-GPU memory of a training or test config, itemized, and whether it fits a GPU.

The model is built on the meta device (no weights); the arithmetic and what it counts are in
``mmllava/engine/memory_formulas.py``, its check against measured peaks in ``docs/memory.md``.

Examples::

    python tools/analysis_tools/estimate_memory.py configs/llava/llava-7b-v1.5_lora.py \\
        --gpus 8 --gpu-mem 40
    python tools/analysis_tools/estimate_memory.py configs/llava/llava-7b-v1.5_qlora.py \\
        --gpus 1 --gpu-mem 24 --cfg-options train_dataloader.batch_size=4
    python tools/analysis_tools/estimate_memory.py CONFIG --test   # its test loader instead
    # the "Memory" tables of the config READMEs (every training recipe of each folder):
    python tools/analysis_tools/estimate_memory.py --write-readme configs/llava \\
        configs/llava_action configs/llava_next configs/llava_onevision
"""
from mmllava.utils.cli import add_cfg_options, make_parser, parse_cfg_options, run_cli

SECTION = 'Memory'
INTRO = (
    'Estimated peak memory per GPU of each training recipe (GiB, with a 10% fragmentation and '
    'a 1.5 GiB CUDA-context allowance; "fits" against the GPU memory), by '
    '`tools/analysis_tools/estimate_memory.py` (model built on the meta device; the estimate is '
    "checked against measured peaks in `docs/memory.md`). Sequences: the pipeline's "
    '`max_length` for instruction data (the longest batches reach it); action clips at their '
    'clip tokens + the closed question (class names), a class name as the answer; stage-1 '
    "captions at 128 text tokens. The config's batch per GPU; 1x24G runs the same recipe on "
    'one GPU (lower `train_dataloader.batch_size` and raise '
    '`optim_wrapper.accumulative_counts` to fit; `--seq-len` for other lengths). '
    'Regenerate with\n\n'
    '```shell\npython tools/analysis_tools/estimate_memory.py --write-readme {folder}\n```')


def parse_args(argv=None):
    parser = make_parser(description='Estimate the per-GPU memory of a config')
    parser.add_argument('config', nargs='?', help='a training or test config')
    parser.add_argument('--gpus', type=int, default=8, help='data-parallel GPUs (default 8)')
    parser.add_argument('--gpu-mem', type=float, default=80.0,
                        help='memory of one GPU in GB (default 80)')
    parser.add_argument('--seq-len', type=int, help='training tokens per sample, visuals '
                        "included (default: the data's, else the pipeline's max_length)")
    parser.add_argument('--test', action='store_true',
                        help="estimate the config's test loader (generation or ranking)")
    parser.add_argument('--markdown', action='store_true',
                        help='print the recipe table (8xA100-80G, 8xA100-40G, 1x24G) instead')
    parser.add_argument('--write-readme', nargs='+', metavar='FOLDER',
                        help="write the table of each folder's training recipes into its "
                        "README.md (section 'Memory')")
    add_cfg_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import os.path as osp

    from mmllava.engine.memory_config import (
        build_meta,
        estimate_config,
        format_report,
        recipe_table,
        replace_section,
        training_configs,
    )
    if args.write_readme:
        for folder in args.write_readme:
            readme = osp.join(folder, 'README.md')
            if not osp.isdir(folder):
                raise FileNotFoundError(f'no config folder {folder}')
            table = recipe_table(training_configs(folder))
            text = open(readme).read() if osp.exists(readme) else ''
            body = INTRO.format(folder=folder.rstrip('/')) + '\n\n' + table
            with open(readme, 'w') as f:
                f.write(replace_section(text, SECTION, body))
            print(f'{readme}:\n{table}\n')
        return 0
    if not args.config:
        raise ValueError('give a config (or --write-readme FOLDER)')
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'no config file {args.config}')
    if args.gpus < 1 or args.gpu_mem <= 0:
        raise ValueError('--gpus must be >= 1 and --gpu-mem > 0')
    if args.markdown:
        print(recipe_table([args.config]))
        return 0
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    options = parse_cfg_options(args.cfg_options)
    if options:
        cfg.merge_from_dict(options)
    built = build_meta(cfg)
    est = estimate_config(cfg, gpus=1 if args.test else args.gpus, built=built,
                          mode='test' if args.test else 'train', seq_len=args.seq_len)
    print(format_report(osp.basename(args.config), est, args.gpu_mem))
    return 0


if __name__ == '__main__':
    run_cli(main)
