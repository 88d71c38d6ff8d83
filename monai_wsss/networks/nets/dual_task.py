"""Dual-task networks: a segmentation head and a level-set (signed distance) head on shared features."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Dropout

__all__ = ["DualTaskNet", "DualTaskVNet", "ReferenceVNetFeatures", "SelectOutput"]


class DualTaskNet(nn.Module):
    """
    Wrap any backbone that outputs ``feature_channels`` feature maps at input resolution (e.g. MONAI ``UNet`` or
    ``BasicUNet`` built with ``out_channels=feature_channels``) into the dual-task network of DTC: two 1x1(x1)
    convolutions on the same features give segmentation logits and, through ``tanh``, a signed distance map.

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021.

    Args:
        backbone: module mapping ``(B, in_channels, *spatial)`` to ``(B, feature_channels, *spatial)``.
        spatial_dims: 2 or 3.
        feature_channels: channels of the backbone output.
        out_channels: number of foreground channels (sigmoid outputs, one level set each).
        seg_only: return only the segmentation logits (inference, ``verify_net_in_out``, Slicer, MONAI Label);
            otherwise ``(seg_logits, sdf)``. The parameters are the same either way, so weights load in both modes.

    Example::

        >>> from monai.networks.nets import BasicUNet
        >>> net = DualTaskNet(BasicUNet(3, 1, 32), spatial_dims=3, feature_channels=32, out_channels=1)
        >>> seg, sdf = net(torch.zeros(2, 1, 32, 32, 32))
    """

    def __init__(
        self,
        backbone: nn.Module,
        spatial_dims: int,
        feature_channels: int,
        out_channels: int = 1,
        seg_only: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims}.")
        self.backbone = backbone
        conv = Conv[Conv.CONV, spatial_dims]
        self.seg_head = conv(feature_channels, out_channels, kernel_size=1)
        self.sdf_head = conv(feature_channels, out_channels, kernel_size=1)
        self.seg_only = seg_only

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        seg = self.seg_head(features)
        if self.seg_only:
            return seg
        return seg, torch.tanh(self.sdf_head(features))


class ReferenceVNetFeatures(nn.Module):
    """
    The V-Net variant of the UA-MT / DTC reference code, up to its last feature maps: 3x3(x3) convolutions with
    BatchNorm and ReLU (1, 2, 3, 3, 3 convolutions per encoder stage), stride-2 convolutions down, stride-2
    transposed convolutions up, additive (not concatenated) skips, and dropout after the bottleneck and the last
    decoder block. This differs from MONAI's ``VNet`` (5x5x5 convolutions, ELU, residual stages).

        Yu, L., Wang, S., Li, X., Fu, C.-W., Heng, P.-A. (2019) Uncertainty-aware Self-ensembling Model for
        Semi-supervised 3D Left Atrium Segmentation. MICCAI 2019.

    Note:
        Four down-samplings: inputs whose sizes are not multiples of 16 are zero-padded at the end of each axis and
        the output is cropped back, so e.g. the paper's field of view at 1.25 mm (56x56x40) works.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        features: filters of the first stage (16 in the reference); stage ``i`` has ``features * 2**i``.
        norm: normalisation (``"batch"`` as the reference; ``"instance"`` etc. also accepted).
        act: activation.
        dropout: dropout probability at the bottleneck and last decoder block (0.5 in the reference; 0 disables).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        features: int = 16,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims}.")
        f = [features * 2**i for i in range(5)]

        def stage(n_convs: int, c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                *[
                    Convolution(
                        spatial_dims,
                        c_in if i == 0 else c_out,
                        c_out,
                        kernel_size=3,
                        act=act,
                        norm=norm,
                        adn_ordering="NA",
                    )
                    for i in range(n_convs)
                ]
            )

        def resample(c_in: int, c_out: int, up: bool) -> Convolution:
            return Convolution(
                spatial_dims,
                c_in,
                c_out,
                strides=2,
                kernel_size=2,
                act=act,
                norm=norm,
                adn_ordering="NA",
                is_transposed=up,
                padding=0,
                output_padding=0 if up else None,
            )

        self.encoder = nn.ModuleList(
            [stage(n, c_in, c) for n, c_in, c in zip((1, 2, 3, 3, 3), [in_channels] + f[1:], f, strict=False)]
        )
        self.down = nn.ModuleList([resample(f[i], f[i + 1], up=False) for i in range(4)])
        self.up = nn.ModuleList([resample(f[i + 1], f[i], up=True) for i in reversed(range(4))])
        self.decoder = nn.ModuleList(
            [stage(n, f[i], f[i]) for n, i in zip((3, 3, 2, 1), reversed(range(4)), strict=False)]
        )
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        pad = [(-s) % 16 for s in spatial]
        if any(pad):
            x = F.pad(x, [p for s in reversed(pad) for p in (0, s)])
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < 4:
                skips.append(x)
                x = self.down[i](x)
        x = self.dropout(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips), strict=False):
            x = block(up(x) + skip)
        x = self.dropout(x)
        return x[(..., *[slice(0, s) for s in spatial])] if any(pad) else x


class DualTaskVNet(DualTaskNet):
    """
    The DTC network of the reference implementation: :py:class:`ReferenceVNetFeatures` with the two
    :py:class:`DualTaskNet` heads (segmentation logits and ``tanh`` signed distance).

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021.

    Args:
        spatial_dims, in_channels, features, norm, act, dropout: see :py:class:`ReferenceVNetFeatures`.
        out_channels: foreground channels.
        seg_only: return only the segmentation logits.

    Example::

        >>> net = DualTaskVNet(spatial_dims=3, in_channels=1, out_channels=1)
        >>> seg, sdf = net(torch.zeros(2, 1, 64, 64, 32))
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 16,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.5,
        seg_only: bool = False,
    ) -> None:
        backbone = ReferenceVNetFeatures(spatial_dims, in_channels, features, norm, act, dropout)
        super().__init__(backbone, spatial_dims, features, out_channels, seg_only)


class SelectOutput(nn.Module):
    """
    Return one output of a multi-output network (``index`` of its tuple), sharing the network's parameters: e.g.
    the validator of a dual-task training sees the segmentation only, while the trainer sees both heads.

    Args:
        network: the wrapped network.
        index: which output to return when the network returns a tuple or list.
    """

    def __init__(self, network: nn.Module, index: int = 0) -> None:
        super().__init__()
        self.network = network
        self.index = index

    def forward(self, *args, **kwargs):
        out = self.network(*args, **kwargs)
        return out[self.index] if isinstance(out, (tuple, list)) else out
