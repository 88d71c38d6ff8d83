"""Query strategies of active learning behind one protocol (Konyushkova, Sznitman, Fua; ICCV 2015, CVIU 2019).

A strategy does two things for one pool case:

- :py:meth:`QueryStrategy.score`: one score per region (supervoxel) of the case, from the network's softmax
  probabilities ``(K, *spatial)``, the region map and, for the geometric strategies, the region graph built on the
  image (higher = query first);
- :py:meth:`QueryStrategy.propose`: the next query in that case under the round's budget (``voxels_per_round`` newly
  annotated voxels, or ``regions_per_round`` regions), as a boolean mask plus the fields recorded with it.

:py:class:`monai_wsss.apps.active_learning.ActiveLearningLoop` only orchestrates: it scores every pool case, asks the
strategy which case to query (:py:meth:`QueryStrategy.select_case`, the case holding the best region by default) and
records the answer. A new strategy is one subclass (or any object with these three methods and a ``name``), picked
in a bundle config by ``_target_``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import look_up_option

from monai_wsss.active.geometry import RegionGraph, region_mean
from monai_wsss.active.planes import PlaneSearch
from monai_wsss.transforms.uncertainty import UNCERTAINTY_MODES

__all__ = [
    "QueryStrategy",
    "RandomStrategy",
    "FeatureUncertaintyStrategy",
    "EntropyStrategy",
    "MarginStrategy",
    "PairwiseEntropyStrategy",
    "GeometricStrategy",
    "GeometricPlaneStrategy",
    "available_regions",
    "fill_budget",
]


def available_regions(regions: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """``(R,)`` boolean: the regions of the integer map ``regions`` that are less than half annotated."""
    frac = np.asarray(region_mean(annotated.astype(np.float64)[None], regions[None], int(regions.max()) + 1))
    return frac.reshape(-1) < 0.5


def fill_budget(regions: np.ndarray, annotated: np.ndarray, order: Sequence[int], voxels: int) -> list[int]:
    """
    The first regions of ``order`` whose unannotated voxels add up to at least ``voxels`` (the last one may
    overshoot by less than its own size).

    Raises:
        ValueError: ``voxels`` is below 1.
    """
    if voxels < 1:
        raise ValueError(f"`voxels` must be >= 1, got {voxels}.")
    new = np.bincount(regions[~annotated].ravel(), minlength=int(regions.max()) + 1)
    pick, total = [], 0
    for p in order:
        if total >= voxels:
            break
        pick.append(int(p))
        total += int(new[p])
    return pick


class QueryStrategy:
    """
    The protocol of a query strategy (the plug point of ``ARCHITECTURE.md``), after Konyushkova, K., Sznitman, R.,
    Fua, P. (2015) Introducing Geometry in Active Learning for Image Segmentation. ICCV 2015; (2019) Geometry in
    Active Learning for Binary and Multi-class Image Segmentation. CVIU 2019.

    Subclasses override :py:meth:`score` (and :py:meth:`propose` for non-region queries). ``needs_probs = False``
    tells the loop not to run the network before scoring (random queries).

    Args:
        name: the strategy's name: the loop's folder ``<output_dir>/<name>/`` and ``learning_curve_<name>.csv``.
    """

    name = "strategy"
    needs_probs = True

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = str(name)

    def score(
        self,
        probs: torch.Tensor | None,
        regions: np.ndarray,
        image: np.ndarray | None = None,
        key: str | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """
        ``(R,)`` scores of the regions ``0..R-1`` of ``regions`` (higher = more informative).

        Args:
            probs: softmax probabilities ``(K, *spatial)`` of the case (None when ``needs_probs`` is False).
            regions: integer region map ``(*spatial)``.
            image: channel-first image of the case (for appearance-weighted region graphs).
            key: a stable name of the case (lets a strategy cache per-case structures such as its graph).
            rng: the round's random generator.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `score`.")

    def select_case(self, scores: Sequence[np.ndarray], rng: np.random.Generator) -> int:
        """The pool case to query: the one holding the best available region (scores of taken regions are -inf)."""
        return int(np.argmax([s.max() if s.size else -np.inf for s in scores]))

    def propose(
        self,
        regions: np.ndarray,
        annotated: np.ndarray,
        scores: np.ndarray,
        voxels_per_round: int | None = None,
        regions_per_round: int = 10,
        rng: np.random.Generator | None = None,
    ) -> dict:
        """
        The query in one case: regions in score order (``-inf`` = unavailable) until ``voxels_per_round`` newly
        annotated voxels (when set), else the ``regions_per_round`` best regions. Returns ``{"mask": bool array,
        "region_ids": [...]}``; the fields other than ``mask`` are recorded in the annotation state.
        """
        order = [int(p) for p in np.argsort(-scores, kind="stable") if np.isfinite(scores[p])]
        if voxels_per_round is None:
            pick = order[:regions_per_round]
        else:
            pick = fill_budget(regions, annotated, order, voxels_per_round)
        return {"mask": np.isin(regions, pick), "region_ids": sorted(pick)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RandomStrategy(QueryStrategy):
    """
    Random queries (the baseline of Konyushkova et al., ICCV 2015 / CVIU 2019): a random pool case among those
    with an available region, then regions in a random order. Every loop's round 0 is this strategy, so the first
    query is the same for every strategy with the same seed.
    """

    name = "random"
    needs_probs = False

    def score(self, probs, regions, image=None, key=None, rng=None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        n = int(regions.max()) + 1
        scores = np.empty(n)
        scores[rng.permutation(n)] = np.arange(n, 0, -1, dtype=np.float64)  # a random order as scores
        return scores

    def select_case(self, scores: Sequence[np.ndarray], rng: np.random.Generator) -> int:
        return int(rng.choice([i for i, s in enumerate(scores) if np.isfinite(s).any()]))


class FeatureUncertaintyStrategy(QueryStrategy):
    """
    Feature uncertainty: the mean over each region of a per-voxel uncertainty of the softmax probabilities
    (Konyushkova et al., CVIU 2019, Sec. 4 "Feature uncertainty" and the multi-class criteria); ``mode`` is one
    of :py:data:`monai_wsss.transforms.uncertainty.UNCERTAINTY_MODES` (``"entropy"``, ``"margin"``,
    ``"pairwise_entropy"``).

    Args:
        mode: the voxel uncertainty.
        name: defaults to ``mode``.

    Raises:
        ValueError: ``mode`` is not one of the uncertainty modes.
    """

    def __init__(self, mode: str = "entropy", name: str | None = None) -> None:
        self.uncertainty = look_up_option(mode, UNCERTAINTY_MODES)  # returns the function
        self.mode = mode
        super().__init__(name or mode)

    def score(self, probs, regions, image=None, key=None, rng=None) -> np.ndarray:
        if probs is None:
            raise ValueError(f"{type(self).__name__} scores from probabilities; got None.")
        vox = self.uncertainty(torch.as_tensor(probs).double(), dim=0).cpu().numpy()[None]
        return np.asarray(region_mean(vox, regions[None], int(regions.max()) + 1)).reshape(-1)


class EntropyStrategy(FeatureUncertaintyStrategy):
    """Mean voxel Shannon entropy per region (the entropy criterion of Konyushkova et al., ICCV 2015)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__("entropy", name)


class MarginStrategy(FeatureUncertaintyStrategy):
    """Mean voxel margin ``1 - (p_(1) - p_(2))`` per region (multi-class criterion, Konyushkova et al., CVIU 2019)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__("margin", name)


class PairwiseEntropyStrategy(FeatureUncertaintyStrategy):
    """Mean voxel entropy of the two best classes per region (the "pairwise entropy" multi-class criterion of
    Konyushkova et al., CVIU 2019, as read in :py:func:`monai_wsss.transforms.uncertainty.pairwise_entropy`)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__("pairwise_entropy", name)


class GeometricStrategy(QueryStrategy):
    """
    Feature + geometric uncertainty on the supervoxel graph (Konyushkova et al., ICCV 2015; CVIU 2019, Sec. 4):
    per-region class distributions (mean softmax) are propagated by a random walk on the appearance-weighted
    region graph (:py:class:`monai_wsss.active.RegionGraph`), and a region's score is
    ``U_f + geometric_weight * U_g``. The graph of each case is built once and cached by ``key``.

    Args:
        geometric_weight: weight of the geometric term.
        walk_steps: random-walk steps.
        mode: uncertainty of a distribution (``"entropy"``, ``"margin"``, ``"pairwise_entropy"``).
        name: defaults to ``"geometric"``.

    Raises:
        ValueError: ``geometric_weight`` is negative, ``walk_steps`` below 1, or ``mode`` unknown.
    """

    name = "geometric"

    def __init__(
        self, geometric_weight: float = 1.0, walk_steps: int = 1, mode: str = "entropy", name: str | None = None
    ) -> None:
        if geometric_weight < 0 or walk_steps < 1:
            raise ValueError(f"need geometric_weight >= 0 and walk_steps >= 1, got {geometric_weight}, {walk_steps}.")
        super().__init__(name)
        self.geometric_weight, self.walk_steps = float(geometric_weight), int(walk_steps)
        look_up_option(mode, UNCERTAINTY_MODES)  # validates the name
        self.mode = mode
        self._graphs: dict[str, RegionGraph] = {}

    def graph(self, regions: np.ndarray, image: np.ndarray | None = None, key: str | None = None) -> RegionGraph:
        """The region graph of a case (cached by ``key``; rebuilt when the region map's shape changed)."""
        g = self._graphs.get(key) if key is not None else None
        if g is None or g.regions.shape != regions.shape:
            g = RegionGraph(regions, image, steps=self.walk_steps, mode=self.mode)
            if key is not None:
                self._graphs[key] = g
        return g

    def score(self, probs, regions, image=None, key=None, rng=None) -> np.ndarray:
        if probs is None:
            raise ValueError(f"{type(self).__name__} scores from probabilities; got None.")
        g = self.graph(regions, image, key)
        p = torch.as_tensor(probs).detach().cpu().numpy()
        return g.combined_uncertainty(g.region_probs(p), self.geometric_weight)


class GeometricPlaneStrategy(GeometricStrategy):
    """
    The geometric score of :py:class:`GeometricStrategy`, queried in 3D as planar patches (Konyushkova et al.,
    CVIU 2019: one plane of any orientation per query, found by branch-and-bound,
    :py:class:`monai_wsss.active.PlaneSearch`): a disc of ``plane_radius`` voxels through the centre of the best
    available region, maximising the summed region scores on it. With ``voxels_per_round``, patches are added one
    after another (each through the next best region not yet covered) until the budget is reached; the last may
    overshoot by less than its own size. 2D cases fall back to :py:class:`GeometricStrategy`'s region queries.

    Args:
        plane_radius: disc radius in voxels (``None``: the whole plane).
        plane_thickness: thickness in voxels.
        plane_angles: ``(n_theta, n_phi)`` orientation grid.
        geometric_weight, walk_steps, mode: as :py:class:`GeometricStrategy`.
        name: defaults to ``"geometric_plane"``.

    Raises:
        ValueError: ``plane_angles`` does not hold two positive integers, or ``plane_thickness`` is not positive.
    """

    name = "geometric_plane"

    def __init__(
        self,
        plane_radius: float | None = 12.0,
        plane_thickness: float = 1.0,
        plane_angles: Sequence[int] = (5, 16),
        geometric_weight: float = 1.0,
        walk_steps: int = 1,
        mode: str = "entropy",
        name: str | None = None,
    ) -> None:
        super().__init__(geometric_weight, walk_steps, mode, name)
        angles = tuple(int(a) for a in plane_angles)
        if len(angles) != 2 or min(angles) < 1 or plane_thickness <= 0:
            raise ValueError(
                f"need plane_angles = (n_theta, n_phi) >= 1 and plane_thickness > 0, got {plane_angles}, "
                f"{plane_thickness}."
            )
        self.plane_radius, self.plane_thickness, self.plane_angles = plane_radius, float(plane_thickness), angles

    def _search(self, regions: np.ndarray, top: int, uncertainty: np.ndarray):
        return PlaneSearch(
            thickness=self.plane_thickness,
            radius=self.plane_radius,
            center=np.argwhere(regions == top).mean(0),
            n_theta=self.plane_angles[0],
            n_phi=self.plane_angles[1],
        )(uncertainty)

    def propose(
        self,
        regions: np.ndarray,
        annotated: np.ndarray,
        scores: np.ndarray,
        voxels_per_round: int | None = None,
        regions_per_round: int = 10,
        rng: np.random.Generator | None = None,
    ) -> dict:
        if regions.ndim != 3:
            out = super().propose(regions, annotated, scores, voxels_per_round, regions_per_round, rng)
            return {**out, "plane": None}
        vox_scores = np.clip(np.where(np.isfinite(scores), scores, 0.0), 0, None)[regions]
        taken, mask = annotated.copy(), np.zeros(annotated.shape, dtype=bool)
        s, planes = scores.copy(), []
        while np.isfinite(s).any():
            top = int(np.argmax(s))
            result = self._search(regions, top, np.where(taken, 0.0, vox_scores))
            if voxels_per_round is None:
                return {"mask": result.mask(annotated.shape) & ~annotated, "plane": result.to_dict()}
            patch = result.mask(annotated.shape) & ~taken
            s[top] = -np.inf  # never centre two patches on the same region
            if patch.any():
                mask |= patch
                taken |= patch
                planes.append(result.to_dict())
                s = np.where(available_regions(regions, taken), s, -np.inf)
            if int(mask.sum()) >= voxels_per_round:
                break
        return {"mask": mask, "plane": planes[0] if planes else None, "planes": planes}
