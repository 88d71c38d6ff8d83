"""Mask-to-image generator for pix2pix synthesis (Isola et al., CVPR 2017; Bailo, Ham, Shin, CVPR Workshops 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.utils import one_hot
from torch import nn

from ...compat import DecoderDropoutUNet

__all__ = ["MaskToImageGenerator", "discriminator_logits"]


class MaskToImageGenerator(nn.Module):
    """
    pix2pix generator: a MONAI :py:class:`~monai.networks.nets.UNet` with dropout that maps a segmentation mask to an
    image, ending in ``tanh`` (images scaled to [-1, 1]) or ``sigmoid`` ([0, 1]).

    Bailo, Ham, Shin, "Red blood cell image generation for data augmentation using conditional generative adversarial
    networks", CVPR Workshops 2019, train the pix2pix U-Net generator of Isola et al., "Image-to-image translation
    with conditional adversarial networks", CVPR 2017, whose only source of randomness is dropout (kept at sampling
    time: call ``train()`` or pass ``sample=True``).

    The mask may be a label map (one channel, values ``0..num_classes-1``) or one-hot (``num_classes`` channels): a
    label map is one-hot encoded here, so the network always sees ``num_classes`` channels.

    Args:
        spatial_dims: 2 or 3.
        num_classes: classes of the mask, background included.
        out_channels: image channels (1 grey, 3 RGB).
        channels: U-Net channels per level; pix2pix uses ``(64, 128, 256, 512, 512, 512, 512, 512)`` at 256 px.
        strides: strides between levels (``len(channels) - 1`` values).
        num_res_units: residual units per level (0 gives the plain conv blocks of pix2pix).
        dropout: dropout probability of the decoder's inner up-sampling layers (pix2pix: 0.5; the encoder and the
            output layer have none).
        norm: normalisation (pix2pix: ``"INSTANCE"`` or ``"BATCH"``).
        output_act: ``"tanh"``, ``"sigmoid"`` or ``None``.
    """

    def __init__(
        self,
        spatial_dims: int,
        num_classes: int,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        num_res_units: int = 0,
        dropout: float = 0.5,
        norm: str | tuple = "INSTANCE",
        output_act: str | None = "tanh",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}.")
        acts = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, None: nn.Identity}
        if output_act not in acts:
            raise ValueError(f"output_act must be one of {list(acts)}, got {output_act!r}.")
        self.num_classes = num_classes
        self.unet = DecoderDropoutUNet(
            spatial_dims=spatial_dims,
            in_channels=num_classes,
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            decoder_dropout=dropout,
            norm=norm,
            act=("LEAKYRELU", {"negative_slope": 0.2}),
        )
        self.output_act = acts[output_act]()

    def encode_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Return the ``num_classes``-channel one-hot form of a label map or one-hot mask."""
        if mask.shape[1] == self.num_classes:
            return mask.float()
        if mask.shape[1] != 1:
            raise ValueError(
                f"mask must have 1 channel (label map) or {self.num_classes} (one-hot), got {mask.shape[1]} channels."
            )
        values = torch.unique(mask)
        in_range = bool((values >= 0).all() and (values < self.num_classes).all() and (values == values.round()).all())
        if not in_range:
            raise ValueError(
                f"label map values {values.tolist()[:10]} are not integers in [0, {self.num_classes - 1}]."
            )
        return one_hot(mask.long(), num_classes=self.num_classes).float()

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.output_act(self.unet(self.encode_mask(mask)))


def discriminator_logits(output: torch.Tensor | Sequence) -> torch.Tensor | list[torch.Tensor]:
    """
    The real/fake logits of a MONAI discriminator's output: ``PatchDiscriminator`` returns its intermediate features
    with the logits last; ``MultiScalePatchDiscriminator`` returns ``(logits per scale, features per scale)``; a plain
    tensor is returned as it is.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], list):
        return list(output[0])
    return output[-1]
