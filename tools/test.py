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
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a LLaVA')
    parser.add_argument('config', help='evaluation config file')
    parser.add_argument('checkpoint', help='weights: .safetensors, weights-only .pth/.bin, '
                        'or a folder of shards')
    parser.add_argument('--work-dir', help='where logs go (default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write every generation to this JSON file '
                        '([{"question_id", "sample_id", "text", "prompt"}])')
    parser.add_argument('--out-metrics', help='write the metrics to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.batch_size=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


class ProgressBarHook(Hook):
    """A progress bar over the test batches (rank 0 only)."""
    priority = 'LOWEST'

    def before_test(self, runner) -> None:
        from mmengine.dist import is_main_process
        from mmengine.utils import ProgressBar
        self.bar = ProgressBar(len(runner.test_dataloader)) if is_main_process() else None

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.bar is not None:
            self.bar.update()


class InvalidSamplesHook(Hook):
    """Logs and lists the samples whose visual could not be read (metainfo ``invalid_sample``).

    Each is logged as the batch holding it is done; at the end the lists of all ranks are
    gathered, ``WORK_DIR/invalid_samples.txt`` is written (``sample_id<TAB>reason`` a line, empty
    when there are none) and ``invalid_samples`` (the count) is added to the metrics. Runs
    first (before ``RuntimeInfoHook`` hands the metrics to the logger), so the count is logged
    with the metrics.

    Args:
        file_name (str): The list's name in the work dir.
    """
    priority = 'HIGHEST'

    def __init__(self, file_name: str = 'invalid_samples.txt'):
        self.file_name = file_name
        self.found = []

    def before_test(self, runner) -> None:
        from mmengine.dist import is_main_process
        self.found = []
        path = osp.join(runner.work_dir, self.file_name)
        if is_main_process() and osp.exists(path):  # an earlier run's list: never left as ours
            os.remove(path)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        from mmllava.evaluation.metrics.base import ID_KEYS, INVALID_KEY, first_key
        samples = outputs if outputs is not None else (data_batch or {}).get('data_samples')
        for sample in samples or ():
            meta = getattr(sample, 'metainfo', {})
            reason = meta.get(INVALID_KEY)
            if not reason:
                continue
            sample_id = first_key(meta, ID_KEYS)  # the id the metrics and --out name it by
            self.found.append((str(sample_id), ' '.join(str(reason).splitlines())))
            runner.logger.warning(f'Invalid sample {sample_id!r} (scored as a miss): {reason}')

    def after_test_epoch(self, runner, metrics=None) -> None:
        from mmengine.dist import all_gather_object, is_main_process
        found, seen = [], set()
        for part in all_gather_object(self.found):  # a sampler may repeat one to pad ranks
            for item in part:
                if item not in seen:
                    seen.add(item)
                    found.append(item)
        if metrics is not None:
            metrics['invalid_samples'] = len(found)
        if not is_main_process():
            return
        path = osp.join(runner.work_dir, self.file_name)
        with open(path, 'w', encoding='utf-8') as f:
            f.writelines(f'{sample_id}\t{reason}\n' for sample_id, reason in found)
        if found:
            runner.logger.warning(f'{len(found)} invalid samples (image or clip missing or '
                                  f'unreadable), scored as misses: listed in {path}')
        else:
            runner.logger.info(f'No invalid samples ({path} is empty)')


def main(argv=None):
    args = parse_args(argv)
    from mmengine.runner import Runner

    from mmllava.apis import get_model
    from mmllava.apis.pipeline import fill_pipeline
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
            raise SystemExit(f'{args.config} has no {key}: use an evaluation config '
                             '(configs/llava/*_eval.py)')
    use_gloo_without_cuda(cfg, args.launcher)  # CPU runs (and tests) go through gloo
    cfg.load_from, cfg.resume = None, False  # the weights come from the safe loader only

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = get_model(cfg, pretrained=args.checkpoint, device=device)
    dataset = cfg.test_dataloader.dataset
    try:
        dataset.pipeline = fill_pipeline(dataset.pipeline, model)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    evaluator = cfg.test_evaluator
    evaluator = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    for metric in evaluator:
        if metric.get('type') == 'ActionAccuracy' and 'confusion_matrix' not in metric:
            metric['confusion_matrix'] = osp.join(cfg.work_dir, 'confusion_matrix.png')
    if args.out:
        evaluator.append(dict(type='DumpPredictions', out_file=args.out))
    runner = Runner(
        model=model, work_dir=cfg.work_dir, test_dataloader=cfg.test_dataloader,
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
    main()
