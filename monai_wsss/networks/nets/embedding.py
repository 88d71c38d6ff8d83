"""Image embeddings from a trained network's intermediate features (for feature distances between image sets)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureEmbedding"]


class FeatureEmbedding(nn.Module):
    """
    Global-average-pooled output of one layer of a trained ``network``: an image embedding for FID-style feature
    distances (Heusel et al., NeurIPS 2017) computed with a network trained on the task's own real images instead of
    ImageNet Inception (which is neither available offline nor meaningful for microscopy).

    Args:
        network: the trained network (kept in eval mode, no gradients).
        layer: name of the module (``network.named_modules()``) whose output is pooled; ``None`` picks, on the first
            call, the module with the smallest spatial output (most channels on ties), i.e. the bottleneck of an
            encoder-decoder.
    """

    def __init__(self, network: nn.Module, layer: str | None = None) -> None:
        super().__init__()
        self.network = network
        self.layer = layer

    def _pick_layer(self, x: torch.Tensor) -> str:
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = []
        for name, module in self.network.named_modules():
            if name and not isinstance(module, (nn.Sequential, nn.ModuleList)):
                hooks.append(
                    module.register_forward_hook(
                        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
                        if isinstance(out, torch.Tensor) and out.ndim == x.ndim
                        else None
                    )
                )
        try:
            self.network(x[:1])
        finally:
            for h in hooks:
                h.remove()
        if not shapes:
            raise ValueError("FeatureEmbedding: no module of the network returns a feature map.")
        return min(shapes, key=lambda n: (int(torch.tensor(shapes[n][2:]).prod()), -shapes[n][1]))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.network.eval()
        if self.layer is None:
            self.layer = self._pick_layer(x)
        modules = dict(self.network.named_modules())
        if self.layer not in modules:
            raise ValueError(f"FeatureEmbedding: the network has no module named {self.layer!r}.")
        captured: list[torch.Tensor] = []
        hook = modules[self.layer].register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.network(x)
        finally:
            hook.remove()
        return captured[0].flatten(2).mean(-1)
