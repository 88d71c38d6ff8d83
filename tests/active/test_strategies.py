"""Query strategies (monai_wsss.active.strategies) on hand-checkable region maps and probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_wsss.active import (
    EntropyStrategy,
    GeometricPlaneStrategy,
    GeometricStrategy,
    MarginStrategy,
    PairwiseEntropyStrategy,
    QueryStrategy,
    RandomStrategy,
    RegionGraph,
    available_regions,
    fill_budget,
)

# a 2D map of 4 regions, 2 x 2 pixels each (region r = quadrant r)
REGIONS = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 3, 3],
        [2, 2, 3, 3],
    ]
)


def _probs(per_region: list[list[float]]) -> torch.Tensor:
    """(K, 4, 4) probabilities constant on each region."""
    p = torch.tensor(per_region, dtype=torch.float64)  # (R, K)
    return p[torch.as_tensor(REGIONS)].permute(2, 0, 1)


def test_entropy_margin_pairwise_scores_by_hand():
    probs = _probs([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2]])
    ent = EntropyStrategy().score(probs, REGIONS)
    h4 = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    np.testing.assert_allclose(ent, [0.0, math.log(2), math.log(3), h4], atol=1e-9)
    mar = MarginStrategy().score(probs, REGIONS)
    np.testing.assert_allclose(mar, [0.0, 1.0, 1.0, 1 - 0.4], atol=1e-9)
    pw = PairwiseEntropyStrategy().score(probs, REGIONS)
    q = 0.6 / 0.8  # the two best classes of region 3, renormalised
    np.testing.assert_allclose(pw, [0.0, math.log(2), math.log(2), -(q * math.log(q) + (1 - q) * math.log(1 - q))])
    assert [s.name for s in (EntropyStrategy(), MarginStrategy(), PairwiseEntropyStrategy())] == [
        "entropy",
        "margin",
        "pairwise_entropy",
    ]


def test_region_proposal_in_score_order_under_both_budgets():
    probs = _probs([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.7, 0.3]])
    strategy = EntropyStrategy()
    scores = strategy.score(probs, REGIONS)
    annotated = np.zeros(REGIONS.shape, bool)
    q = strategy.propose(REGIONS, annotated, scores, voxels_per_round=None, regions_per_round=2)
    assert q["region_ids"] == [1, 3]  # the two most uncertain quadrants
    np.testing.assert_array_equal(q["mask"], np.isin(REGIONS, [1, 3]))
    # region 1 is half annotated: it brings only its 2 new voxels, so 5 voxels need regions 1 and 3 (2 + 4)
    annotated[0, 2:] = True
    q = strategy.propose(REGIONS, annotated, scores, voxels_per_round=5)
    assert q["region_ids"] == [1, 3]
    q = strategy.propose(REGIONS, annotated, scores, voxels_per_round=7)
    assert q["region_ids"] == [1, 2, 3]  # 2 + 4 = 6 < 7: the next region in score order (2) is added
    # -inf marks unavailable regions: never proposed
    q = strategy.propose(REGIONS, annotated, np.where([True, False, True, True], scores, -np.inf), None, 10)
    assert q["region_ids"] == [0, 2, 3]


def test_available_regions_and_fill_budget():
    annotated = np.zeros(REGIONS.shape, bool)
    annotated[0, 2:] = True  # region 1: 2 of 4 voxels -> half annotated, no longer available
    annotated[3, 3] = True  # region 3: 1 of 4 -> still available
    np.testing.assert_array_equal(available_regions(REGIONS, annotated), [True, False, True, True])
    assert fill_budget(REGIONS, annotated, [3, 0, 2], 3) == [3]  # 3 new voxels in region 3
    assert fill_budget(REGIONS, annotated, [3, 0, 2], 4) == [3, 0]
    with pytest.raises(ValueError, match="voxels"):
        fill_budget(REGIONS, annotated, [0], 0)


def test_random_strategy_is_a_seeded_permutation_and_picks_any_open_case():
    s = RandomStrategy()
    assert not s.needs_probs and s.name == "random"
    a = s.score(None, REGIONS, rng=np.random.default_rng(3))
    b = s.score(None, REGIONS, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == [1.0, 2.0, 3.0, 4.0]  # a random order of the 4 regions
    closed = np.full(4, -np.inf)
    picks = {s.select_case([closed, a, closed, a], np.random.default_rng(i)) for i in range(40)}
    assert picks == {1, 3}  # only cases with an available region, both of them over seeds


def test_default_case_selection_is_the_best_region():
    s = EntropyStrategy()
    assert s.select_case([np.array([0.1, 0.2]), np.array([-np.inf, 0.9]), np.array([0.5])], None) == 1


def test_geometric_scores_equal_the_region_graph_and_cache_per_case():
    image = np.arange(16, dtype=np.float64).reshape(1, 4, 4) / 16
    probs = _probs([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    s = GeometricStrategy(geometric_weight=0.5, walk_steps=2)
    got = s.score(probs, REGIONS, image, key="case0")
    g = RegionGraph(REGIONS, image, steps=2)
    rp = g.region_probs(probs.numpy())
    np.testing.assert_allclose(got, g.feature_uncertainty(rp) + 0.5 * g.geometric_uncertainty(rp))
    # feature term alone: the entropy of each region's own distribution
    np.testing.assert_allclose(
        GeometricStrategy(geometric_weight=0.0).score(probs, REGIONS, image), EntropyStrategy().score(probs, REGIONS)
    )
    assert s.graph(REGIONS, image, "case0") is s.graph(REGIONS, image, "case0")
    with pytest.raises(ValueError, match="walk_steps"):
        GeometricStrategy(walk_steps=0)


def test_geometric_plane_queries_planes_in_3d_and_regions_in_2d():
    # 3D: 8 x 8 x 8 volume, regions = the two halves along axis 0; the uncertain half is region 1
    regions = np.zeros((8, 8, 8), dtype=np.int64)
    regions[4:] = 1
    s = GeometricPlaneStrategy(plane_radius=None, plane_angles=(3, 4))
    annotated = np.zeros(regions.shape, bool)
    q = s.propose(regions, annotated, np.array([0.0, 1.0]), voxels_per_round=None)
    assert q["plane"] is not None and q["mask"].any()
    assert q["mask"][4:].sum() == q["mask"].sum()  # the plane lies in the uncertain half
    assert abs(np.linalg.norm(q["plane"]["normal"]) - 1) < 1e-6
    q = s.propose(regions, annotated, np.array([0.0, 1.0]), voxels_per_round=100)
    assert q["mask"].sum() >= 100 and len(q["planes"]) >= 1
    # 2D: region queries, no plane
    q = s.propose(REGIONS, np.zeros(REGIONS.shape, bool), np.array([0.1, 0.4, 0.3, 0.2]), None, 2)
    assert q["plane"] is None and q["region_ids"] == [1, 2]
    with pytest.raises(ValueError, match="plane_angles"):
        GeometricPlaneStrategy(plane_angles=(3,))


def test_protocol_base_class_must_be_implemented():
    with pytest.raises(NotImplementedError):
        QueryStrategy().score(None, REGIONS)
    assert QueryStrategy(name="mine").name == "mine"
    with pytest.raises(ValueError, match="probabilities"):
        EntropyStrategy().score(None, REGIONS)
