"""Planar-patch queries in 3D: the plane of any orientation that maximises total uncertainty."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

__all__ = ["PlaneResult", "PlaneSearch", "axis_aligned_plane_search", "plane_mask", "unit_normal"]

_EPS = 1e-7


def unit_normal(theta: float, phi: float) -> np.ndarray:
    """``(sin t cos p, sin t sin p, cos t)``: the unit normal of polar angle ``theta`` and azimuth ``phi``."""
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


@dataclass
class PlaneResult:
    """
    A planar patch ``{x : -t/2 <= n . (x - c) - offset < t/2}`` (voxel index coordinates), optionally limited to the
    disc of radius ``radius`` around its centre point ``c + offset * n``.

    Attributes:
        normal: unit normal ``n`` (3,).
        offset: signed distance of the plane from ``center`` along ``n`` (voxels).
        center: reference point ``c`` (3,): the volume centre, or the point the planes were forced through.
        score: summed uncertainty of the voxels in the patch.
        n_evaluated: number of candidate planes scored exactly.
        n_boxes: number of parameter boxes whose upper bound was computed (0 for exhaustive searches).
        theta, phi: angles of ``normal`` (None for the axis-aligned search).
    """

    normal: np.ndarray
    offset: float
    center: np.ndarray
    score: float
    thickness: float
    radius: float | None = None
    n_evaluated: int = 0
    n_boxes: int = 0
    theta: float | None = None
    phi: float | None = None
    extra: dict = field(default_factory=dict)

    def mask(self, shape: Sequence[int]) -> np.ndarray:
        """Boolean query mask of the patch in a volume of ``shape``."""
        return plane_mask(shape, self.normal, self.offset, self.thickness, self.center, self.radius)

    def to_dict(self) -> dict:
        """JSON-serialisable parameters (for the annotation record)."""
        return {
            "normal": [float(v) for v in self.normal],
            "offset": float(self.offset),
            "center": [float(v) for v in self.center],
            "thickness": float(self.thickness),
            "radius": None if self.radius is None else float(self.radius),
            "score": float(self.score),
        }


def _coords(shape: Sequence[int], center: np.ndarray) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return np.stack([g.ravel() for g in grids], 1) - center[None]


def plane_mask(
    shape: Sequence[int],
    normal: Sequence[float],
    offset: float,
    thickness: float = 1.0,
    center: Sequence[float] | None = None,
    radius: float | None = None,
) -> np.ndarray:
    """Boolean mask of the voxels with ``-t/2 <= n . (x - c) - offset < t/2`` (and in-plane distance ``<= radius``)."""
    c = (np.asarray(shape, dtype=np.float64) - 1) / 2 if center is None else np.asarray(center, dtype=np.float64)
    v = _coords(shape, c)
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    proj = v @ n
    keep = (proj - offset >= -thickness / 2) & (proj - offset < thickness / 2)
    if radius is not None:
        keep &= (v**2).sum(1) - proj**2 <= radius**2 + _EPS
    return keep.reshape(tuple(shape))


def _volume(uncertainty: NdarrayOrTensor) -> np.ndarray:
    u = convert_to_numpy(uncertainty).astype(np.float64)
    if u.ndim == 4 and u.shape[0] == 1:
        u = u[0]
    if u.ndim != 3:
        raise ValueError(f"plane search can only handle 3D volumes (optionally (1, H, W, D)), got shape {u.shape}.")
    if (u < 0).any():
        raise ValueError("plane search needs a non-negative uncertainty volume (the bound sums positive values).")
    return u


def axis_aligned_plane_search(uncertainty: NdarrayOrTensor, thickness: int = 1) -> PlaneResult:
    """
    Baseline: exhaustive search over the axis-aligned slabs of ``thickness`` whole slices (every axis, every start
    index), returning the one with the largest summed uncertainty. ``n_evaluated`` is the number of slabs scored.
    """
    u = _volume(uncertainty)
    t = int(thickness)
    if t < 1:
        raise ValueError(f"`thickness` must be >= 1, got {thickness}.")
    c = (np.asarray(u.shape, dtype=np.float64) - 1) / 2
    best, count = None, 0
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        profile = u.sum(axis=other)
        if t > len(profile):
            continue
        slabs = np.convolve(profile, np.ones(t), mode="valid")
        count += len(slabs)
        k = int(np.argmax(slabs))
        if best is None or slabs[k] > best[0]:
            best = (float(slabs[k]), axis, k)
    if best is None:
        raise ValueError(f"`thickness` {t} exceeds every axis of the volume {u.shape}.")
    score, axis, k = best
    normal = np.zeros(3)
    normal[axis] = 1.0
    offset = k + (t - 1) / 2 - c[axis]
    return PlaneResult(normal, float(offset), c, score, float(t), None, count, 0, extra={"axis": axis, "start": k})


class PlaneSearch:
    """
    Find the planar patch of any orientation that maximises the summed voxel uncertainty, by branch-and-bound over the
    plane parameters (Konyushkova, Sznitman, Fua, ICCV 2015 / CVIU 2019: in 3D the annotator labels one slice-like
    patch; the best plane is found by branch-and-bound, with axis-aligned exhaustive search as the baseline).

    Parametrisation: normal ``n(theta, phi) = (sin t cos p, sin t sin p, cos t)`` on the upper hemisphere
    (``theta in [0, pi/2]``, ``phi in [0, 2 pi)``, which covers every plane orientation), offset ``d`` along ``n``
    from a reference point ``c``; the patch is ``{x : -t/2 <= n . (x - c) - d < t/2}`` (thickness ``t`` voxels),
    either the full plane through the volume (``radius=None``) or the disc of radius ``radius`` around the plane's
    centre point ``c + d n``. With ``center`` given, every plane passes through that point (``d = 0``: the paper's
    variant centred on the most uncertain supervoxel); otherwise ``c`` is the volume centre and ``d`` is searched.

    The parameters live on a grid (``n_theta`` polar angles, ``n_phi`` azimuths, offsets every ``offset_step``
    voxels). Branch-and-bound splits boxes of grid indices; a box's upper bound sums the uncertainty of every voxel
    that could lie in the patch of some plane of the box: for a box of normals within angle ``delta`` of its centre
    normal ``n_c`` (``delta <= dtheta/2 + sin(theta_max) dphi/2``), ``n . v`` lies in
    ``[|v| cos(min(a + delta, pi)), |v| cos(max(a - delta, 0))]`` with ``a`` the angle between ``v`` and ``n_c``.
    Boxes are explored best-first and pruned when the bound cannot beat the best plane found; a box reduced to one
    normal is scored exactly for all its offsets. The result is the best plane of the grid, the same as
    :py:meth:`exhaustive` (up to float rounding), usually after far fewer planes are scored.

    Args:
        thickness: patch thickness ``t`` in voxels.
        radius: disc radius in voxels; ``None`` for the full plane.
        center: point all planes pass through (voxel coordinates); ``None`` searches offsets from the volume centre.
        n_theta: number of polar angles in ``[0, pi/2]`` (inclusive).
        n_phi: number of azimuths in ``[0, 2 pi)``.
        offset_step: offset grid step in voxels.
    """

    def __init__(
        self,
        thickness: float = 1.0,
        radius: float | None = None,
        center: Sequence[float] | None = None,
        n_theta: int = 9,
        n_phi: int = 32,
        offset_step: float = 1.0,
    ) -> None:
        if thickness <= 0:
            raise ValueError(f"`thickness` must be positive, got {thickness}.")
        if radius is not None and radius <= 0:
            raise ValueError(f"`radius` must be positive or None, got {radius}.")
        if n_theta < 2 or n_phi < 1 or offset_step <= 0:
            raise ValueError(f"need n_theta >= 2, n_phi >= 1, offset_step > 0; got {n_theta}, {n_phi}, {offset_step}.")
        self.thickness, self.radius = float(thickness), radius
        self.center = None if center is None else np.asarray(center, dtype=np.float64)
        self.thetas = np.linspace(0.0, np.pi / 2, int(n_theta))
        self.phis = np.arange(int(n_phi)) * (2 * np.pi / int(n_phi))
        self.offset_step = float(offset_step)

    # ---- setup -----------------------------------------------------------------------------------------------
    def _prepare(self, uncertainty: NdarrayOrTensor):
        u = _volume(uncertainty)
        c = (np.asarray(u.shape, dtype=np.float64) - 1) / 2 if self.center is None else self.center
        v = _coords(u.shape, c)
        w = u.ravel()
        keep = w > 0
        v, w = v[keep], w[keep]
        if self.center is None:
            corners = np.array(list(itertools.product(*[(0.0, s - 1.0) for s in u.shape]))) - c
            big = float(np.sqrt((corners**2).sum(1)).max()) + self.thickness / 2
            n_d = int(np.floor(2 * big / self.offset_step)) + 1
            offsets = -big + np.arange(n_d) * self.offset_step
        else:
            offsets = np.zeros(1)
        return u, c, v, w, offsets

    def _score_normal(self, v: np.ndarray, w: np.ndarray, n: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Exact patch scores of one normal for the given offsets."""
        proj = v @ n
        if self.radius is not None:
            inside = (v**2).sum(1) - proj**2 <= self.radius**2 + _EPS
            proj, w = proj[inside], w[inside]
        order = np.argsort(proj, kind="stable")
        ps, cs = proj[order], np.concatenate([[0.0], np.cumsum(w[order])])
        lo = np.searchsorted(ps, offsets - self.thickness / 2, side="left")
        hi = np.searchsorted(ps, offsets + self.thickness / 2, side="left")
        return cs[hi] - cs[lo]

    def _result(self, c, score, ti, pj, dk, offsets, n_eval, n_boxes) -> PlaneResult:
        th, ph = float(self.thetas[ti]), float(self.phis[pj])
        return PlaneResult(
            unit_normal(th, ph),
            float(offsets[dk]),
            c,
            float(score),
            self.thickness,
            self.radius,
            n_eval,
            n_boxes,
            th,
            ph,
        )

    # ---- searches ----------------------------------------------------------------------------------------------
    def exhaustive(self, uncertainty: NdarrayOrTensor) -> PlaneResult:
        """Score every plane of the grid (the reference the branch-and-bound must match)."""
        _, c, v, w, offsets = self._prepare(uncertainty)
        best = (-np.inf, 0, 0, 0)
        for ti, pj in itertools.product(range(len(self.thetas)), range(len(self.phis))):
            s = self._score_normal(v, w, unit_normal(self.thetas[ti], self.phis[pj]), offsets)
            k = int(np.argmax(s))
            if s[k] > best[0]:
                best = (float(s[k]), ti, pj, k)
        n_eval = len(self.thetas) * len(self.phis) * len(offsets)
        return self._result(c, best[0], best[1], best[2], best[3], offsets, n_eval, 0)

    def _upper_bound(self, v, w, vnorm, box, offsets) -> float:
        (t0, t1), (p0, p1), (d0, d1) = box
        ta, tb = self.thetas[t0], self.thetas[t1]
        pa, pb = self.phis[p0], self.phis[p1]
        nc = unit_normal((ta + tb) / 2, (pa + pb) / 2)
        delta = min((tb - ta) / 2 + np.sin(tb) * (pb - pa) / 2, np.pi)
        cos_a = np.divide(v @ nc, vnorm, out=np.zeros_like(vnorm), where=vnorm > 0)
        a = np.arccos(np.clip(cos_a, -1.0, 1.0))
        p_lo = vnorm * np.cos(np.minimum(a + delta, np.pi)) - _EPS
        p_hi = vnorm * np.cos(np.maximum(a - delta, 0.0)) + _EPS
        half = self.thickness / 2 + _EPS
        ok = (p_lo - offsets[d1] < half) & (p_hi - offsets[d0] >= -half)
        if self.radius is not None:
            ok &= vnorm**2 - np.maximum(p_lo**2, p_hi**2) <= self.radius**2 + 1e-6
        return float(w[ok].sum())

    def branch_and_bound(self, uncertainty: NdarrayOrTensor) -> PlaneResult:
        """Best plane of the grid by best-first branch-and-bound; ``n_evaluated`` counts the planes scored exactly."""
        _, c, v, w, offsets = self._prepare(uncertainty)
        vnorm = np.sqrt((v**2).sum(1))
        reach = float(vnorm.max()) if len(vnorm) else 1.0
        root = ((0, len(self.thetas) - 1), (0, len(self.phis) - 1), (0, len(offsets) - 1))
        tick = itertools.count()
        heap = [(-self._upper_bound(v, w, vnorm, root, offsets), next(tick), root)]
        n_boxes, n_eval = 1, 0
        best = (-np.inf, 0, 0, 0)
        while heap:
            neg_ub, _, box = heapq.heappop(heap)
            if -neg_ub <= best[0]:
                break  # best-first: no remaining box can beat the incumbent
            (t0, t1), (p0, p1), (d0, d1) = box
            if t0 == t1 and p0 == p1:
                s = self._score_normal(v, w, unit_normal(self.thetas[t0], self.phis[p0]), offsets[d0 : d1 + 1])
                n_eval += len(s)
                k = int(np.argmax(s))
                if s[k] > best[0]:
                    best = (float(s[k]), t0, p0, d0 + k)
                continue
            # split the dimension whose extent moves the plane the most (in voxels)
            ext = [
                (self.thetas[t1] - self.thetas[t0]) * reach if t1 > t0 else -1.0,
                (self.phis[p1] - self.phis[p0]) * np.sin(self.thetas[t1]) * reach if p1 > p0 else -1.0,
                (offsets[d1] - offsets[d0]) if d1 > d0 else -1.0,
            ]
            if t1 > t0 and p1 > p0 and max(ext[0], ext[1]) <= 0:
                ext[0] = 0.5  # sin(theta) = 0 row: split theta first
            dim = int(np.argmax(ext))
            lo, hi = box[dim]
            mid = (lo + hi) // 2
            for half in ((lo, mid), (mid + 1, hi)):
                child = list(box)
                child[dim] = half
                child_t = tuple(child)
                ub = self._upper_bound(v, w, vnorm, child_t, offsets)
                n_boxes += 1
                if ub > best[0]:
                    heapq.heappush(heap, (-ub, next(tick), child_t))
        return self._result(c, best[0], best[1], best[2], best[3], offsets, n_eval, n_boxes)

    def __call__(self, uncertainty: NdarrayOrTensor) -> PlaneResult:
        return self.branch_and_bound(uncertainty)
