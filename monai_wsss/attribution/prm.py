"""Peak Response Maps: peak stimulation (an autograd function) and batched peak back-propagation, N-D."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PeakStimulationFunction", "PeakStimulation", "PeakResponseMapping", "find_peaks"]

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def find_peaks(crm: torch.Tensor, win_size: int = 3, median_filter: bool = True) -> torch.Tensor:
    """
    Boolean mask ``(B, C, *spatial)`` of the local maxima of each class response map: locations equal to the maximum
    of their ``win_size`` window (stride 1, ``-inf`` outside the map), kept only where the value is at least the
    map's median when ``median_filter`` is set (a map with none above its median keeps its unfiltered maxima).
    """
    nd = crm.ndim - 2
    if nd not in _MAXPOOL:
        raise ValueError(f"class response maps must be (B, C, *spatial) with 1-3 spatial dims, got {crm.ndim} dims.")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"`win_size` must be a positive odd integer, got {win_size}.")
    x = crm.detach()
    local_max = _MAXPOOL[nd](x, kernel_size=win_size, stride=1, padding=win_size // 2)
    mask = x == local_max
    if median_filter:
        med = x.flatten(2).median(2)[0].view(*x.shape[:2], *[1] * nd)
        kept = mask & (x > med)
        # a (near-)constant map has no local maximum above its median: keep its unfiltered maxima
        empty = ~kept.flatten(2).any(2).view(*x.shape[:2], *[1] * nd)
        mask = torch.where(empty, mask, kept)
    return mask


class PeakStimulationFunction(torch.autograd.Function):
    """
    Peak stimulation: the class score of each map is the mean of its peak values,
    ``s_c = (1 / N_c) sum_k M_c[peak_k]``; in the backward pass the gradient reaches only the peak locations,
    each with weight ``1 / N_c``. Returns ``(peak_list, scores)``: ``peak_list`` is ``(P, 2 + D)`` long
    (batch, class, coordinates), not differentiable; ``scores`` is ``(B, C)``.

        Zhou, Y. et al. (2018) Weakly Supervised Instance Segmentation using Class Peak Response. CVPR 2018,
        https://arxiv.org/abs/1804.00880
    """

    @staticmethod
    def forward(ctx, crm: torch.Tensor, win_size: int = 3, median_filter: bool = True):  # type: ignore[override]
        mask = find_peaks(crm, win_size, median_filter)
        count = mask.flatten(2).sum(2).clamp_min(1).to(crm.dtype)
        scores = (crm * mask).flatten(2).sum(2) / count
        peak_list = torch.nonzero(mask)
        ctx.mark_non_differentiable(peak_list)
        ctx.save_for_backward(mask, count)
        return peak_list, scores

    @staticmethod
    def backward(ctx, grad_peaks, grad_scores):  # type: ignore[override]
        mask, count = ctx.saved_tensors
        nd = mask.ndim - 2
        grad = (grad_scores / count).view(*grad_scores.shape, *[1] * nd) * mask.to(grad_scores.dtype)
        return grad, None, None


class PeakStimulation(nn.Module):
    """
    Module form of :py:class:`PeakStimulationFunction` with the sub-pixel locating factor: the class response maps
    ``(B, C, *spatial)`` are first up-sampled by ``sub_pixel_locating_factor`` ((bi/tri)linear), so peaks are located
    on a finer grid (the paper uses a window of 3 after x8 up-sampling at inference; factor 1 for training).

    Args:
        win_size: odd window for the local maxima. Defaults to 3.
        sub_pixel_locating_factor: integer up-sampling factor before peak finding. Defaults to 1.
        median_filter: keep only peaks above the map's median. Defaults to True.
    """

    def __init__(self, win_size: int = 3, sub_pixel_locating_factor: int = 1, median_filter: bool = True) -> None:
        super().__init__()
        if sub_pixel_locating_factor < 1:
            raise ValueError(f"`sub_pixel_locating_factor` must be >= 1, got {sub_pixel_locating_factor}.")
        self.win_size = win_size
        self.factor = int(sub_pixel_locating_factor)
        self.median_filter = median_filter

    def upsample(self, crm: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return crm
        return F.interpolate(crm, scale_factor=self.factor, mode=_INTERP[crm.ndim - 2], align_corners=True)

    def forward(self, crm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return PeakStimulationFunction.apply(self.upsample(crm), self.win_size, self.median_filter)


class PeakResponseMapping:
    """
    Peak Response Maps. ``scores(x)`` gives the peak-stimulated class scores (train the classifier on them with a
    multi-label soft-margin loss). ``__call__(x, labels)`` finds the peaks of the present classes and, for each
    image, back-propagates ALL its peaks in one batched pass: the image is repeated once per peak, the batch
    goes through the model (eval mode, so the copies do not interact) and ``d value(peak_p) / d input_p`` of
    copy ``p`` is the response map of peak ``p``. The map is summed over channels and rectified (``positive``).
    With ``target_layer`` the gradient is taken with respect to that layer's output instead of the input.

    The paper's top-down rule (positive weights, inputs shifted by their minimum) is not applied: the response map
    is the plain gradient, restricted by construction to the peak's receptive field.

        Zhou, Y. et al. (2018) Weakly Supervised Instance Segmentation using Class Peak Response. CVPR 2018,
        https://arxiv.org/abs/1804.00880

    Args:
        nn_module: the classifier.
        class_maps: method name on ``nn_module`` or a callable ``(module, x) -> (B, C, *s)`` giving the class
            response maps; ``None`` means ``nn_module(x)`` returns them. Defaults to ``"class_maps"``
            (:py:class:`CAMClassifier`).
        win_size, sub_pixel_locating_factor, median_filter: see :py:class:`PeakStimulation`.
        target_layer: name of a submodule whose output receives the response maps (``None``: the input).
        positive: clamp the response maps at zero. Defaults to True.
        max_peaks: keep at most this many highest peaks per image (``None``: all).
    """

    def __init__(
        self,
        nn_module: nn.Module,
        class_maps: str | Callable | None = "class_maps",
        win_size: int = 3,
        sub_pixel_locating_factor: int = 1,
        median_filter: bool = True,
        target_layer: str | None = None,
        positive: bool = True,
        max_peaks: int | None = None,
    ) -> None:
        self.model = nn_module
        self.class_maps = class_maps
        self.stimulation = PeakStimulation(win_size, sub_pixel_locating_factor, median_filter)
        self.target_layer = target_layer
        self.positive = positive
        self.max_peaks = max_peaks
        if target_layer is not None and target_layer not in dict(nn_module.named_modules()):
            raise ValueError(f"`target_layer` {target_layer!r} is not a submodule of the model.")

    def response_maps(self, x: torch.Tensor) -> torch.Tensor:
        if self.class_maps is None:
            return self.model(x)
        if isinstance(self.class_maps, str):
            return getattr(self.model, self.class_maps)(x)
        return self.class_maps(self.model, x)

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(peak_list, class scores (B, C))`` through peak stimulation (differentiable in the scores)."""
        return self.stimulation(self.response_maps(x))

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """
        Args:
            x: ``(B, C_in, *spatial)``.
            labels: ``(B, K)`` multi-hot; peaks of classes with a zero label are dropped. ``None`` keeps the peaks
                of classes whose peak-stimulated score is positive.

        Returns:
            one dict per image: ``"peaks"`` ``(P, 1 + D)`` long (class, coordinates on the up-sampled grid),
            ``"values"`` ``(P,)`` peak values, ``"maps"`` ``(P, *s)`` response maps (input or ``target_layer``
            resolution), ``"class_maps"`` ``(C, *s')`` the image's class response maps on the peak grid (for
            instance retrieval's background). An image without peaks gets empty ``peaks`` / ``values`` / ``maps``.
        """
        train = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                crm = self.stimulation.upsample(self.response_maps(x))
                peaks, scores = PeakStimulationFunction.apply(
                    crm, self.stimulation.win_size, self.stimulation.median_filter
                )
            keep = (labels > 0) if labels is not None else (scores > 0)
            peaks = peaks[keep[peaks[:, 0], peaks[:, 1]]]
            return [
                {**self._backprop_image(x[b], crm[b], peaks[peaks[:, 0] == b, 1:]), "class_maps": crm[b]}
                for b in range(x.shape[0])
            ]
        finally:
            if train:
                self.model.train()

    def _backprop_image(self, img: torch.Tensor, crm: torch.Tensor, peaks: torch.Tensor) -> dict[str, torch.Tensor]:
        spatial = crm.shape[1:]
        strides = [1] * len(spatial)
        for d in range(len(spatial) - 2, -1, -1):
            strides[d] = strides[d + 1] * spatial[d + 1]
        lin = peaks[:, 0] * crm[0].numel() + (peaks[:, 1:] * torch.tensor(strides, device=peaks.device)).sum(1)
        values = crm.flatten().gather(0, lin) if len(peaks) else crm.new_zeros(0)
        if self.max_peaks is not None and len(peaks) > self.max_peaks:
            order = values.argsort(descending=True)[: self.max_peaks]
            peaks, lin, values = peaks[order], lin[order], values[order]
        if len(peaks) == 0:
            return {"peaks": peaks, "values": values, "maps": img.new_zeros((0, *img.shape[1:]))}
        xs = img[None].repeat(len(peaks), *[1] * img.ndim).requires_grad_(True)
        cache: dict[str, torch.Tensor] = {}
        handle = None
        if self.target_layer is not None:
            layer = dict(self.model.named_modules())[self.target_layer]
            handle = layer.register_forward_hook(lambda _m, _i, o: cache.__setitem__("out", o))
        try:
            with torch.enable_grad():
                crm_p = self.stimulation.upsample(self.response_maps(xs))
                picked = crm_p.flatten(1).gather(1, lin[:, None])
                wrt = xs if handle is None else cache["out"]
                (grad,) = torch.autograd.grad(picked.sum(), wrt)
        finally:
            if handle is not None:
                handle.remove()
        maps = grad.sum(1)
        if self.positive:
            maps = maps.clamp_min(0)
        return {"peaks": peaks, "values": values, "maps": maps.detach()}
