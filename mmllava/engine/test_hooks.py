"""Hooks of an evaluation run: a progress bar, and the list of samples that could not be read.

``tools/test.py`` registers both; they live here so that the tool imports nothing heavy before
it has parsed its arguments, and so that a config can name them (``custom_hooks``).
"""
import os
import os.path as osp

from mmengine.hooks import Hook

from mmllava.registry import HOOKS


@HOOKS.register_module()
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


@HOOKS.register_module()
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
