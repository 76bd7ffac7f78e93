"""Evaluate a LLaVA on a benchmark with mmengine's Runner: batched generation, then metrics.

Examples::

    python tools/test.py configs/llava/llava-7b-v1.5_vqav2_eval.py work_dirs/llava/model.safetensors
    python tools/test.py CONFIG CHECKPOINT --out preds.json --out-metrics metrics.json
    python tools/test.py CONFIG CHECKPOINT --cfg-options test_dataloader.batch_size=8

CHECKPOINT is read by mmllava's safe loader (safetensors, or a weights-only torch file; a
folder of shards works too) and must fit the model exactly: weights are data, never code, so
mmengine's unpickling ``load_checkpoint`` is not used. The tokenizer is the config's, else the
``tokenizer.model`` or ``tokenizer.json`` next to CHECKPOINT (as converted checkpoints have
them).

A sample whose image or clip is missing, empty, truncated or unreadable does not stop the run:
it counts as a miss in every metric (see ``mmllava/datasets/invalid_samples.py``), each one is
logged with its path and reason, ``WORK_DIR/invalid_samples.txt`` lists them (one line each,
``sample_id<TAB>reason``; written at every run, empty when there are none, so that it never
describes an earlier run), and the metrics (``--out-metrics``) hold ``invalid_samples``, their
count. ``--cfg-options test_dataloader.dataset.fail_on_invalid=True`` stops at the first one
instead, with an error naming the file and the reason.
"""
import os
import os.path as osp

from mmllava.utils.cli import add_cfg_options, make_parser, parse_cfg_options, run_cli


def parse_args(argv=None):
    parser = make_parser(description='Evaluate a LLaVA')
    parser.add_argument('config', help='evaluation config file')
    parser.add_argument('checkpoint', help='weights: .safetensors, weights-only .pth/.bin, '
                        'or a folder of shards')
    parser.add_argument('--work-dir', help='where logs go (default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write every generation to this JSON file '
                        '([{"question_id", "sample_id", "text", "prompt"}])')
    parser.add_argument('--out-metrics', help='write the metrics to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_cfg_options(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    args.cfg_options = parse_cfg_options(args.cfg_options)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmllava.apis import get_model
    from mmllava.apis.pipeline import fill_pipeline
    from mmllava.engine.test_hooks import InvalidSamplesHook, ProgressBarHook
    from mmllava.registry import DATASETS
    from mmllava.utils import register_all_modules
    from mmllava.utils.compat import use_gloo_without_cuda

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    for key in ('test_dataloader', 'test_evaluator'):
        if cfg.get(key) is None:
            raise ValueError(f'{args.config} has no {key}: use an evaluation config '
                             '(configs/llava/*_eval.py)')
    use_gloo_without_cuda(cfg, args.launcher)  # CPU runs (and tests) go through gloo
    cfg.load_from, cfg.resume = None, False  # the weights come from the safe loader only

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = get_model(cfg, pretrained=args.checkpoint, device=device)
    dataset = cfg.test_dataloader.dataset
    dataset.pipeline = fill_pipeline(dataset.pipeline, model)
    # Built here, before the Runner logs its environment and config: a missing annotation
    # file or data folder is then the one line of the error, not the end of 500 lines.
    # (The Runner gets the built dataset, its config keeps the dict: it is dumped as text.)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmllava')):
        test_dataloader = dict(cfg.test_dataloader, dataset=DATASETS.build(dataset))
    evaluator = cfg.test_evaluator
    evaluator = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    for metric in evaluator:
        if metric.get('type') == 'ActionAccuracy' and 'confusion_matrix' not in metric:
            metric['confusion_matrix'] = osp.join(cfg.work_dir, 'confusion_matrix.png')
    if args.out:
        evaluator.append(dict(type='DumpPredictions', out_file=args.out))
    runner = Runner(
        model=model, work_dir=cfg.work_dir, test_dataloader=test_dataloader,
        test_cfg=cfg.get('test_cfg') or dict(type='TestLoop'), test_evaluator=evaluator,
        default_hooks=cfg.get('default_hooks'), custom_hooks=cfg.get('custom_hooks'),
        env_cfg=cfg.get('env_cfg', dict(dist_cfg=dict(backend='nccl'))),
        log_processor=cfg.get('log_processor'), log_level=cfg.get('log_level', 'INFO'),
        visualizer=cfg.get('visualizer'), default_scope=cfg.get('default_scope', 'mmllava'),
        randomness=cfg.get('randomness', dict(seed=None)), launcher=args.launcher, cfg=cfg)
    runner.register_hook(InvalidSamplesHook())
    if not args.no_progress:
        runner.register_hook(ProgressBarHook())
    metrics = runner.test()
    if args.out_metrics:
        from mmengine.dist import is_main_process

        from mmllava.evaluation.offline import write_metrics_json
        if is_main_process():
            write_metrics_json(metrics, args.out_metrics)
    return metrics


if __name__ == '__main__':
    run_cli(main)
