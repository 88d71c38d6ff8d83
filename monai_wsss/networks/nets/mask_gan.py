"""A latent-noise generator of segmentation masks, for diverse synthetic (mask, image) pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import Generator
from torch import nn

__all__ = ["LatentMaskGenerator"]


class LatentMaskGenerator(nn.Module):
    """
    Latent vector -> class probabilities of a mask, on MONAI's :py:class:`~monai.networks.nets.Generator` (a linear
    layer to a ``spatial_size / 2**len(channels)`` feature map, then transposed convolutions), ending in a softmax over
    ``num_classes``. Trained as a GAN against real one-hot masks (MONAI ``GanTrainer``), it provides the "mask
    synthesis" step of Bailo, Ham, Shin (CVPR Workshops 2019), who generate new masks so that synthetic pairs are
    not only re-paintings of the real masks. :py:meth:`sample` returns label maps.

    Args:
        latent_size: length of the latent vector.
        spatial_size: mask size (each side divisible by ``2 ** len(channels)``).
        num_classes: classes, background included.
        channels: channels of the up-sampling layers before the output layer.
    """

    def __init__(
        self,
        latent_size: int,
        spatial_size: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (128, 64, 32, 16),
    ) -> None:
        super().__init__()
        factor = 2 ** (len(channels) + 1)
        if any(s % factor for s in spatial_size):
            raise ValueError(f"spatial_size {list(spatial_size)} must be divisible by {factor}.")
        self.latent_size = int(latent_size)
        self.num_classes = int(num_classes)
        start = [int(channels[0])] + [s // factor for s in spatial_size]
        self.net = Generator(
            latent_shape=(self.latent_size,),
            start_shape=start,
            channels=[*channels, num_classes],
            strides=[2] * (len(channels) + 1),
            num_res_units=0,
            act="RELU",
            norm="BATCH",
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(z), dim=1)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` label maps ``(num, 1, *spatial_size)`` from standard normal latents."""
        device = next(self.parameters()).device
        z = torch.randn(num, self.latent_size, generator=generator).to(device)
        was_training = self.training
        self.eval()
        try:
            return self(z).argmax(dim=1, keepdim=True)
        finally:
            self.train(was_training)
