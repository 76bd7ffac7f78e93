"""Modality- and length-grouped sampling, as the original LLaVA's ``LengthGroupedSampler``."""
import math
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmllava.registry import DATA_SAMPLERS


def _dataset_lengths(dataset) -> List[int]:
    lengths = getattr(dataset, 'modality_lengths', None)
    if lengths is not None:
        return list(lengths)
    if hasattr(dataset, 'datasets'):  # ConcatDataset
        return [n for d in dataset.datasets for n in _dataset_lengths(d)]
    raise TypeError(f'{type(dataset).__name__} has no modality_lengths: LengthGroupedSampler '
                    'needs a per-sample length (positive with images, negative text-only)')


def split_to_even_chunks(indices: Sequence[int], lengths: Sequence[int],
                         num_chunks: int) -> List[List[int]]:
    """Split ``indices`` into ``num_chunks`` chunks of equal size and similar total length.

    The original's greedy: each index (longest first, as given) goes to the chunk with the
    smallest total so far that is not yet full. ``len(indices)`` must divide evenly.
    """
    per_chunk = len(indices) // num_chunks
    chunks = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = math.inf
    return chunks


@DATA_SAMPLERS.register_module()
class LengthGroupedSampler(Sampler):
    """Batches of one modality, lengths balanced across ranks; mmengine's distributed way.

    The original's ``LengthGroupedSampler(group_by_modality=True)``: the multimodal (length
    > 0) and the text-only (length < 0) samples are each shuffled and cut into megabatches of
    ``world_size * batch_size``; a megabatch is sorted by length and dealt to the ranks in
    chunks of ``batch_size`` with similar total lengths (``split_to_even_chunks``); the full
    megabatches of both modalities are shuffled together. So every batch on every rank holds
    one modality, and the ranks of one step get similar amounts of tokens.

    The two leftovers (less than a megabatch of each modality) come last; only there can a
    batch mix modalities: at most one batch of the whole epoch, within each rank's last two.
    (The original puts a full mixed megabatch first; we keep it at the end so the claim above
    holds.) Each rank takes its own chunks (mmengine runs one sampler per rank); the total is
    rounded up to a multiple of the world size by repeating a few leftover samples, so every
    rank gets the same number (as mmengine's ``DefaultSampler``).

    Deterministic for a seed and epoch (:meth:`set_epoch`, called by mmengine's
    ``DistSamplerSeedHook``).

    In a config::

        train_dataloader = dict(
            batch_size=16,
            sampler=dict(type='LengthGroupedSampler', batch_size=16),  # the same batch size
            ...)

    Args:
        dataset: A dataset with ``modality_lengths`` (mmllava's datasets; a
            ``ConcatDataset`` of them).
        batch_size (int): The per-rank batch size of the dataloader (mmengine does not pass it
            to samplers: give the same number).
        group_by_modality (bool): Keep modalities apart. ``False`` groups by length only.
        seed (int, optional): Shuffling seed, the same on every rank (synchronized when
            ``None``, as mmengine's samplers).
        lengths (Sequence[int], optional): Per-sample lengths instead of the dataset's.
    """

    def __init__(self, dataset, batch_size: int, group_by_modality: bool = True,
                 seed: Optional[int] = None, lengths: Optional[Sequence[int]] = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.batch_size = batch_size
        self.group_by_modality = group_by_modality
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.lengths = np.asarray(_dataset_lengths(dataset) if lengths is None else lengths,
                                  dtype=np.int64)
        if len(self.lengths) != len(dataset):
            raise ValueError(f'{len(self.lengths)} lengths for a dataset of {len(dataset)}')
        if (self.lengths == 0).any():
            raise ValueError('lengths must not be 0 (the sign tells the modality)')
        self.num_samples = math.ceil(len(self.lengths) / self.world_size)
        self.total_size = self.num_samples * self.world_size

    def _group(self, indices: np.ndarray,
               generator: torch.Generator) -> Tuple[List[List[List[int]]], List[int]]:
        """Full megabatches (each a chunk per rank) and the leftover, of one modality."""
        size = self.world_size * self.batch_size
        order = indices[torch.randperm(len(indices), generator=generator).numpy()].tolist()
        lengths = np.abs(self.lengths)
        megabatches = []
        full = len(order) // size * size
        for start in range(0, full, size):
            megabatch = sorted(order[start:start + size], key=lambda i: -lengths[i])
            megabatches.append(split_to_even_chunks(megabatch, lengths, self.world_size))
        rest = sorted(order[full:], key=lambda i: -lengths[i])
        return megabatches, rest

    def _tail_chunks(self, tail: List[int]) -> List[List[List[int]]]:
        """Deal the leftovers: contiguous slices, one per rank, per (partial) megabatch."""
        pad = (-len(tail)) % self.world_size
        if pad:  # repeat the last leftovers (same modality as their neighbours)
            tail = tail + (tail * math.ceil(pad / len(tail)))[-pad:]
        size = self.world_size * self.batch_size
        megabatches = []
        for start in range(0, len(tail), size):
            part = tail[start:start + size]
            step = len(part) // self.world_size
            megabatches.append([part[r * step:(r + 1) * step] for r in range(self.world_size)])
        return megabatches

    def global_order(self) -> List[List[List[int]]]:
        """All megabatches of this epoch, each a list of one chunk per rank."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        everything = np.arange(len(self.lengths))
        if self.group_by_modality:
            groups = [everything[self.lengths > 0], everything[self.lengths < 0]]
            groups = [g for g in groups if len(g)]
        else:
            groups = [everything]
        megabatches, tail = [], []
        for group in groups:
            full, rest = self._group(group, generator)
            megabatches += full
            tail += rest
        perm = torch.randperm(len(megabatches), generator=generator).tolist()
        megabatches = [megabatches[i] for i in perm]
        if tail:
            megabatches += self._tail_chunks(tail)
        return megabatches

    def __iter__(self) -> Iterator[int]:
        return iter([i for megabatch in self.global_order() for i in megabatch[self.rank]])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch: a new order for each."""
        self.epoch = epoch
