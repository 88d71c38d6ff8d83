"""Groups of tagged images sharing a class (group-wise semantic mining): exact tag-set match, else a shared class."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset

from monai_wsss.data import GroupSampler, build_groups, tag_sets

# 0-2: {0}, 3-4: {0, 1}, 5: {1, 2} (no exact partner), 6-7: negatives, 8: {2} alone with class 2 shared by 5 only
TAGS = [[1, 0, 0]] * 3 + [[1, 1, 0]] * 2 + [[0, 1, 1]] + [[0, 0, 0]] * 2 + [[0, 0, 1]]


def test_every_group_shares_a_class_with_its_anchor():
    sets = tag_sets(TAGS)
    groups = build_groups(TAGS, group_size=3, seed=3)
    assert sorted(g[0] for g in groups) == list(range(len(TAGS)))  # every item anchors one group
    for g in groups:
        assert len(g) == 3
        anchor = sets[g[0]]
        for j in g[1:]:
            assert (anchor & sets[j]) if anchor else not sets[j]  # negatives group with negatives


def test_exact_tag_set_first_then_one_shared_class():
    sets = tag_sets(TAGS)
    for seed in range(5):
        groups = {g[0]: g for g in build_groups(TAGS, group_size=3, seed=seed)}
        assert sorted(groups[0][1:]) == [1, 2]  # the two other {0} images, no repeat
        # {0, 1} has one exact partner only: the partners share one class of it instead
        assert all(sets[j] & {0, 1} for j in groups[3][1:])
        # {1, 2} has no exact partner: images with class 1 or class 2
        assert all(sets[j] & {1, 2} for j in groups[5][1:])
        assert sorted(groups[6][1:]) == [7, 7]  # one other negative: drawn with replacement


def test_an_item_sharing_nothing_is_grouped_with_copies_of_itself():
    assert build_groups([[1, 0], [0, 1]], group_size=3, shuffle=False) == [[0, 0, 0], [1, 1, 1]]


def test_groups_are_deterministic_and_change_between_passes():
    assert build_groups(TAGS, seed=7) == build_groups(TAGS, seed=7)
    sampler = GroupSampler(TAGS, seed=7)
    first, second = list(sampler), list(sampler)
    assert first == build_groups(TAGS, seed=7) and second == build_groups(TAGS, seed=8) and first != second
    sampler.set_epoch(0)
    assert list(sampler) == first and len(sampler) == len(TAGS)


def test_batch_sampler_gives_one_group_per_batch_from_item_dicts():
    items = [{"image": torch.full((1, 4, 4), float(i)), "class_labels": t} for i, t in enumerate(TAGS)]
    loader = DataLoader(Dataset(items), batch_sampler=GroupSampler(items, seed=1))
    sets = tag_sets(TAGS)
    batches = list(loader)
    assert len(batches) == len(TAGS)
    for batch in batches:
        idx = [int(v) for v in batch["image"][:, 0, 0, 0]]
        assert batch["image"].shape == (3, 1, 4, 4)
        assert all((sets[idx[0]] & sets[j]) or not (sets[idx[0]] or sets[j]) for j in idx[1:])


def test_malformed_tags_are_refused_naming_the_item():
    with pytest.raises(ValueError, match="item 1: 3 tags"):
        build_groups([[1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="item 0: tags must be a multi-hot"):
        build_groups([[2, 0]])
    with pytest.raises(ValueError, match=r"item 0 \(a.png\): no `class_labels`"):
        GroupSampler([{"image": "a.png"}])
    with pytest.raises(ValueError, match="group_size"):
        build_groups(TAGS, group_size=1)
