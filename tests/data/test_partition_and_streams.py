"""Tests of ``partition_labeled``, ``MultiStreamLoader`` and ``subset_loaders`` (the co-training data path)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from monai.transforms import Compose, EnsureTyped

from monai_wsss.data import MultiStreamLoader, partition_labeled, subset_loaders


def _items(n: int) -> list[dict]:
    return [{"image": torch.full((1, 2, 2), float(i)), "label": torch.zeros(1, 2, 2), "id": i} for i in range(n)]


def _ids(subset: list[dict]) -> list[int]:
    return [d["id"] for d in subset]


# --- partition_labeled -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, s", [(20, 2), (7, 3), (3, 3), (10, 4)])
def test_partition_disjoint_cover_balanced(n, s):
    subsets = partition_labeled(_items(n), num_subsets=s, overlap=0.0, seed=3)
    assert len(subsets) == s
    ids = [_ids(p) for p in subsets]
    flat = [i for p in ids for i in p]
    assert sorted(flat) == list(range(n))  # union is everything, nothing twice
    sizes = [len(p) for p in ids]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize(
    "n, s, overlap, n_shared", [(20, 2, 0.3, 6), (20, 3, 0.5, 10), (9, 2, 0.2, 2), (8, 4, 0.25, 2)]
)
def test_partition_overlap_shared_by_all(n, s, overlap, n_shared):
    subsets = partition_labeled(_items(n), num_subsets=s, overlap=overlap, seed=1)
    counts = Counter(i for p in subsets for i in _ids(p))
    assert sorted(counts) == list(range(n))
    assert sum(1 for c in counts.values() if c == s) == n_shared
    assert all(c in (1, s) for c in counts.values())  # the rest is in exactly one subset
    own = [len(p) - n_shared for p in subsets]
    assert max(own) - min(own) <= 1
    assert all(len(set(_ids(p))) == len(p) for p in subsets)  # no duplicate within a subset


def test_partition_overlap_one_gives_everything_to_everyone():
    subsets = partition_labeled(_items(5), num_subsets=3, overlap=1.0)
    assert [sorted(_ids(p)) for p in subsets] == [list(range(5))] * 3


def test_partition_without_shuffle_is_datalist_order():
    """shuffle=False: the shared cases are the first ones, the rest is dealt round-robin."""
    subsets = partition_labeled(_items(6), num_subsets=2, overlap=2 / 6, shuffle=False)
    assert [_ids(p) for p in subsets] == [[0, 1, 2, 4], [0, 1, 3, 5]]


def test_partition_seed_changes_and_reproduces():
    items = _items(20)
    a = [sorted(_ids(p)) for p in partition_labeled(items, seed=0)]
    b = [sorted(_ids(p)) for p in partition_labeled(items, seed=1)]
    assert a != b
    assert a == [sorted(_ids(p)) for p in partition_labeled(items, seed=0)]


@pytest.mark.parametrize(
    "n, kwargs, match",
    [
        (10, {"num_subsets": 1}, "num_subsets"),
        (10, {"num_subsets": 0}, "num_subsets"),
        (10, {"overlap": -0.1}, "overlap"),
        (10, {"overlap": 1.5}, "overlap"),
        (1, {"num_subsets": 2}, "cannot give 2 disjoint"),
        (2, {"num_subsets": 3}, "cannot give 3 disjoint"),
        (2, {"num_subsets": 3, "overlap": 0.1}, "cannot give 3 disjoint"),  # round(0.2) = 0 shared cases
    ],
)
def test_partition_invalid(n, kwargs, match):
    with pytest.raises(ValueError, match=match):
        partition_labeled(_items(n), **kwargs)


@pytest.mark.parametrize("n, s, overlap", [(20, 2, 0.95), (2, 3, 0.5)])
def test_partition_few_non_shared_cases(n, s, overlap):
    """High overlap leaves fewer non-shared cases than subsets: every subset still gets the shared ones."""
    n_shared = round(overlap * n)
    subsets = partition_labeled(_items(n), num_subsets=s, overlap=overlap)
    counts = Counter(i for p in subsets for i in _ids(p))
    assert sorted(counts) == list(range(n))
    assert sum(1 for c in counts.values() if c == s) == n_shared


# --- MultiStreamLoader -------------------------------------------------------------------------------------------


def _stream(tag: float, n: int) -> list[dict]:
    """n batches whose image holds (tag + batch index) and whose label holds -(tag + index)."""
    return [{"image": torch.full((1, 1), tag + k), "label": torch.full((1, 1), -(tag + k))} for k in range(n)]


def test_multistream_suffixed_keys_and_length():
    streams = {"_0": _stream(0, 3), "_1": _stream(10, 3), "_u": [{"image": torch.full((1, 1), 100.0)}]}
    loader = MultiStreamLoader(streams, epoch_length=4)
    assert len(loader) == 4
    batches = list(loader)
    assert len(batches) == 4
    assert all(set(b) == {"image_0", "label_0", "image_1", "label_1", "image_u"} for b in batches)
    b = batches[0]
    assert (b["image_0"].item(), b["label_0"].item(), b["image_1"].item(), b["label_1"].item()) == (0, 0, 10, -10)
    assert b["image_u"].item() == 100


def test_multistream_streams_cycle_independently():
    streams = {"_0": _stream(0, 2), "_1": _stream(10, 3), "_u": _stream(100, 1)}
    loader = MultiStreamLoader(streams, epoch_length=5)
    first, second = list(loader), list(loader)
    assert [b["image_0"].item() for b in first] == [0, 1, 0, 1, 0]
    assert [b["image_1"].item() for b in first] == [10, 11, 12, 10, 11]
    assert [b["image_u"].item() for b in first] == [100] * 5
    # a new epoch continues each stream where it stopped
    assert [b["image_0"].item() for b in second] == [1, 0, 1, 0, 1]
    assert [b["image_1"].item() for b in second] == [12, 10, 11, 12, 10]


def test_multistream_none_stream_is_skipped():
    batches = list(MultiStreamLoader({"_0": _stream(0, 1), "_u": None}, epoch_length=2))
    assert [sorted(b) for b in batches] == [["image_0", "label_0"]] * 2


def test_multistream_empty_stream_raises_with_its_name():
    loader = MultiStreamLoader({"_0": _stream(0, 2), "_1": []}, epoch_length=3)
    with pytest.raises(ValueError, match="'_1'"):
        list(loader)
    named = MultiStreamLoader({"_0": _stream(0, 2), "_1": []}, epoch_length=3, names={"_1": "member-1 subset"})
    with pytest.raises(ValueError, match="member-1 subset"):
        next(iter(named))


def test_multistream_invalid_construction():
    with pytest.raises(ValueError, match="epoch_length"):
        MultiStreamLoader({"_0": _stream(0, 1)}, epoch_length=0)
    with pytest.raises(ValueError, match="at least one"):
        MultiStreamLoader({"_0": None}, epoch_length=1)


# --- subset_loaders ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("transform", [None, "compose"])
def test_subset_loaders_yield_own_subset(cache, transform):
    items = [{"image": torch.full((1, 2, 2), float(i))} for i in range(9)]
    subsets = [items[0:3], items[3:7], items[7:9]]
    tf = Compose([EnsureTyped(keys="image")]) if transform == "compose" else None
    loaders = subset_loaders(subsets, tf, batch_size=2, num_workers=0, cache=cache)
    assert list(loaders) == ["_0", "_1", "_2"]
    for i, key in enumerate(loaders):
        for _ in range(2):  # two passes: reshuffled, same content
            pass_ids = []
            for batch in loaders[key]:
                assert batch["image"].shape[1:] == (1, 2, 2) and batch["image"].shape[0] <= 2
                pass_ids += batch["image"][:, 0, 0, 0].int().tolist()
            assert sorted(pass_ids) == [int(d["image"][0, 0, 0]) for d in subsets[i]]


def test_subset_loaders_feed_a_multistream_loader():
    """End to end: partition, one loader per subset, merged batches carry each member's own cases."""
    items = [{"image": torch.full((1, 2, 2), float(i)), "label": torch.full((1, 2, 2), float(i))} for i in range(8)]
    subsets = partition_labeled(items, num_subsets=2, seed=0)
    own = [{int(d["image"][0, 0, 0]) for d in p} for p in subsets]
    loader = MultiStreamLoader(subset_loaders(subsets, None, batch_size=2), epoch_length=6)
    for b in loader:
        for i in range(2):
            ids = b[f"image_{i}"][:, 0, 0, 0].int().tolist()
            assert set(ids) <= own[i]
            torch.testing.assert_close(b[f"label_{i}"], b[f"image_{i}"])
