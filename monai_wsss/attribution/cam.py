"""CAM and Grad-CAM with a class index per sample, and a differentiable mode (extends ``monai.visualize``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.visualize import CAM, GradCAM, ModelWithHooks
from monai.visualize.class_activation_maps import default_normalizer
from monai.visualize.visualizer import default_upsampler

__all__ = [
    "PerSampleModelWithHooks",
    "PerSampleCAM",
    "PerSampleGradCAM",
    "per_sample_class_index",
    "max_normalizer",
]


def per_sample_class_index(class_idx: Any, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """
    Class indices as a ``(batch_size,)`` long tensor: an int (or 0-d tensor) is broadcast to every sample, a
    sequence/tensor of length ``batch_size`` gives one class per sample.
    """
    idx = torch.as_tensor(class_idx, dtype=torch.long, device=device).reshape(-1)
    if idx.numel() == 1:
        return idx.expand(batch_size).contiguous()
    if idx.numel() != batch_size:
        raise ValueError(f"`class_idx` must be an int or have one entry per sample ({batch_size}), got {idx.numel()}.")
    return idx


def max_normalizer(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample ``relu(x) / (max relu(x) + eps)`` in torch (keeps the graph, works on any device)."""
    x = F.relu(x)
    peak = x.flatten(1).max(1)[0].view(-1, *[1] * (x.ndim - 1))
    return x / (peak + eps)


class PerSampleModelWithHooks(ModelWithHooks):
    """
    ``monai.visualize.ModelWithHooks`` where ``class_idx`` may differ per sample: an int, or a length-B sequence or
    tensor. The score of sample ``i`` is ``logits[i, class_idx[i]]`` (a ``gather``; MONAI's ``logits[:, idx]`` would
    select a BxB block and mix the targets of different samples).

    With ``create_graph=True`` the target-layer gradients are taken with ``torch.autograd.grad(..., create_graph=True)``
    on the cached activations instead of backward hooks, so maps built from them stay differentiable with respect to
    the input (needed by adversarial CAM methods). The model is in eval mode during the call (as in MONAI); the last
    logits are kept in ``self.logits``.

    Args follow ``monai.visualize.ModelWithHooks``.
    """

    def __init__(
        self,
        nn_module: nn.Module,
        target_layer_names: str | Sequence[str],
        register_forward: bool = False,
        register_backward: bool = False,
    ) -> None:
        super().__init__(nn_module, target_layer_names, register_forward, register_backward)
        self.logits: torch.Tensor | None = None

    def class_score(self, logits: torch.Tensor, class_idx: Any) -> torch.Tensor:  # type: ignore[override]
        idx = per_sample_class_index(class_idx, logits.shape[0], logits.device)
        return logits.gather(1, idx[:, None])[:, 0]

    def __call__(self, x, class_idx=None, retain_graph=False, create_graph=False, **kwargs):
        if not create_graph:
            if class_idx is not None:
                class_idx = per_sample_class_index(class_idx, x.shape[0], x.device)
            logits, acti, grad = super().__call__(x, class_idx=class_idx, retain_graph=retain_graph, **kwargs)
            self.logits = logits
            return logits, acti, grad
        if not self.register_forward:
            raise ValueError("`create_graph=True` needs `register_forward=True` (gradients are taken on activations).")
        train = self.model.training
        self.model.eval()
        try:
            logits = self.model(x, **kwargs)
        finally:
            if train:
                self.model.train()
        self.logits = logits
        self.class_idx = logits.max(1)[-1] if class_idx is None else class_idx  # type: ignore[assignment]
        acti = tuple(self.activations[layer] for layer in self.target_layers)
        self.score = self.class_score(logits, self.class_idx)
        grad = torch.autograd.grad(self.score.sum(), acti, create_graph=True, allow_unused=True)
        grad = tuple(torch.zeros_like(a) if g is None else g for a, g in zip(acti, grad, strict=True))
        return logits, acti, grad


class PerSampleCAM(CAM):
    """
    ``monai.visualize.CAM`` with a class index per sample (int, or length-B sequence/tensor) and an optional
    differentiable mode. ``fc_layers`` may be a linear layer (applied at every location, as in MONAI) or a
    1x1(x1) convolution producing the class maps (e.g. ``CAMClassifier.classifier``), in which case it is applied to
    the whole feature map at once.

        Zhou et al., Learning Deep Features for Discriminative Localization. CVPR '16,
        https://arxiv.org/abs/1512.04150

    Args:
        differentiable: keep the graph from the input to the map (no detach anywhere); the default postprocessing
            becomes :py:func:`max_normalizer` (MONAI's default normaliser goes through NumPy).
        other args follow ``monai.visualize.CAM``.

    Example::

        >>> net = resnet_cam_classifier(2, in_channels=1, num_classes=3, model_name="resnet10")
        >>> cam = PerSampleCAM(net, target_layers="feature", fc_layers="classifier")
        >>> cam(torch.rand(2, 1, 64, 64), class_idx=[2, 0]).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: str,
        fc_layers: str | Callable = "fc",
        upsampler: Callable = default_upsampler,
        postprocessing: Callable | None = None,
        differentiable: bool = False,
    ) -> None:
        if postprocessing is None:
            postprocessing = max_normalizer if differentiable else default_normalizer
        if not isinstance(nn_module, PerSampleModelWithHooks):
            nn_module = PerSampleModelWithHooks(nn_module, target_layers, register_forward=True)
        super().__init__(nn_module, target_layers, fc_layers, upsampler, postprocessing)
        self.differentiable = differentiable

    def compute_map(self, x, class_idx=None, layer_idx=-1, **kwargs):  # type: ignore[override]
        with torch.set_grad_enabled(self.differentiable or torch.is_grad_enabled()):
            logits, acti, _ = self.nn_module(x, **kwargs)
        acti = acti[layer_idx]
        idx = logits.max(1)[-1] if class_idx is None else per_sample_class_index(class_idx, x.shape[0], x.device)
        fc = self.nn_module.get_layer(self.fc_layers)
        b, c, *spatial = acti.shape
        if isinstance(fc, nn.modules.conv._ConvNd):
            maps = fc(acti).reshape(b, -1, *spatial)
        else:  # a per-location linear layer, as MONAI's CAM applies it
            maps = fc(acti.reshape(b, c, -1).transpose(1, 2)).transpose(1, 2).reshape(b, -1, *spatial)
        maps = maps.gather(1, idx.view(b, 1, *[1] * len(spatial)).expand(b, 1, *spatial))
        return maps if self.differentiable else maps.detach()


class PerSampleGradCAM(GradCAM):
    """
    ``monai.visualize.GradCAM`` with a class index per sample (int, or length-B sequence/tensor) and an optional
    differentiable mode (the gradients are taken with ``create_graph=True``, so the map is differentiable with
    respect to the input).

        Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization,
        https://arxiv.org/abs/1610.02391

    Args:
        differentiable: see :py:class:`PerSampleCAM`.
        other args follow ``monai.visualize.GradCAM``.
    """

    def __init__(
        self,
        nn_module: nn.Module,
        target_layers: str,
        upsampler: Callable = default_upsampler,
        postprocessing: Callable | None = None,
        differentiable: bool = False,
    ) -> None:
        if postprocessing is None:
            postprocessing = max_normalizer if differentiable else default_normalizer
        if not isinstance(nn_module, PerSampleModelWithHooks):
            nn_module = PerSampleModelWithHooks(
                nn_module, target_layers, register_forward=True, register_backward=not differentiable
            )
        super().__init__(nn_module, target_layers, upsampler, postprocessing)
        self.differentiable = differentiable

    def compute_map(self, x, class_idx=None, retain_graph=False, layer_idx=-1, **kwargs):  # type: ignore[override]
        if not self.differentiable:
            return super().compute_map(x, class_idx=class_idx, retain_graph=retain_graph, layer_idx=layer_idx, **kwargs)
        with torch.enable_grad():
            _, acti, grad = self.nn_module(x, class_idx=class_idx, create_graph=True, **kwargs)
        acti, grad = acti[layer_idx], grad[layer_idx]
        b, c, *spatial = grad.shape
        weights = grad.reshape(b, c, -1).mean(2).view(b, c, *[1] * len(spatial))
        return F.relu((weights * acti).sum(1, keepdim=True))
