"""PRM instance retrieval: superpixel-hierarchy proposals scored by peak response maps, then NMS (N-D)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

from ..transforms.supervoxels import Supervoxels

__all__ = [
    "superpixel_proposals",
    "mask_contour",
    "proposal_scores",
    "mask_nms",
    "PeakInstanceRetrieval",
    "instances_to_maps",
]

_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _adjacent_pairs(regions: np.ndarray) -> np.ndarray:
    """``(E, 2)`` sorted unique pairs of face-adjacent region ids of an integer map."""
    pairs = []
    for ax in range(regions.ndim):
        a = np.moveaxis(regions, ax, 0)
        u, v = a[:-1].ravel(), a[1:].ravel()
        diff = u != v
        pairs.append(np.stack([np.minimum(u[diff], v[diff]), np.maximum(u[diff], v[diff])], 1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def _ward_hierarchy(regions: np.ndarray, image: np.ndarray) -> list[list[int]]:
    """
    Greedy agglomeration of adjacent regions (Ward's criterion on the mean intensity vector): merge the adjacent
    pair with the smallest ``|n_i n_j| / (n_i + n_j) * ||mu_i - mu_j||^2`` until one region is left. Returns the
    base-region ids of every merged region, in merge order.
    """
    r = int(regions.max()) + 1
    flat = regions.ravel()
    size = np.bincount(flat, minlength=r).astype(np.float64)
    feats = image.reshape(image.shape[0], -1)
    mean = np.stack([np.bincount(flat, weights=f, minlength=r) for f in feats], 1) / np.maximum(size, 1)[:, None]
    members: dict[int, list[int]] = {i: [i] for i in range(r)}
    neighbours: dict[int, set[int]] = {i: set() for i in range(r)}
    for a, b in _adjacent_pairs(regions).tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    sizes, means = dict(enumerate(size)), dict(enumerate(mean))
    merged: list[list[int]] = []
    nxt = r
    while True:
        best, pair = np.inf, None
        for a, nb in neighbours.items():
            for b in nb:
                if a < b:
                    d = sizes[a] * sizes[b] / (sizes[a] + sizes[b]) * float(((means[a] - means[b]) ** 2).sum())
                    if d < best:
                        best, pair = d, (a, b)
        if pair is None:
            return merged
        a, b = pair
        n = sizes[a] + sizes[b]
        means[nxt] = (sizes[a] * means[a] + sizes[b] * means[b]) / n
        sizes[nxt] = n
        members[nxt] = members.pop(a) + members.pop(b)
        neighbours[nxt] = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        for c in neighbours[nxt]:
            neighbours[c] -= {a, b}
            neighbours[c].add(nxt)
        merged.append(members[nxt])
        nxt += 1


def superpixel_proposals(
    image: NdarrayOrTensor,
    n_segments: Sequence[int] = (16, 64),
    compactness: float = 0.1,
    hierarchy: bool = True,
    min_size: int = 4,
) -> torch.Tensor:
    """
    Object proposals from superpixel hierarchies, standing in for the MCG proposals of the PRM paper (not available
    here): for each SLIC over-segmentation (one per value of ``n_segments``), every region and, with
    ``hierarchy``, every region formed while greedily merging adjacent regions of similar mean intensity (Ward's
    criterion) until one is left, as in hierarchical grouping. Duplicates and proposals smaller than ``min_size``
    pixels are dropped; the whole image is kept as a proposal.

    Args:
        image: channel-first ``(C, *spatial)`` image, 2D or 3D, intensities scaled as the classifier sees them.
        n_segments: SLIC region counts, one over-segmentation (and hierarchy) per value.
        compactness: SLIC compactness (see :py:class:`~monai_wsss.transforms.Supervoxels`).
        hierarchy: add the regions of the merge hierarchy.
        min_size: smallest proposal in pixels.

    Returns:
        ``(N, *spatial)`` bool proposal masks.
    """
    arr = convert_to_numpy(image).astype(np.float32)
    if arr.ndim not in (3, 4):
        raise ValueError(f"`image` must be channel-first 2D or 3D (C, H, W[, D]), got shape {tuple(arr.shape)}.")
    masks: list[np.ndarray] = []
    for n in n_segments:
        regions = Supervoxels(n_segments=int(n), compactness=compactness)(arr)[0]
        ids = np.arange(int(regions.max()) + 1)
        onehot = regions[None] == ids.reshape(-1, *[1] * regions.ndim)
        masks.append(onehot)
        if hierarchy:
            groups = _ward_hierarchy(regions, arr)
            if groups:
                masks.append(np.stack([onehot[g].any(0) for g in groups]))
    allm = np.concatenate(masks)
    allm = allm[allm.reshape(len(allm), -1).sum(1) >= min_size]
    _, first = np.unique(np.packbits(allm.reshape(len(allm), -1), axis=1), axis=0, return_index=True)
    return torch.as_tensor(allm[np.sort(first)])


def mask_contour(masks: torch.Tensor) -> torch.Tensor:
    """Inner contour of ``(N, *spatial)`` bool masks: mask pixels with a face- or corner-neighbour outside it."""
    nd = masks.ndim - 1
    if nd not in _MAXPOOL:
        raise ValueError(f"`masks` must be (N, *spatial) with 1-3 spatial dims, got {masks.ndim} dims.")
    outside = (~masks).float()[:, None]
    near_outside = _MAXPOOL[nd](F.pad(outside, [1, 1] * nd, value=1.0), 3, stride=1)[:, 0] > 0
    return masks & near_outside


def proposal_scores(
    responses: torch.Tensor,
    proposals: torch.Tensor,
    background: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """
    PRM proposal score (Zhou et al., CVPR 2018, Sec. 3.3): for peak response map ``R`` and proposal mask ``S``,
    ``alpha * sum(R * S) + sum(R * contour(S)) - beta * sum(Q * S)``, where ``Q`` is the background mask. Each
    ``R`` is rectified and divided by its maximum first, so ``alpha`` and ``beta`` are in units of pixels of full
    response.

    Args:
        responses: ``(P, *spatial)`` peak response maps.
        proposals: ``(N, *spatial)`` bool masks.
        background: ``(*spatial)`` or ``(P, *spatial)`` background mask in [0, 1]; ``None`` means no penalty.
        alpha: weight of the response inside the proposal.
        beta: weight of the background penalty.

    Returns:
        ``(P, N)`` scores.
    """
    if responses.shape[1:] != proposals.shape[1:]:
        raise ValueError(
            f"responses {tuple(responses.shape)} and proposals {tuple(proposals.shape)} differ in spatial size."
        )
    r = responses.float().clamp_min(0).flatten(1)
    r = r / (r.max(1, keepdim=True)[0] + 1e-12)
    s = proposals.float().flatten(1).to(r.device)
    c = mask_contour(proposals).float().flatten(1).to(r.device)
    score = alpha * r @ s.T + r @ c.T
    if background is not None:
        q = background.float().to(r.device)
        q = q.flatten().expand(len(r), -1) if q.shape == responses.shape[1:] else q.flatten(1)
        score = score - beta * q @ s.T
    return score


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.3) -> torch.Tensor:
    """
    Greedy non-maximum suppression of masks: visit in decreasing score and drop any mask whose IoU with an already
    kept mask exceeds ``iou_threshold``. Returns the kept indices (long, in decreasing score).
    """
    if len(masks) == 0:
        return torch.zeros(0, dtype=torch.long)
    m = masks.float().flatten(1)
    inter = m @ m.T
    area = m.sum(1)
    iou = inter / (area[:, None] + area[None] - inter).clamp_min(1e-12)
    keep: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if all(iou[i, k] <= iou_threshold for k in keep):
            keep.append(i)
    return torch.as_tensor(keep, dtype=torch.long)


class PeakInstanceRetrieval:
    """
    Instance masks from Peak Response Maps (Zhou, Zhu, Ye, Qiu, Jiao, CVPR 2018, Sec. 3.3): each peak's response map
    scores every proposal with :py:func:`proposal_scores` (response inside, response on the contour, background
    penalty); each peak keeps its best proposal, and non-maximum suppression at ``nms_iou`` removes duplicates among
    the instances of a class. The background mask ``Q`` is where the peak's class response map, up-sampled to the
    image and divided by its maximum, is below ``bg_threshold``. Proposals come from a superpixel hierarchy
    (:py:func:`superpixel_proposals`) because the paper's MCG proposals are not available.

    Args:
        proposals: callable ``(C, *spatial) image -> (N, *spatial) bool masks``; defaults to
            :py:func:`superpixel_proposals` with its defaults.
        alpha, beta: weights of :py:func:`proposal_scores`.
        bg_threshold: class response below this fraction of its maximum counts as background.
        nms_iou: IoU above which a lower-scoring instance of the same class is suppressed (the paper's 0.3).
        min_score: instances scoring at or below this are dropped; ``None`` (default) keeps the best proposal of every
            peak whatever its score, as the paper does.
    """

    def __init__(
        self,
        proposals: Callable[[torch.Tensor], torch.Tensor] | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        bg_threshold: float = 0.2,
        nms_iou: float = 0.3,
        min_score: float | None = None,
    ) -> None:
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"`nms_iou` must be in [0, 1], got {nms_iou}.")
        if not 0.0 <= bg_threshold <= 1.0:
            raise ValueError(f"`bg_threshold` must be in [0, 1], got {bg_threshold}.")
        self.proposals = proposals or superpixel_proposals
        self.alpha, self.beta = float(alpha), float(beta)
        self.bg_threshold = float(bg_threshold)
        self.nms_iou = float(nms_iou)
        self.min_score = -float("inf") if min_score is None else float(min_score)

    def background(self, class_maps: torch.Tensor, classes: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """``(P, *spatial)`` background masks: the class map of each peak's class below ``bg_threshold``."""
        cm = class_maps[classes].float().clamp_min(0)[:, None]
        if tuple(cm.shape[2:]) != tuple(spatial):
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
            cm = F.interpolate(cm, size=tuple(spatial), mode=mode, align_corners=False)
        cm = cm[:, 0].flatten(1)
        cm = cm / (cm.max(1, keepdim=True)[0] + 1e-12)
        return (cm < self.bg_threshold).float().view(len(classes), *spatial)

    def __call__(self, image: torch.Tensor, prm_result: dict, class_maps: torch.Tensor | None = None) -> dict:
        """
        Args:
            image: ``(C, *spatial)`` classifier input of one image.
            prm_result: one image's output of :py:class:`~monai_wsss.attribution.PeakResponseMapping`
                (``peaks`` ``(P, 1 + D)``, ``values`` ``(P,)``, ``maps`` ``(P, *spatial)`` at the input size).
            class_maps: ``(K, *s)`` class response maps of the image for the background mask; ``None``: no penalty.

        Returns:
            ``{"classes": (I,) long, "scores": (I,), "masks": (I, *spatial) bool}`` in decreasing score.
        """
        spatial = tuple(image.shape[1:])
        peaks, maps = prm_result["peaks"], prm_result["maps"]
        empty = {
            "classes": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0),
            "masks": torch.zeros((0, *spatial), dtype=torch.bool),
        }
        if len(peaks) == 0:
            return empty
        if tuple(maps.shape[1:]) != spatial:
            raise ValueError(f"response maps {tuple(maps.shape)} do not match the image size {spatial}.")
        props = torch.as_tensor(self.proposals(image.detach().cpu())).bool()
        if len(props) == 0:
            return empty
        classes = peaks[:, 0].long().cpu()
        bg = None if class_maps is None else self.background(class_maps.detach().cpu(), classes, spatial)
        scores = proposal_scores(maps.detach().cpu(), props, bg, self.alpha, self.beta)
        best_score, best = scores.max(1)
        keep_cls, keep_score, keep_mask = [], [], []
        for k in classes.unique().tolist():
            sel = ((classes == k) & (best_score > self.min_score)).nonzero()[:, 0]
            if len(sel) == 0:
                continue
            masks, s = props[best[sel]], best_score[sel]
            kept = mask_nms(masks, s, self.nms_iou)
            keep_cls += [k] * len(kept)
            keep_score.append(s[kept])
            keep_mask.append(masks[kept])
        if not keep_cls:
            return empty
        score = torch.cat(keep_score)
        order = score.argsort(descending=True)
        return {
            "classes": torch.as_tensor(keep_cls, dtype=torch.long)[order],
            "scores": score[order],
            "masks": torch.cat(keep_mask)[order],
        }


def instances_to_maps(instances: dict, num_classes: int, spatial: Sequence[int]) -> torch.Tensor:
    """``(K, *spatial)`` binary class maps: the union of the retrieved instance masks of each class."""
    out = torch.zeros((num_classes, *spatial))
    for k, m in zip(instances["classes"].tolist(), instances["masks"], strict=True):
        out[k] = torch.maximum(out[k], m.float())
    return out
