"""stratified_split, Split, EpochSampler and DeviceBatchLoader: batches drawn on the device."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from alexnet_study.data import (
    DeviceBatchLoader,
    EpochSampler,
    Split,
    interleaved_order,
    stratified_split,
)
from alexnet_study.errors import ConfigError

from .conftest import CLASS_SIZES, make_split

# stratified_split
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.75])
def test_stratified_split_holds_out_round_fraction_of_each_class(
    unbalanced_labels: torch.Tensor, fraction: float
) -> None:
    kept, held = stratified_split(unbalanced_labels, fraction, seed=0)
    assert Counter(unbalanced_labels[held].tolist()) == {
        c: round(fraction * n) for c, n in CLASS_SIZES.items() if round(fraction * n)
    }
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(unbalanced_labels)))
    assert kept.dtype == held.dtype == torch.int64


def test_stratified_split_is_seeded(unbalanced_labels: torch.Tensor) -> None:
    torch.manual_seed(0)
    kept, held = stratified_split(unbalanced_labels, 0.3, seed=5)
    torch.manual_seed(1)  # the global RNG plays no part
    kept2, held2 = stratified_split(unbalanced_labels, 0.3, seed=5)
    assert torch.equal(kept, kept2) and torch.equal(held, held2)
    _, held_other = stratified_split(unbalanced_labels, 0.3, seed=6)
    assert not torch.equal(held, held_other)


def test_stratified_split_fraction_zero_holds_nothing(unbalanced_labels: torch.Tensor) -> None:
    kept, held = stratified_split(unbalanced_labels, 0.0, seed=0)
    assert held.numel() == 0
    assert torch.equal(kept, torch.arange(len(unbalanced_labels)))


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_stratified_split_rejects_fractions_outside_0_1(unbalanced_labels: torch.Tensor, fraction: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(unbalanced_labels, fraction, seed=0)


# ---------------------------------------------------------------------------------------------
# Split, EpochSampler, DeviceBatchLoader
# ---------------------------------------------------------------------------------------------


def test_split_validates_and_converts() -> None:
    split = Split(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2], dtype=torch.int32))
    assert split.labels.dtype == torch.int64 and len(split) == 3
    assert torch.equal(split.subset(torch.tensor([2, 0])).labels, torch.tensor([2, 0]))
    with pytest.raises(TypeError):
        Split(torch.zeros(3, 3, 2, 2), torch.arange(3))
    with pytest.raises(TypeError):
        Split(torch.zeros(3, 2, 2, dtype=torch.uint8), torch.arange(3))
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), torch.arange(4))


# interleaved_order
# ---------------------------------------------------------------------------------------------


def test_interleaved_order_keeps_every_class_in_proportion_in_every_prefix(unbalanced_labels: torch.Tensor) -> None:
    labels = unbalanced_labels.sort().values  # as a loader returns them: class by class
    order = interleaved_order(labels)
    assert sorted(order.tolist()) == list(range(len(labels)))
    total = len(labels)
    for end in range(1, total + 1):
        counts = Counter(labels[order[:end]].tolist())
        for cls, size in CLASS_SIZES.items():
            assert abs(counts[cls] - size * end / total) < 1, (end, cls, counts)


def test_interleaved_order_is_fixed_for_a_seed_and_changes_with_it() -> None:
    labels = torch.arange(5).repeat_interleave(20)
    assert torch.equal(interleaved_order(labels), interleaved_order(labels))
    assert not torch.equal(interleaved_order(labels, seed=1), interleaved_order(labels, seed=2))


def test_a_fixed_order_is_for_unshuffled_samplers_of_its_size() -> None:
    order = torch.tensor([2, 0, 1])
    sampler = EpochSampler(3, shuffle=False, order=order)
    assert torch.equal(sampler.indices(), order)
    with pytest.raises(ValueError, match="unshuffled"):
        EpochSampler(3, shuffle=True, order=order)
    with pytest.raises(ValueError, match="unshuffled"):
        EpochSampler(4, shuffle=False, order=order)


def test_unshuffled_sampler_is_arange_every_epoch() -> None:
    sampler = EpochSampler(10, shuffle=False, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert torch.equal(sampler.indices(), torch.arange(10))


def test_shuffled_sampler_changes_with_the_epoch_and_is_reproducible() -> None:
    sampler = EpochSampler(50, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = sampler.indices()
        assert sorted(order.tolist()) == list(range(50))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert not torch.equal(orders[0], torch.arange(50))
    sampler.set_epoch(1)
    assert torch.equal(sampler.indices(), orders[1])
    fresh = EpochSampler(50, shuffle=True, seed=3)
    fresh.set_epoch(2)
    assert torch.equal(fresh.indices(), orders[2])
    other_seed = EpochSampler(50, shuffle=True, seed=4)
    other_seed.set_epoch(2)
    assert not torch.equal(other_seed.indices(), orders[2])


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("size", [12, 13, 14])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_are_disjoint_and_cover_every_index(world_size: int, size: int, shuffle: bool) -> None:
    parts = []
    for rank in range(world_size):
        sampler = EpochSampler(size, shuffle=shuffle, seed=1, rank=rank, world_size=world_size)
        sampler.set_epoch(4)
        indices = sampler.indices().tolist()
        assert len(indices) == len(sampler)
        parts.append(set(indices))
    assert sum(len(p) for p in parts) == size
    assert set().union(*parts) == set(range(size))


@pytest.mark.parametrize(
    ("size", "batch_size", "drop_last", "expected"),
    [(10, 4, False, 3), (10, 4, True, 2), (8, 4, False, 2), (8, 4, True, 2), (3, 4, False, 1), (3, 4, True, 0)],
)
def test_loader_length(size: int, batch_size: int, drop_last: bool, expected: int) -> None:
    loader = DeviceBatchLoader(make_split(size), batch_size, EpochSampler(size, shuffle=True), drop_last=drop_last)
    assert len(loader) == expected
    assert len(list(loader)) == expected


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_yields_every_sample_once_per_epoch(shuffle: bool) -> None:
    split = make_split(10)
    sampler = EpochSampler(10, shuffle=shuffle, seed=0)
    loader = DeviceBatchLoader(split, 4, sampler, drop_last=False)
    seen_orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        labels = []
        for images, batch_labels in loader:
            assert images.dtype == torch.uint8 and batch_labels.dtype == torch.int64
            assert images.shape[1:] == (3, 4, 4) and len(images) == len(batch_labels) <= 4
            assert torch.equal(images, split.images[batch_labels])  # images travel with their labels
            labels += batch_labels.tolist()
        assert sorted(labels) == list(range(10))
        seen_orders.append(labels)
    assert (seen_orders[0] != seen_orders[1]) == shuffle
    if not shuffle:
        assert seen_orders[0] == list(range(10))


def test_loader_drop_last_yields_only_full_batches() -> None:
    loader = DeviceBatchLoader(make_split(10), 4, EpochSampler(10, shuffle=True), drop_last=True)
    batches = [labels for _, labels in loader]
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(torch.cat(batches).tolist())) == 8


def test_every_rank_runs_the_same_number_of_training_batches() -> None:
    split = make_split(11)
    lengths = {
        len(
            DeviceBatchLoader(split, 3, EpochSampler(11, shuffle=True, rank=r, world_size=2, even=True), drop_last=True)
        )
        for r in range(2)
    }
    assert len(lengths) == 1, lengths


# ---------------------------------------------------------------------------------------------
