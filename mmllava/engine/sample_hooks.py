"""Hooks that show what a run trains on and what the model answers while it trains.

``DatasetInfoHook`` prints the first tokenized sample of each dataset with its label mask
before training (xtuner's hook of that name): the cheapest check that the template, the
placeholders and the masking are what the recipe means. ``EvaluateChatHook`` answers a few
fixed samples every N iterations (xtuner's hook of that name): a run that learns nothing shows
it in minutes, not after an epoch.
"""
import copy
from typing import List, Optional, Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmllava.conversation import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from mmllava.datasets.collate import llava_collate
from mmllava.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _runs(values: Sequence[int], kind) -> List[tuple]:
    """Consecutive runs of ``values`` with the same ``kind(value)``."""
    runs = []
    for value in values:
        k = kind(value)
        if runs and runs[-1][0] == k:
            runs[-1][1].append(value)
        else:
            runs.append((k, [value]))
    return runs


def describe_sample(sample: dict, tokenizer) -> str:
    """The text of a packed sample, its visual placeholders counted and its labels shown.

    ``input`` is the whole sequence; ``labels`` shows the tokens that carry a loss and each
    masked run as ``[masked N]``.
    """
    ids = [int(i) for i in sample['inputs']['input_ids']]
    labels = sample['inputs'].get('labels')
    labels = None if labels is None else [int(i) for i in labels]

    def text(run):
        return tokenizer.decode(run, skip_special_tokens=False)

    parts = []
    for is_visual, run in _runs(ids, lambda v: v == IMAGE_TOKEN_INDEX):
        parts.append(f'<visual x{len(run)}>' if is_visual else text(run))
    lines = [f'input ({len(ids)} tokens): ' + ''.join(parts)]
    if labels is not None:
        marked = []
        for masked, run in _runs(labels, lambda v: v == IGNORE_INDEX):
            marked.append(f'[masked {len(run)}]' if masked else text(run))
        trained = sum(label != IGNORE_INDEX for label in labels)
        lines.append(f'labels ({trained} with a loss): ' + ''.join(marked))
    return '\n'.join(lines)


def _dataset(runner, split: str):
    """The runner's ``split`` dataset, or None when the run has no such loop."""
    try:
        return getattr(runner, f'{split}_dataloader').dataset
    except AttributeError:  # e.g. no val loop: runner.val_loop is None
        return None


@HOOKS.register_module()
class DatasetInfoHook(Hook):
    """Before training, log the size of each dataset and its first sample, tokenized, with
    its label mask (:func:`describe_sample`).

    Args:
        splits (Sequence[str]): The runner's datasets to show.
        max_chars (int): Cut each shown text after this many characters.
    """

    priority = 'LOW'

    def __init__(self, splits: Sequence[str] = ('train', 'val'), max_chars: int = 4000):
        self.splits = tuple(splits)
        self.max_chars = max_chars

    def before_train(self, runner) -> None:
        """Log each split's first sample (rank 0)."""
        if not is_main_process():
            return
        tokenizer = _unwrap(runner.model).tokenizer
        for split in self.splits:
            dataset = _dataset(runner, split)
            if dataset is None:
                continue
            sample = dataset[0]
            meta = getattr(sample.get('data_samples'), 'metainfo', {}) or {}
            text = describe_sample(sample, tokenizer)
            if len(text) > self.max_chars:
                text = text[:self.max_chars] + ' ...'
            runner.logger.info(f'{split} dataset: {len(dataset)} samples; sample 0 '
                               f'(id {meta.get("sample_id")!r}):\n{text}')


@HOOKS.register_module()
class EvaluateChatHook(Hook):
    """Answer fixed samples before training, every ``every_n_iters`` iterations and after.

    The samples are items of one of the runner's datasets (the validation set by default:
    test-mode prompts that end where the answer starts), run through the model's ``predict``
    as in evaluation. Every rank runs them (sharded strategies need all ranks); rank 0 logs
    the question's end, the answer, the ranked class (closed-set models) and the truth.

    Args:
        every_n_iters (int): Answer every this many training iterations.
        indices (Sequence[int]): The samples of the dataset to answer.
        split (str): ``'val'``, ``'test'`` or ``'train'``.
        max_new_tokens (int): Length of the answers.
    """

    priority = 'LOW'

    def __init__(self, every_n_iters: int = 100, indices: Sequence[int] = (0, 1),
                 split: str = 'val', max_new_tokens: int = 16):
        self.every_n_iters = every_n_iters
        self.indices = tuple(indices)
        self.split = split
        self.max_new_tokens = max_new_tokens
        self._samples: Optional[list] = None
        self._classes: Optional[list] = None

    def _answer(self, runner, when: str) -> None:
        model = _unwrap(runner.model)
        if self._samples is None:
            dataset = _dataset(runner, self.split)
            if dataset is None:
                runner.logger.warning(f'EvaluateChatHook: the runner has no {self.split} '
                                      'dataset: nothing to answer')
                self._samples = []
            else:
                self._samples = [dataset[i] for i in self.indices if i < len(dataset)]
                self._classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        if not self._samples:
            return
        samples = copy.deepcopy(self._samples)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                data = model.data_preprocessor(llava_collate(samples), False)
                outs = model.predict(data['inputs'], data['data_samples'],
                                     max_new_tokens=self.max_new_tokens)
        finally:
            model.train(training)
        if not is_main_process():
            return
        lines = []
        for out in outs:
            answer = out.get('pred_answer', out.get('pred_caption'))
            question = str(out.metainfo.get('prompt', ''))[-80:].replace('\n', ' ')
            line = f'  {out.metainfo.get("sample_id")!r}: ...{question} -> {answer!r}'
            names = out.metainfo.get('answer_candidates') or self._classes
            if 'pred_label' in out and names:
                line += f' (ranked first: {names[int(out.pred_label)]!r})'
            if 'gt_label' in out and names:
                line += f' (truth: {names[int(out.gt_label)]!r})'
            lines.append(line)
        runner.logger.info(f'EvaluateChatHook, {when}:\n' + '\n'.join(lines))

    def before_train(self, runner) -> None:
        """Answer once before the first step."""
        self._answer(runner, 'before training')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Answer every ``every_n_iters`` iterations."""
        if self.every_n_train_iters(runner, self.every_n_iters):
            self._answer(runner, f'iteration {runner.iter + 1}')

    def after_train(self, runner) -> None:
        """Answer once after the last step."""
        self._answer(runner, 'after training')
