from __future__ import annotations

import numpy as np
import pytest

from monai_wsss.active import PlaneSearch, axis_aligned_plane_search, plane_mask, unit_normal

SHAPE = (14, 14, 12)


def _planted(theta, phi, offset, thickness=1.0, seed=0):
    """Low random uncertainty everywhere plus 1 on the voxels of one planted oblique plane."""
    rng = np.random.default_rng(seed)
    u = 0.1 * rng.random(SHAPE)
    mask = plane_mask(SHAPE, unit_normal(theta, phi), offset, thickness)
    u[mask] += 1.0
    return u, mask


@pytest.mark.parametrize(
    "search",
    [PlaneSearch(1.0, n_theta=9, n_phi=32), PlaneSearch(2.0, radius=5.0, n_theta=9, n_phi=16)],
    ids=["full_plane", "disc_r5"],
)
def test_branch_and_bound_matches_exhaustive_and_visits_fewer(search):
    theta, phi = np.pi / 4, np.pi / 4  # grid points: theta index 4 of 9, phi index 4 of 32 / 2 of 16
    u, mask = _planted(theta, phi, offset=1.0)
    ex = search.exhaustive(u)
    bb = search.branch_and_bound(u)
    assert bb.score == pytest.approx(ex.score, rel=1e-9)  # same optimum as scoring the whole grid
    np.testing.assert_allclose(u[bb.mask(SHAPE)].sum(), bb.score)  # the reported score is the mask's sum
    assert bb.n_evaluated + bb.n_boxes < ex.n_evaluated  # fewer planes scored and boxes bounded than the grid
    assert abs(abs(float(bb.normal @ unit_normal(theta, phi))) - 1.0) < 1e-9  # the planted orientation


def test_full_plane_recovers_planted_plane():
    u, mask = _planted(np.pi / 4, np.pi / 2, offset=-2.0, seed=1)
    bb = PlaneSearch(1.0, n_theta=9, n_phi=32).branch_and_bound(u)
    assert (bb.mask(SHAPE) & mask).sum() >= 0.9 * mask.sum()
    assert bb.n_evaluated < 0.01 * 9 * 32 * 30


def test_plane_through_point():
    center = (7.0, 7.0, 6.0)
    rng = np.random.default_rng(2)
    u = 0.1 * rng.random(SHAPE)
    n = unit_normal(np.pi / 8, np.pi)  # theta index 1 of 5, phi index 4 of 8
    u[plane_mask(SHAPE, n, 0.0, 1.0, center=center, radius=4.0)] += 1.0
    search = PlaneSearch(1.0, radius=4.0, center=center, n_theta=5, n_phi=8)
    bb, ex = search.branch_and_bound(u), search.exhaustive(u)
    assert bb.score == pytest.approx(ex.score, rel=1e-9) and bb.offset == 0.0
    assert abs(abs(float(bb.normal @ n)) - 1.0) < 1e-9


def test_oblique_plane_beats_axis_aligned_baseline():
    u, mask = _planted(np.pi / 4, 0.0, offset=0.0, seed=3)
    axis = axis_aligned_plane_search(u, thickness=1)
    assert axis.n_evaluated == sum(SHAPE)
    bb = PlaneSearch(1.0, n_theta=9, n_phi=8).branch_and_bound(u)
    assert bb.score > 1.2 * axis.score  # the oblique plane carries more uncertainty than any slice


def test_axis_aligned_by_hand():
    u = np.zeros((4, 5, 6))
    u[:, 3, :] = 1.0  # slice y = 3: 24 voxels
    u[1, 2, 1] = 5.0  # next to it, in slice y = 2 (total 5 there)
    res = axis_aligned_plane_search(u, thickness=1)
    assert res.score == 24.0 and res.extra == {"axis": 1, "start": 3}
    np.testing.assert_array_equal(res.mask(u.shape), u == 1.0)
    two = axis_aligned_plane_search(u, thickness=2)  # slab y in {2, 3}: 24 + 5
    assert two.score == 29.0 and two.extra == {"axis": 1, "start": 2}
    slab = two.mask(u.shape)
    assert slab.sum() == 48 and slab[:, 2:4].all()


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="3D"):
        PlaneSearch()(np.ones((4, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        PlaneSearch()(-np.ones((4, 4, 4)))
