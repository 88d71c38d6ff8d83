"""Per-image scores and region / plane queries of the monai_wsss query strategies, for MONAI Label.

MONAI Label ranks whole images (its ``/activelearning/<strategy>`` returns one image id); the monai_wsss strategies
score supervoxels. The image score here is the one the active-learning loop itself ranks cases by
(:py:meth:`monai_wsss.active.QueryStrategy.select_case`): the best score of an available region of the image. The
region or planar-patch query inside the chosen image travels in the response as extra fields.
"""

from __future__ import annotations

import numpy as np
import torch

from monai_wsss.active import QueryStrategy, available_regions
from monai_wsss.utils import to_jsonable

__all__ = ["image_score", "query_image"]


def _region_scores(
    strategy: QueryStrategy,
    probs: torch.Tensor | None,
    regions: np.ndarray,
    annotated: np.ndarray | None,
    image: np.ndarray | None,
    key: str | None,
    rng: np.random.Generator,
) -> np.ndarray:
    if probs is not None and tuple(probs.shape[1:]) != tuple(regions.shape):
        raise ValueError(f"probabilities {tuple(probs.shape)} do not match the region map {regions.shape}.")
    annotated = np.zeros(regions.shape, dtype=bool) if annotated is None else np.asarray(annotated, dtype=bool)
    avail = available_regions(regions, annotated)
    scores = np.asarray(strategy.score(probs, regions, image, key, rng), dtype=np.float64)
    if scores.shape != avail.shape:
        raise ValueError(f"{strategy!r} returned {scores.shape} scores for {avail.shape[0]} regions.")
    return np.where(avail, scores, -np.inf)


def image_score(
    strategy: QueryStrategy,
    probs: torch.Tensor | None,
    regions: np.ndarray,
    annotated: np.ndarray | None = None,
    image: np.ndarray | None = None,
    key: str | None = None,
    seed: int = 0,
) -> float:
    """The image's score under ``strategy``: the best score of its available (less than half annotated) regions;
    ``-inf`` when every region is annotated.

    Args:
        strategy: a :py:class:`monai_wsss.active.QueryStrategy`.
        probs: softmax probabilities ``(K, *spatial)`` (None for strategies with ``needs_probs = False``).
        regions: supervoxel map ``(*spatial)`` (e.g. :py:class:`monai_wsss.transforms.Supervoxels`).
        annotated: voxels already annotated (default: none).
        image: the channel-first image (appearance-weighted region graphs).
        key: a stable name of the image (strategies cache per-image structures by it).
        seed: seed of the random generator handed to the strategy.

    Raises:
        ValueError: ``probs`` and ``regions`` disagree in shape, or the strategy returned the wrong number of scores.
    """
    scores = _region_scores(strategy, probs, regions, annotated, image, key, np.random.default_rng(seed))
    return float(scores.max()) if scores.size else float("-inf")


def query_image(
    strategy: QueryStrategy,
    probs: torch.Tensor | None,
    regions: np.ndarray,
    annotated: np.ndarray | None = None,
    image: np.ndarray | None = None,
    key: str | None = None,
    voxels_per_round: int | None = None,
    regions_per_round: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """The strategy's query inside one image: ``(mask, fields)`` where ``fields`` is JSON-ready (``region_ids``,
    or ``plane`` / ``planes`` with centre, normal and radius for planar patches, plus ``voxels`` and ``score``).

    Args:
        strategy, probs, regions, annotated, image, key, seed: as :py:func:`image_score`.
        voxels_per_round: voxel budget of the query (None: ``regions_per_round`` regions or one planar patch).
        regions_per_round: regions per query without a voxel budget.

    Raises:
        ValueError: as :py:func:`image_score`, or every region is already annotated.
    """
    rng = np.random.default_rng(seed)
    scores = _region_scores(strategy, probs, regions, annotated, image, key, rng)
    if not np.isfinite(scores).any():
        raise ValueError("every region of the image is already annotated.")
    done = np.zeros(regions.shape, dtype=bool) if annotated is None else np.asarray(annotated, dtype=bool)
    q = dict(strategy.propose(regions, done, scores, voxels_per_round, regions_per_round, rng))
    mask = np.asarray(q.pop("mask"), dtype=bool)
    fields = {k: to_jsonable(v) for k, v in q.items()}
    fields.update(voxels=int(mask.sum()), score=float(scores.max()), strategy=strategy.name)
    return mask, fields
