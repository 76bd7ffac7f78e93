"""The modality-grouped sampler: pure batches, every index once, ranks partition, determinism."""
from unittest import mock

import numpy as np
import pytest

from mmllava.datasets import LengthGroupedSampler
from mmllava.datasets.samplers import split_to_even_chunks
from mmllava.registry import DATA_SAMPLERS


class Lengths:
    def __init__(self, lengths):
        self.modality_lengths = list(lengths)

    def __len__(self):
        return len(self.modality_lengths)


def make_lengths(num_mm=53, num_text=29, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(1, 100, num_mm), -rng.integers(1, 100, num_text)])
    return rng.permutation(lengths).tolist()


def sampler(lengths, batch_size, rank=0, world_size=1, **kwargs):
    with mock.patch('mmllava.datasets.samplers.get_dist_info',
                    return_value=(rank, world_size)):
        return LengthGroupedSampler(Lengths(lengths), batch_size=batch_size, seed=7, **kwargs)


def batches(indices, batch_size):
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def mixed(batch, lengths):
    return len({lengths[i] > 0 for i in batch}) > 1


@pytest.mark.parametrize('num_mm,num_text,batch_size', [(53, 29, 4), (40, 8, 8), (9, 3, 4),
                                                        (20, 0, 3)])
def test_single_rank_pure_batches_and_each_index_once(num_mm, num_text, batch_size):
    lengths = make_lengths(num_mm, num_text)
    s = sampler(lengths, batch_size)
    indices = list(s)
    assert sorted(indices) == list(range(len(lengths))) and len(s) == len(lengths)
    bs = batches(indices, batch_size)
    assert not any(mixed(b, lengths) for b in bs[:-2])  # only the leftovers may mix
    assert sum(mixed(b, lengths) for b in bs) <= 1


@pytest.mark.parametrize('num_mm,num_text', [(53, 29), (60, 20), (7, 5)])
def test_ranks_partition_the_indices(num_mm, num_text):
    lengths = make_lengths(num_mm, num_text)
    per_rank = [list(sampler(lengths, 4, rank=r, world_size=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == len(lengths) // 2
    assert sorted(per_rank[0] + per_rank[1]) == list(range(len(lengths)))
    total_mixed = 0
    for indices in per_rank:
        bs = batches(indices, 4)
        assert not any(mixed(b, lengths) for b in bs[:-2])
        total_mixed += sum(mixed(b, lengths) for b in bs)
    assert total_mixed <= 1


def test_uneven_total_is_rounded_up_per_rank():
    lengths = make_lengths(10, 5)  # 15 samples on 2 ranks: one repeated
    per_rank = [list(sampler(lengths, 4, rank=r, world_size=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 8
    assert set(per_rank[0] + per_rank[1]) == set(range(15))


def test_megabatches_balance_lengths_across_ranks():
    lengths = make_lengths(64, 0)
    s = sampler(lengths, 4, world_size=2)
    for megabatch in s.global_order():
        assert [len(c) for c in megabatch] == [4, 4]
    chunks = split_to_even_chunks([0, 1, 2, 3], [10, 9, 2, 1], 2)
    assert chunks == [[0, 3], [1, 2]]


def test_deterministic_per_seed_and_epoch():
    lengths = make_lengths()
    a, b = sampler(lengths, 4), sampler(lengths, 4)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)


def test_errors_and_registry():
    assert DATA_SAMPLERS.get('LengthGroupedSampler') is LengthGroupedSampler
    with pytest.raises(ValueError, match='not be 0'):
        sampler([1, 0, -1], 2)
    with pytest.raises(TypeError, match='modality_lengths'):
        LengthGroupedSampler([1, 2], batch_size=1, seed=0)
