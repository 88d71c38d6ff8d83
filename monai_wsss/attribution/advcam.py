"""AdvCAM: anti-adversarial manipulation of the image to expand class activation maps, batched over instances."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.utils import look_up_option

from .cam import PerSampleCAM, PerSampleGradCAM, per_sample_class_index

__all__ = ["AdvCAM", "advcam_reference"]

_MASK_MODES = ("running_sum", "previous", "union")
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


@contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """
    Within the block, no parameter of ``module`` requires a gradient (restored afterwards, also on error), so a
    gradient taken with respect to the input alone computes no weight gradient and keeps no tensor for one. On 2
    CPU threads the time saved on a ResNet-18 was within noise (``benchmarks/data_path_speed.py``).
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class AdvCAM:
    """
    Anti-adversarial CAM (AdvCAM). For an image ``x`` and a present class ``c``, starting from ``x_0 = x``, each of
    ``T`` steps computes the CAM ``A_t = ReLU(CAM_c(x_t))`` (at the feature resolution) and the objective

        ``L_t = y_c(x_t) - sum_{k != c} y_k(x_t) - lambda * || M_t (.) |A_t - A_0| ||_1``

    then moves the image UP the gradient, L-inf normalised (not the sign):
    ``x_{t+1} = clamp(x_t + xi * g / max|g|, min x, max x)`` with ``g = dL_t / dx_t``, clamped to the range of the
    original image (per instance). The output is the sum ``A_0 + A_1 + ... + A_T`` (``T + 1`` maps: the original
    image and each of the ``T`` manipulated images), summed over scales and flips after resizing each to the input
    size and un-flipping, then normalised per (image, class) by its maximum (``A / (max A + 1e-5)``), as in the paper.

    The regulariser mask ``M_t`` marks the locations already strongly activated, ``A / max A > tau``, computed
    from (``mask_mode``):

        - ``"running_sum"`` (default, as the reference code does): recomputed at every step from the accumulated map
          ``A_0 + ... + A_{t-1}``;
        - ``"previous"`` (the paper's equation read literally): recomputed at every step from ``A_{t-1}``;
        - ``"union"`` (accumulated mask): ``M_t = M_{t-1} OR (A_{t-1} / max A_{t-1} > tau)``, a location once masked
          stays masked.

    ``M_0 = 0`` (and ``A_0 - A_0 = 0``), so the first step is driven by the logits alone.

    Batching: every (image, flip, class) instance at one scale is attacked in ONE batched pass, each with its own
    class index, L-inf normalisation, mask and clamp range; the model is held in eval mode, so instances do not
    interact (BatchNorm uses its running statistics) and the result equals the one-at-a-time loop
    (:py:func:`advcam_reference`). Different scales have different shapes and run as separate batched passes
    (padding them into one tensor would change the network's output near the borders). ``max_instances`` splits a
    large batch into chunks without changing the result. The model's parameters are frozen during the call
    (:py:func:`frozen_parameters`): only the gradient with respect to the image is needed, so no weight gradient is
    computed (the one-at-a-time reference procedure, like the paper's code, back-propagates into the weights too).
    In float64 the batched maps equal :py:func:`advcam_reference`'s to rounding; in float32 they can differ by up to
    about 0.1 after 27 steps (measured), because a rounding difference that moves one location across the mask
    threshold ``tau`` or changes which location holds ``max|g|`` changes every later step.

        Lee, J., Kim, E., Yoon, S. (2021) Anti-Adversarially Manipulated Attributions for Weakly and
        Semi-Supervised Semantic Segmentation. CVPR 2021, https://arxiv.org/abs/2103.08896

    Args:
        nn_module: a classifier returning logits ``(B, num_classes)``, e.g. :py:class:`CAMClassifier`.
        target_layers: layer whose output is the feature map (``"feature"`` for :py:class:`CAMClassifier`).
        fc_layers: the classifier layer (``"classifier"``): CAM from the class weights (the paper's CAM). ``None``
            uses a differentiable Grad-CAM at ``target_layers`` instead (equal to the CAM up to a constant for
            a bias-free classifier after global average pooling).
        steps: ``T``, number of adversarial steps. Defaults to 27.
        step_size: ``xi``. Defaults to 0.08.
        reg_weight: ``lambda``. Defaults to 7.
        mask_threshold: ``tau``. Defaults to 0.5.
        mask_mode: one of ``"running_sum"``, ``"previous"``, ``"union"`` (see above).
        scales: image scales; the paper uses ``(1.0, 0.5, 1.5, 2.0)``. Defaults to ``(1.0,)``.
        flip: also attack the image flipped along ``flip_axis`` (spatial axis index, -1: last) at each scale.
        clamp: clamp the manipulated image to its original (per instance) intensity range.
        max_instances: at most this many instances per batched pass (``None``: all at once).
    """

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: str = "feature",
        fc_layers: str | None = "classifier",
        steps: int = 27,
        step_size: float = 0.08,
        reg_weight: float = 7.0,
        mask_threshold: float = 0.5,
        mask_mode: str = "running_sum",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        flip_axis: int = -1,
        clamp: bool = True,
        max_instances: int | None = None,
    ) -> None:
        if steps < 0:
            raise ValueError(f"`steps` must be >= 0, got {steps}.")
        if step_size <= 0:
            raise ValueError(f"`step_size` must be positive, got {step_size}.")
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"`scales` must be a non-empty sequence of positive numbers, got {scales}.")
        if max_instances is not None and max_instances < 1:
            raise ValueError(f"`max_instances` must be positive or None, got {max_instances}.")
        self.model = nn_module
        self.cam: PerSampleCAM | PerSampleGradCAM
        if fc_layers is None:
            self.cam = PerSampleGradCAM(nn_module, target_layers, differentiable=True)
        else:
            self.cam = PerSampleCAM(nn_module, target_layers, fc_layers, differentiable=True)
        self.steps = steps
        self.step_size = float(step_size)
        self.reg_weight = float(reg_weight)
        self.mask_threshold = float(mask_threshold)
        self.mask_mode = look_up_option(mask_mode, _MASK_MODES)
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.flip_axis = flip_axis
        self.clamp = clamp
        self.max_instances = max_instances

    # ---- building blocks (public for tests and for the reference loop) ----
    def maps_and_logits(self, x: torch.Tensor, class_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ReLU CAM of each sample's class (N, 1, *s), logits (N, K))``, differentiable with respect to ``x``."""
        maps = self.cam.compute_map(x, class_idx=class_idx)
        logits = self.cam.nn_module.logits
        if logits is None:
            raise RuntimeError("the hooked model did not record logits.")
        return F.relu(maps), logits

    def ascent_step(self, grad: torch.Tensor) -> torch.Tensor:
        """``xi * g / max|g|`` per instance (L-inf norm ``xi`` unless the gradient is zero)."""
        peak = grad.abs().flatten(1).max(1)[0].clamp_min(torch.finfo(grad.dtype).tiny)
        return self.step_size * grad / peak.view(-1, *[1] * (grad.ndim - 1))

    def strong_region(self, a: torch.Tensor) -> torch.Tensor:
        """``a / max a > tau`` per instance (``False`` everywhere for an all-zero map)."""
        peak = a.flatten(1).max(1)[0].view(-1, *[1] * (a.ndim - 1))
        return (a > self.mask_threshold * peak) & (peak > 0)

    def objective(
        self, logits: torch.Tensor, a_t: torch.Tensor, a_0: torch.Tensor, mask: torch.Tensor, class_idx: torch.Tensor
    ) -> torch.Tensor:
        """Per-instance ``y_c - sum_{k != c} y_k - lambda * ||M (.) |A_t - A_0| ||_1``."""
        score = logits.gather(1, class_idx[:, None])[:, 0]
        others = logits.sum(1) - score
        reg = (mask * (a_t - a_0).abs()).flatten(1).sum(1)
        return score - others - self.reg_weight * reg

    def attack(
        self,
        x: torch.Tensor,
        class_idx: torch.Tensor | Sequence[int] | int,
        low: torch.Tensor | None = None,
        high: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Attack a batch of instances at once and return ``A_0 + ... + A_T`` (un-normalised, feature resolution).

        Args:
            x: ``(N, C, *spatial)`` instances (one image per instance, repeated for each of its classes).
            class_idx: int or ``(N,)`` class per instance.
            low, high: ``(N,)`` clamp range per instance; defaults to each instance's own min / max.
        """
        x = x.detach()
        n = x.shape[0]
        idx = per_sample_class_index(class_idx, n, x.device)
        bshape = (n, *[1] * (x.ndim - 1))
        low = (x.flatten(1).min(1)[0] if low is None else low).reshape(bshape)
        high = (x.flatten(1).max(1)[0] if high is None else high).reshape(bshape)
        x_t = x.clone()
        total = a_0 = prev = mask = None
        for t in range(self.steps + 1):
            x_t.requires_grad_(True)
            with torch.enable_grad():
                a_t, logits = self.maps_and_logits(x_t, idx)
            a_det = a_t.detach()
            if t == 0:
                a_0, mask, total = a_det, torch.zeros_like(a_det, dtype=torch.bool), torch.zeros_like(a_det)
            elif self.mask_mode == "running_sum":
                mask = self.strong_region(total)
            elif self.mask_mode == "previous":
                mask = self.strong_region(prev)
            else:
                mask = mask | self.strong_region(prev)
            total = total + a_det
            prev = a_det
            if t == self.steps:
                break
            loss = self.objective(logits, a_t, a_0, mask.to(a_t.dtype), idx)
            (grad,) = torch.autograd.grad(loss.sum(), x_t)
            x_t = x_t.detach() + self.ascent_step(grad)
            if self.clamp:
                x_t = torch.maximum(torch.minimum(x_t, high), low)
        return total  # type: ignore[return-value]

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode=_INTERP[x.ndim - 2], align_corners=False)

    def __call__(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """
        Args:
            img: ``(B, C, *spatial)`` images.
            labels: ``(B, K)`` multi-hot image-level labels; an AdvCAM is computed for every positive entry.

        Returns:
            ``(B, K, *spatial)`` maps in [0, 1]; zero for absent classes (an image with no positive class gives
            all zeros).
        """
        if labels.ndim != 2 or labels.shape[0] != img.shape[0]:
            raise ValueError(f"`labels` must be (B, K) with B = {img.shape[0]}, got {tuple(labels.shape)}.")
        b, k = labels.shape
        spatial = tuple(img.shape[2:])
        out = img.new_zeros((b, k, *spatial))
        pos = torch.nonzero(labels > 0)  # (P, 2): image, class
        if pos.numel() == 0:
            return out
        img = img.detach()
        low_img, high_img = img.flatten(1).min(1)[0], img.flatten(1).max(1)[0]
        axis = 2 + (self.flip_axis % len(spatial))
        flips = (False, True) if self.flip else (False,)
        train = self.model.training
        self.model.eval()
        try:
            with frozen_parameters(self.model):
                self._attack_scales(img, pos, low_img, high_img, axis, flips, spatial, out)
        finally:
            if train:
                self.model.train()
        peak = out.flatten(2).max(2)[0].view(b, k, *[1] * len(spatial))
        return out / (peak + 1e-5)

    def _attack_scales(
        self,
        img: torch.Tensor,
        pos: torch.Tensor,
        low_img: torch.Tensor,
        high_img: torch.Tensor,
        axis: int,
        flips: tuple[bool, ...],
        spatial: tuple[int, ...],
        out: torch.Tensor,
    ) -> None:
        """Every (image, flip, class) instance, one batched pass per scale, summed into ``out`` in place."""
        for scale in self.scales:
            size = [max(1, int(round(s * scale))) for s in spatial]
            scaled = self._resize(img, size)
            inst_img, inst_cls, inst_flip = [], [], []
            for f in flips:
                inst_img.append(pos[:, 0])
                inst_cls.append(pos[:, 1])
                inst_flip.append(torch.full_like(pos[:, 0], int(f)))
            src, cls, flp = torch.cat(inst_img), torch.cat(inst_cls), torch.cat(inst_flip).bool()
            x = scaled[src]
            x = torch.where(flp.view(-1, *[1] * (x.ndim - 1)), x.flip(axis), x)
            chunk = self.max_instances or x.shape[0]
            maps = torch.cat(
                [
                    self.attack(
                        x[i : i + chunk],
                        cls[i : i + chunk],
                        low_img[src[i : i + chunk]],
                        high_img[src[i : i + chunk]],
                    )
                    for i in range(0, x.shape[0], chunk)
                ]
            )
            maps = self._resize(maps, spatial)
            maps = torch.where(flp.view(-1, *[1] * (maps.ndim - 1)), maps.flip(axis), maps)
            out.index_put_((src, cls), maps[:, 0], accumulate=True)


def advcam_reference(advcam: AdvCAM, img: torch.Tensor, class_idx: int) -> torch.Tensor:
    """
    One-at-a-time AdvCAM of ONE image ``(C, *spatial)`` and ONE class, looping over scales, flips and steps with
    batch size 1 (the reference procedure). Uses ``advcam``'s settings and model; returns the normalised
    ``(*spatial)`` map. Slow by design: it is the check for the batched :py:class:`AdvCAM`.
    """
    spatial = tuple(img.shape[1:])
    axis = 1 + (advcam.flip_axis % len(spatial))
    x_orig = img.detach()[None]
    low, high = x_orig.min(), x_orig.max()
    idx = torch.tensor([int(class_idx)], device=img.device)
    total = torch.zeros(spatial, dtype=img.dtype, device=img.device)
    train = advcam.model.training
    advcam.model.eval()
    for scale in advcam.scales:
        size = [max(1, int(round(s * scale))) for s in spatial]
        scaled = advcam._resize(x_orig, size)[0]
        for flip in (False, True) if advcam.flip else (False,):
            x = (scaled.flip(axis) if flip else scaled)[None]
            x_t = x.clone()
            summed, a_0, prev, mask = None, None, None, None
            for t in range(advcam.steps + 1):
                x_t.requires_grad_(True)
                a_t, logits = advcam.maps_and_logits(x_t, idx)
                if t == 0:
                    a_0 = a_t.detach()
                    summed = torch.zeros_like(a_0)
                    mask = torch.zeros_like(a_0)
                else:
                    ref = summed if advcam.mask_mode == "running_sum" else prev
                    new = (ref / ref.max() > advcam.mask_threshold).to(a_t.dtype) if ref.max() > 0 else 0 * ref
                    mask = torch.maximum(mask, new) if advcam.mask_mode == "union" else new
                summed = summed + a_t.detach()
                prev = a_t.detach()
                if t == advcam.steps:
                    break
                c = int(class_idx)
                loss = 2 * logits[0, c] - logits[0].sum() - advcam.reg_weight * (mask * (a_t - a_0).abs()).sum()
                (g,) = torch.autograd.grad(loss, x_t)
                x_t = (x_t.detach() + advcam.step_size * g / g.abs().max()).detach()
                if advcam.clamp:
                    x_t = x_t.clamp(low, high)
            up = advcam._resize(summed, spatial)[0, 0]
            total = total + (up.flip(axis - 1) if flip else up)
    if train:
        advcam.model.train()
    return total / (total.max() + 1e-5)
