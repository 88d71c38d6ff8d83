from __future__ import annotations

import math

import numpy as np
import pytest

from monai_wsss.active import (
    RegionGraph,
    appearance_weights,
    combined_uncertainty,
    random_walk,
    region_adjacency,
    transition_matrix,
)


def _block_regions(nb=4, size=3, dims=2):
    """An nb^dims grid of cubic regions of side ``size``, ids in raster order."""
    idx = np.indices((nb,) * dims).reshape(dims, -1)
    ids = np.ravel_multi_index(idx, (nb,) * dims).reshape((nb,) * dims)
    for axis in range(dims):
        ids = np.repeat(ids, size, axis=axis)
    return ids


def test_adjacency_by_hand_2d_and_3d():
    r = np.array([[0, 0, 1], [2, 3, 1]])
    np.testing.assert_array_equal(region_adjacency(r), [[0, 1], [0, 2], [0, 3], [1, 3], [2, 3]])
    r3 = _block_regions(nb=2, size=2, dims=3)  # 8 octants: each touches 3 others, 12 edges
    edges = region_adjacency(r3[None])
    assert len(edges) == 12 and np.all(np.bincount(edges.ravel()) == 3)


def test_appearance_weights_by_hand():
    means = np.array([[0.0], [1.0], [3.0]])
    edges = np.array([[0, 1], [1, 2]])
    np.testing.assert_allclose(appearance_weights(means, edges, sigma=1.0), [math.exp(-0.5), math.exp(-2.0)])


def test_transition_rows_and_isolated_region():
    t = transition_matrix(np.array([[0, 1], [1, 2]]), np.array([1.0, 3.0]), 4).toarray()
    np.testing.assert_allclose(t[1], [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(t.sum(1), 1.0)
    assert t[3, 3] == 1.0  # isolated region keeps its own prediction


@pytest.mark.parametrize("kwargs", [{"steps": 1}, {"steps": 3}, {"restart": 0.3}])
def test_random_walk_preserves_mass_and_smooths_outlier(kwargs):
    regions = _block_regions(nb=4, size=3)
    graph = RegionGraph(regions, **kwargs)
    probs = np.tile([0.9, 0.1], (16, 1))
    outlier = 5  # interior region (row 1, col 1)
    probs[outlier] = [0.1, 0.9]
    out = graph.propagate(probs)
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-12)  # rows stay distributions
    assert out[outlier, 0] > 0.5  # pulled toward its neighbours' class
    if "steps" in kwargs and kwargs["steps"] == 1:
        np.testing.assert_allclose(out[outlier], [0.9, 0.1])  # all 4 neighbours agree, equal weights
    far = 15
    assert abs(out[far, 0] - 0.9) < abs(out[outlier, 0] - 0.9) + 1e-12


def test_restart_closed_form_is_fixed_point():
    rng = np.random.default_rng(0)
    regions = _block_regions(nb=3, size=2)
    t = RegionGraph(regions).transition
    p = rng.dirichlet(np.ones(3), size=9)
    out = random_walk(p, t, restart=0.4)
    np.testing.assert_allclose(out, 0.4 * p + 0.6 * (t @ out), atol=1e-12)


def test_appearance_blocks_propagation_across_boundary():
    regions = np.array([[0, 1, 2, 3]]).repeat(2, 0)
    image = np.array([[0.0, 0.0, 1.0, 1.0]]).repeat(2, 0)[None]
    graph = RegionGraph(regions, image=image, sigma=0.1)
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]])
    out = graph.propagate(probs)
    # region 1 takes region 0's prediction (same appearance), not region 2's (edge weight exp(-50))
    assert out[1, 0] > 0.99


def test_geometric_uncertainty_flags_disagreeing_neighbourhood():
    regions = _block_regions(nb=4, size=2)
    graph = RegionGraph(regions, steps=1)
    probs = np.tile([0.95, 0.05], (16, 1))
    probs[[1, 9], :] = [0.05, 0.95]  # region 5's neighbours (1, 4, 6, 9) split 2 / 2; region 5 itself is confident
    u_f = graph.feature_uncertainty(probs)
    u_g = graph.geometric_uncertainty(probs)
    assert u_g[5] > 0.6 and u_f[5] < 0.25  # entropy of (0.5, 0.5) is 0.69
    np.testing.assert_allclose(u_g[5], math.log(2))  # (0.5, 0.5) exactly: the maximum (region 0 ties, 1 of 2 differ)
    assert u_g[5] >= u_g.max() - 1e-12 and u_g[15] < 0.25
    np.testing.assert_allclose(graph.combined_uncertainty(probs, weight=0.5), u_f + 0.5 * u_g)
    np.testing.assert_allclose(combined_uncertainty(u_f, u_g), u_f + u_g)
    assert graph.to_voxels(u_g).shape == regions.shape


def test_region_probs_from_pixels():
    regions = np.array([[0, 0], [1, 1]])
    pixel = np.stack([np.array([[1.0, 0.5], [0.0, 0.2]]), np.array([[0.0, 0.5], [1.0, 0.8]])])
    np.testing.assert_allclose(RegionGraph(regions).region_probs(pixel), [[0.75, 0.25], [0.1, 0.9]])
