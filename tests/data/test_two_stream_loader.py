"""Tests of ``TwoStreamLoader``: batch composition, key suffixes, cycling and per-pass ``set_epoch``."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from monai_wsss.data import TwoStreamLoader


def _labeled(n: int) -> list[dict]:
    return [
        {"image": torch.full((1, 2, 2), float(i)), "label": torch.full((1, 2, 2), i % 2), "id": i} for i in range(n)
    ]


def _unlabeled(n: int) -> list[dict]:
    return [{"image": torch.full((1, 2, 2), 100.0 + i), "id": 100 + i} for i in range(n)]


class RecordingSampler(Sampler):
    """Sequential sampler that records every ``set_epoch`` call."""

    def __init__(self, n: int) -> None:
        self.n, self.epochs = n, []

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def _ids(batches: list[dict], key: str = "id") -> list[list[int]]:
    return [b[key].tolist() for b in batches]


def test_batches_hold_both_streams():
    labeled = DataLoader(_labeled(6), batch_size=2)  # 3 batches per pass
    unlabeled = DataLoader(_unlabeled(6), batch_size=3)  # 2 batches per pass
    loader = TwoStreamLoader(labeled, unlabeled, epoch_length=7)
    assert len(loader) == 7
    batches = list(loader)
    assert len(batches) == 7
    assert all(set(b) == {"image", "label", "id", "image_u", "id_u"} for b in batches)
    assert all(b["image"].shape == (2, 1, 2, 2) and b["image_u"].shape == (3, 1, 2, 2) for b in batches)
    # both streams cycle on their own: 7 iterations are 2 passes + 1 batch of the labelled stream, 3.5 of the other
    assert _ids(batches) == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3], [4, 5], [0, 1]]
    assert _ids(batches, "id_u") == [[100, 101, 102], [103, 104, 105]] * 3 + [[100, 101, 102]]
    # values travel with their keys
    for b in batches:
        assert b["image"][:, 0, 0, 0].tolist() == [float(i) for i in b["id"]]
        assert b["image_u"][:, 0, 0, 0].tolist() == [float(i) for i in b["id_u"]]
        assert b["label"][:, 0, 0, 0].tolist() == [i % 2 for i in b["id"].tolist()]


def test_streams_continue_across_epochs():
    loader = TwoStreamLoader(DataLoader(_labeled(6), batch_size=2), DataLoader(_unlabeled(5), batch_size=1), 4)
    first, second = list(loader), list(loader)
    assert _ids(first) == [[0, 1], [2, 3], [4, 5], [0, 1]]
    assert _ids(second) == [[2, 3], [4, 5], [0, 1], [2, 3]]  # an epoch does not restart the streams
    assert _ids(first + second, "id_u") == [[100], [101], [102], [103], [104], [100], [101], [102]]


def test_custom_suffix_and_plain_iterables():
    labeled = [{"image": torch.zeros(1), "id": torch.tensor([k])} for k in range(2)]
    unlabeled = [{"image": torch.ones(1), "id": torch.tensor([10])}]
    batches = list(TwoStreamLoader(labeled, unlabeled, epoch_length=3, unlabeled_suffix="_weak"))
    assert [sorted(b) for b in batches] == [["id", "id_weak", "image", "image_weak"]] * 3
    assert _ids(batches) == [[0], [1], [0]]
    assert _ids(batches, "id_weak") == [[10], [10], [10]]


def test_each_labeled_sample_equally_often_over_full_passes():
    sampler = DistributedSampler(_labeled(6), num_replicas=1, rank=0, shuffle=True, seed=0)
    labeled = DataLoader(_labeled(6), batch_size=2, sampler=sampler)
    unlabeled = DataLoader(_unlabeled(5), batch_size=2, shuffle=True, drop_last=True)
    batches = list(TwoStreamLoader(labeled, unlabeled, epoch_length=9))  # 3 full passes of the labelled stream
    ids = [i for b in batches for i in b["id"].tolist()]
    assert Counter(ids) == {i: 3 for i in range(6)}
    passes = [ids[6 * p : 6 * (p + 1)] for p in range(3)]
    assert all(sorted(p) == list(range(6)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1, "set_epoch should reshuffle the passes"
    assert sampler.epoch == 2
    assert all(len(b["id_u"]) == 2 and all(100 <= i < 105 for i in b["id_u"].tolist()) for b in batches)


def test_set_epoch_is_called_once_per_pass():
    lab_sampler, unl_sampler = RecordingSampler(4), RecordingSampler(3)
    loader = TwoStreamLoader(
        DataLoader(_labeled(4), batch_size=2, sampler=lab_sampler),  # 2 batches per pass
        DataLoader(_unlabeled(3), batch_size=1, sampler=unl_sampler),  # 3 batches per pass
        epoch_length=5,
    )
    list(loader)
    assert lab_sampler.epochs == [0, 1, 2]
    assert unl_sampler.epochs == [0, 1]
    list(loader)  # 10 iterations in all
    assert lab_sampler.epochs == [0, 1, 2, 3, 4]
    assert unl_sampler.epochs == [0, 1, 2, 3]


def test_empty_labeled_loader_raises():
    loader = TwoStreamLoader(DataLoader([], batch_size=2), DataLoader(_unlabeled(2), batch_size=2), epoch_length=3)
    with pytest.raises(ValueError, match="The labeled data loader yields no batch"):
        next(iter(loader))


def test_empty_unlabeled_loader_raises():
    loader = TwoStreamLoader(DataLoader(_labeled(2), batch_size=2), DataLoader([], batch_size=2), epoch_length=3)
    with pytest.raises(ValueError, match="The unlabeled data loader yields no batch"):
        next(iter(loader))


def test_labeled_only():
    loader = TwoStreamLoader(DataLoader(_labeled(3), batch_size=2), None, epoch_length=4)
    batches = list(loader)
    assert [sorted(b) for b in batches] == [["id", "image", "label"]] * 4
    assert _ids(batches) == [[0, 1], [2], [0, 1], [2]]


@pytest.mark.parametrize("epoch_length", [0, -1])
def test_epoch_length_must_be_positive(epoch_length):
    with pytest.raises(ValueError, match="epoch_length"):
        TwoStreamLoader([{"id": 0}], None, epoch_length=epoch_length)
