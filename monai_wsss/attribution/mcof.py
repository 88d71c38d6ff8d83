"""The bottom-up step of MCOF (mining common object features): seeds on superpixels, a region classifier trained on
the seed-labelled regions, relabelled regions that grow the objects, and an optional objectness prior fused in a
Bayesian way. N-D (superpixels in 2D, supervoxels in 3D).

    Wang, X., You, S., Li, X., Ma, H. (2018) Weakly-Supervised Semantic Segmentation by Iteratively Mining Common
    Object Features. CVPR 2018, https://arxiv.org/abs/1806.04659

No public code exists; beyond the paper's outline (CAM seeds, superpixel regions, a region classification network,
saliency-guided refinement in a Bayesian framework, a segmentation network whose masks are the next seeds) the
choices below are this implementation's, stated where they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer

from ..transforms.supervoxels import Supervoxels

__all__ = [
    "SALIENCY_PRIORS",
    "RegionMining",
    "bayesian_fusion",
    "objectness_prior",
    "region_means",
    "region_seed_labels",
    "train_region_classifier",
]

SALIENCY_PRIORS = ("none", "contrast", "centre_contrast")
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def region_means(values: torch.Tensor, regions: torch.Tensor, num_regions: int | None = None) -> torch.Tensor:
    """``(R, C)`` mean of ``values`` ``(C, *s)`` over each region of the id map ``regions`` ``(*s)`` (ids 0..R-1)."""
    flat = regions.reshape(-1).long()
    r = int(num_regions if num_regions is not None else int(flat.max()) + 1)
    sums = values.new_zeros((r, values.shape[0])).index_add_(0, flat, values.reshape(values.shape[0], -1).T)
    counts = torch.bincount(flat, minlength=r).clamp_min(1).to(values.dtype)
    return sums / counts[:, None]


def bayesian_fusion(prior: torch.Tensor, likelihood: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """
    Fuse two foreground probabilities as independent evidence under a uniform prior (naive Bayes):
    ``p s / (p s + (1 - p)(1 - s))``. ``s = 0.5`` leaves ``p`` unchanged; values are clipped to ``[eps, 1 - eps]``.
    """
    p, s = prior.clamp(eps, 1 - eps), likelihood.clamp(eps, 1 - eps)
    return p * s / (p * s + (1 - p) * (1 - s))


def objectness_prior(image: torch.Tensor, regions: torch.Tensor, mode: str = "contrast") -> torch.Tensor | None:
    """
    An unsupervised objectness (saliency) prior per region, in [0.05, 0.95], standing in for the pretrained
    saliency model of the paper (none exists here). ``"contrast"``: the distance of the region's mean intensity to
    the mean intensity of the image border (the border-background prior of unsupervised saliency), divided by its
    maximum over the regions. ``"centre_contrast"``: that times a centre prior ``exp(-d^2 / 0.5)``, ``d`` the distance
    of the region's centroid to the image centre in half-extents (objects photographed in the middle; wrong for
    tiles of a field of view). ``"none"``: ``None``.

    Args:
        image: ``(C, *s)`` image.
        regions: ``(*s)`` region ids 0..R-1.
        mode: one of :py:data:`SALIENCY_PRIORS`.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in SALIENCY_PRIORS:
        raise ValueError(f"`saliency` must be one of {SALIENCY_PRIORS}, got {mode!r}.")
    if mode == "none":
        return None
    image = image.float()
    nd = image.ndim - 1
    border = torch.zeros(image.shape[1:], dtype=torch.bool, device=image.device)
    for axis in range(nd):
        idx = [slice(None)] * nd
        for end in (0, -1):
            idx[axis] = end
            border[tuple(idx)] = True
    background = image[:, border].mean(1)
    r = int(regions.max()) + 1
    means = region_means(image, regions, r)
    contrast = (means - background).norm(dim=1)
    contrast = contrast / contrast.max().clamp_min(1e-8)
    if mode == "centre_contrast":
        grids = torch.meshgrid(
            *[torch.linspace(-1, 1, s, device=image.device) for s in image.shape[1:]], indexing="ij"
        )
        centroid = region_means(torch.stack(grids), regions, r)
        contrast = contrast * torch.exp(-(centroid**2).sum(1) / 0.5)
    return 0.05 + 0.9 * contrast


def region_seed_labels(
    seeds: torch.Tensor,
    tags: torch.Tensor,
    regions: torch.Tensor,
    fg_threshold: float = 0.5,
    bg_threshold: float = 0.15,
    min_overlap: float = 0.5,
) -> torch.Tensor:
    """
    Region labels for training the region classifier: ``(R,)`` long, ``-1`` unlabelled, ``0`` background, ``k + 1``
    class ``k``. A region is a seed of a tagged class when at least ``min_overlap`` of its pixels have that class's
    seed >= ``fg_threshold`` (several classes: the largest mean seed wins); a region of a tagged image whose mean
    seed is below ``bg_threshold`` for every tagged class is background; every region of an untagged image is
    background; the others stay unlabelled.

    Args:
        seeds: ``(K, *s)`` seed maps in [0, 1].
        tags: ``(K,)`` multi-hot tags.
        regions: ``(*s)`` region ids 0..R-1.
        fg_threshold, bg_threshold, min_overlap: as above.
    """
    r = int(regions.max()) + 1
    present = tags > 0
    labels = torch.full((r,), -1, dtype=torch.long, device=seeds.device)
    if not bool(present.any()):
        return labels.zero_()
    seeds = seeds.float() * present.to(seeds.device, torch.float32).view(-1, *[1] * (seeds.ndim - 1))
    overlap = region_means((seeds >= fg_threshold).float(), regions, r)  # (R, K)
    means = region_means(seeds, regions, r)
    candidate = (overlap >= min_overlap) & present.to(seeds.device)[None] & (overlap > 0)
    best = torch.where(candidate, means, torch.full_like(means, -1.0)).argmax(1)
    labels[means.max(1)[0] < bg_threshold] = 0
    seeded = candidate.any(1)
    labels[seeded] = best[seeded] + 1
    return labels


class _RegionMLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_region_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_outputs: int,
    hidden: int = 64,
    num_epochs: int = 30,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """
    A small MLP (``in -> hidden -> ReLU -> num_outputs``) trained on region features with class-balanced cross
    entropy (weights = inverse class frequency, so a few seed regions are not swamped by background ones) by MONAI's
    ``SupervisedTrainer`` over a region dataset (``{"image": feature, "label": class}``), shuffled with ``seed``.

    Args:
        features: ``(N, D)`` region features.
        labels: ``(N,)`` classes in ``0..num_outputs-1`` (no unlabelled regions).
        num_outputs: background + classes.
        hidden, num_epochs, batch_size, learning_rate: the MLP and its schedule.
        device: where it trains.
        seed: seed of the initial weights and the shuffling.

    Raises:
        ValueError: no labelled region, or labels outside ``0..num_outputs-1``.
    """
    if features.shape[0] == 0:
        raise ValueError("train_region_classifier: no labelled region (are the seeds all unlabelled?).")
    if int(labels.min()) < 0 or int(labels.max()) >= num_outputs:
        raise ValueError(f"region labels must be in 0..{num_outputs - 1}, got {labels.unique().tolist()}.")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = _RegionMLP(features.shape[1], hidden, num_outputs).to(device)
    counts = torch.bincount(labels.cpu(), minlength=num_outputs).float()
    weight = torch.where(counts > 0, counts.sum() / (counts.clamp_min(1) * (counts > 0).sum()), torch.zeros(()))
    data = [{"image": f, "label": y} for f, y in zip(features.float().cpu(), labels.long().cpu(), strict=True)]
    loader = DataLoader(Dataset(data), batch_size=min(batch_size, len(data)), shuffle=True, generator=gen)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=num_epochs,
        train_data_loader=loader,
        network=mlp,
        optimizer=torch.optim.Adam(mlp.parameters(), lr=learning_rate),
        loss_function=nn.CrossEntropyLoss(weight=weight.to(device)),
        decollate=False,
    )
    trainer.logger.setLevel("WARNING")
    trainer.run()
    return mlp.eval()


class RegionMining:
    """
    MCOF's bottom-up step over a set of tagged images: superpixels of each image (the library's
    :py:class:`~monai_wsss.transforms.Supervoxels`), one feature per region (the classifier backbone's feature map,
    up-sampled to the image size, averaged over the region and L2-normalised), region labels from the seeds
    (:py:func:`region_seed_labels`), a region classifier trained on the labelled regions of all images
    (:py:func:`train_region_classifier`), and every region of every image relabelled by it: the refined map of a
    tagged class ``k`` is the classifier's probability of ``k`` (softmax over background and the image's tagged
    classes only) on all pixels of the region, so regions resembling the seeds across the whole set join the
    object. With a ``saliency`` prior (and ``use_prior``), the foreground probability of each region is fused with
    :py:func:`objectness_prior` by :py:func:`bayesian_fusion` and the class probabilities rescaled to it (the paper's
    saliency-guided refinement; its pretrained saliency model is replaced by that unsupervised prior).

        Wang, X., You, S., Li, X., Ma, H. (2018) Weakly-Supervised Semantic Segmentation by Iteratively Mining
        Common Object Features. CVPR 2018, https://arxiv.org/abs/1806.04659

    Args:
        feature_network: a :py:class:`~monai_wsss.networks.CAMClassifier` (its ``features``) or any callable mapping
            images ``(B, C, *s)`` to feature maps ``(B, D, *f)``.
        supervoxels: the over-segmentation (default ``Supervoxels(n_segments=64, compactness=0.1)``).
        fg_threshold, bg_threshold, min_overlap: region labelling (:py:func:`region_seed_labels`).
        saliency: one of :py:data:`SALIENCY_PRIORS`. Defaults to ``"none"``.
        hidden, num_epochs, batch_size, learning_rate: the region classifier.
        device: where features and the classifier run.
        seed: seed of the region classifier.

    Raises:
        ValueError: an unknown ``saliency``.
    """

    def __init__(
        self,
        feature_network: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        supervoxels: Supervoxels | None = None,
        fg_threshold: float = 0.5,
        bg_threshold: float = 0.15,
        min_overlap: float = 0.5,
        saliency: str = "none",
        hidden: int = 64,
        num_epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if saliency not in SALIENCY_PRIORS:
            raise ValueError(f"`saliency` must be one of {SALIENCY_PRIORS}, got {saliency!r}.")
        self.feature_network = feature_network
        self.supervoxels = supervoxels or Supervoxels(n_segments=64, compactness=0.1)
        self.fg_threshold, self.bg_threshold, self.min_overlap = fg_threshold, bg_threshold, min_overlap
        self.saliency = saliency
        self.hidden, self.num_epochs = hidden, num_epochs
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.device = torch.device(device)
        self.seed = int(seed)
        self.last_info: dict = {}

    def regions(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The region map ``(*s)`` of every image (computed on the CPU)."""
        return [torch.as_tensor(np.asarray(self.supervoxels(img.detach().cpu().numpy())))[0] for img in images]

    def region_features(self, images: torch.Tensor, regions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``(R_i, D)`` L2-normalised region features of every image (one image at a time)."""
        fn = getattr(self.feature_network, "features", self.feature_network)
        net = self.feature_network if isinstance(self.feature_network, nn.Module) else None
        was_training = net.training if net is not None else False
        if net is not None:
            net.eval()
        out = []
        try:
            with torch.no_grad():
                for img, reg in zip(images, regions, strict=True):
                    fmap = fn(img[None].to(self.device))
                    mode = _INTERP[fmap.ndim - 2]
                    fmap = F.interpolate(fmap, size=tuple(img.shape[1:]), mode=mode, align_corners=False)[0]
                    out.append(F.normalize(region_means(fmap, reg.to(fmap.device)), dim=1).cpu())
        finally:
            if net is not None:
                net.train(was_training)
        return out

    def __call__(self, images: torch.Tensor, tags: torch.Tensor, seeds: torch.Tensor, use_prior: bool = True):
        """
        Refined maps ``(B, K, *s)`` in [0, 1] (zero for untagged classes) of ``images`` ``(B, C, *s)`` with tags
        ``(B, K)`` and seeds ``(B, K, *s)``. ``self.last_info`` records the counts of seed / background / unlabelled
        regions.

        Raises:
            ValueError: shapes that do not match, or no labelled region at all.
        """
        if seeds.shape[:2] != tags.shape or seeds.shape[2:] != images.shape[2:] or images.shape[0] != tags.shape[0]:
            raise ValueError(
                f"images {tuple(images.shape)}, tags {tuple(tags.shape)} and seeds {tuple(seeds.shape)} do not match."
            )
        regions = self.regions(images)
        feats = self.region_features(images, regions)
        labels = [
            region_seed_labels(
                s.cpu(), t.cpu(), r, self.fg_threshold, self.bg_threshold, self.min_overlap
            )
            for s, t, r in zip(seeds, tags, regions, strict=True)
        ]
        all_f, all_y = torch.cat(feats), torch.cat(labels)
        keep = all_y >= 0
        num_outputs = tags.shape[1] + 1
        mlp = train_region_classifier(
            all_f[keep], all_y[keep], num_outputs, self.hidden, self.num_epochs, self.batch_size,
            self.learning_rate, self.device, self.seed,
        )  # fmt: skip
        self.last_info = {
            "regions": int(all_y.numel()),
            "seed_regions": int((all_y > 0).sum()),
            "background_regions": int((all_y == 0).sum()),
            "unlabelled_regions": int((all_y < 0).sum()),
        }
        out = torch.zeros_like(seeds, dtype=torch.float32, device="cpu")
        with torch.no_grad():
            for b, (f, reg, t) in enumerate(zip(feats, regions, tags.cpu(), strict=True)):
                present = t > 0
                if not bool(present.any()):
                    continue
                logits = mlp(f.to(self.device)).cpu()
                allowed = torch.cat([torch.ones(1, dtype=torch.bool), present])
                prob = logits.masked_fill(~allowed, float("-inf")).softmax(1)[:, 1:]  # (R, K)
                prior = objectness_prior(images[b].cpu(), reg, self.saliency) if use_prior else None
                if prior is not None:
                    fg = prob.sum(1)
                    fused = bayesian_fusion(fg, prior)
                    prob = prob * (fused / fg.clamp_min(1e-8))[:, None]
                out[b] = prob.T[:, reg]
        return out.to(seeds.device)
