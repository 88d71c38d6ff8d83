"""Groups of tagged images that share a class, for group-wise semantic mining: one group = one batch."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["GroupSampler", "build_groups", "tag_sets"]


def tag_sets(tags: Sequence[Any], tag_key: str = "class_labels") -> list[frozenset[int]]:
    """
    The set of present classes of every item: ``tags`` holds multi-hot vectors (one 0/1 per class) or item dicts
    carrying one under ``tag_key`` (as :py:func:`~monai_wsss.data.load_tagged_datalist` returns them).

    Raises:
        ValueError: an item has no ``tag_key``, a vector is not 1-D or not 0/1, or the vectors differ in length.
    """
    out, length = [], None
    for n, t in enumerate(tags):
        if isinstance(t, Mapping):
            if tag_key not in t:
                raise ValueError(f"item {n} ({t.get('image', '?')}): no `{tag_key}` (image-level tags).")
            t = t[tag_key]
        arr = np.asarray(t, dtype=np.float64)
        if arr.ndim != 1 or not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"item {n}: tags must be a multi-hot vector of 0/1, got {np.asarray(t).tolist()}.")
        if length is not None and arr.shape[0] != length:
            raise ValueError(f"item {n}: {arr.shape[0]} tags, the items before it have {length}.")
        length = arr.shape[0]
        out.append(frozenset(np.flatnonzero(arr > 0).tolist()))
    return out


def build_groups(
    tags: Sequence[Any], group_size: int = 3, seed: int = 0, shuffle: bool = True, tag_key: str = "class_labels"
) -> list[list[int]]:
    """
    One group of ``group_size`` item indices per item (the item is the group's *anchor*, first in the group), the
    rule of group-wise semantic mining (Li et al., AAAI 2021; its reference data loader): the partners are drawn
    from the items with exactly the anchor's tag set; when fewer than ``group_size - 1`` such items exist, from the
    items sharing one class of the anchor (chosen at random). An item without tags (a negative) is grouped with
    other negatives (the empty set matches exactly). A pool smaller than ``group_size - 1`` is drawn with
    replacement; an item that shares its tags with no other item is repeated (a group of copies). Deterministic for
    a given ``seed``.

    Args:
        tags: multi-hot vectors or item dicts (see :py:func:`tag_sets`).
        group_size: images per group (3 in the paper).
        seed: seed of the anchor order and partner draws.
        shuffle: shuffle the anchor order (otherwise item order).
        tag_key: key of the tags in item dicts.

    Raises:
        ValueError: ``group_size`` < 2, no items, or malformed tags (see :py:func:`tag_sets`).
    """
    if group_size < 2:
        raise ValueError(f"`group_size` must be >= 2, got {group_size}.")
    sets = tag_sets(tags, tag_key)
    if not sets:
        raise ValueError("build_groups: no tagged item.")
    by_set: dict[frozenset[int], list[int]] = defaultdict(list)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        by_set[s].append(i)
        for c in s:
            by_class[c].append(i)
    rng = random.Random(seed)
    order = list(range(len(sets)))
    if shuffle:
        rng.shuffle(order)
    need = group_size - 1
    groups = []
    for a in order:
        pool = [j for j in by_set[sets[a]] if j != a]
        if len(pool) < need and sets[a]:
            c = rng.choice(sorted(sets[a]))
            pool = [j for j in by_class[c] if j != a]
        if len(pool) >= need:
            partners = rng.sample(pool, need)
        elif pool:
            partners = [rng.choice(pool) for _ in range(need)]
        else:
            partners = [a] * need
        groups.append([a, *partners])
    return groups


class GroupSampler(Sampler[list[int]]):
    """
    A batch sampler (``DataLoader(dataset, batch_sampler=GroupSampler(...))``) yielding the groups of
    :py:func:`build_groups`: one batch = one group of ``group_size`` images sharing a class, anchor first; every
    item is the anchor of one group per pass. Each pass draws new groups (seed ``seed + pass index``; the pass index
    advances at every ``__iter__`` or is set with :py:meth:`set_epoch`), so a run is reproducible from ``seed``.

        Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised
        Semantic Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007

    Args:
        tags: multi-hot vectors or item dicts (the dataset's items, in dataset order).
        group_size: images per group. Defaults to 3.
        seed: base seed. Defaults to 0.
        shuffle: shuffle the anchors of each pass. Defaults to True.
        tag_key: key of the tags in item dicts.

    Raises:
        ValueError: see :py:func:`build_groups`.
    """

    def __init__(
        self,
        tags: Sequence[Any],
        group_size: int = 3,
        seed: int = 0,
        shuffle: bool = True,
        tag_key: str = "class_labels",
    ) -> None:
        self.tags = list(tags)
        self.group_size, self.seed, self.shuffle, self.tag_key = int(group_size), int(seed), bool(shuffle), tag_key
        build_groups(self.tags, self.group_size, self.seed, self.shuffle, tag_key)  # validate now
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the groups of pass ``epoch`` next."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        groups = build_groups(self.tags, self.group_size, self.seed + self.epoch, self.shuffle, self.tag_key)
        self.epoch += 1
        yield from groups

    def __len__(self) -> int:
        return len(self.tags)
