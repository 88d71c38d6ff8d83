"""Object-contextual representations: the OCR head and a wrapper that puts it on any multi-scale MONAI backbone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv

__all__ = ["MultiScaleFeatures", "ObjectContextualHead", "ObjectContextualNet", "region_representations"]


def region_representations(features: torch.Tensor, region_logits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """
    The object-region representations of OCR (Yuan, Chen, Wang, ECCV 2020, Eq. 2): a softmax over the PIXELS of each
    of the K soft-region maps, then the weighted sum of the pixel features, one vector per region.

    Args:
        features: pixel features ``(B, C, *spatial)``.
        region_logits: soft object regions ``(B, K, *spatial)`` (the auxiliary head's logits).
        scale: multiplies the region logits before the spatial softmax.

    Returns:
        ``(B, K, C)``.

    Raises:
        ValueError: ``features`` and ``region_logits`` differ in batch size or spatial shape.
    """
    if features.shape[0] != region_logits.shape[0] or features.shape[2:] != region_logits.shape[2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and region maps {tuple(region_logits.shape)} must share batch and "
            "spatial shape."
        )
    weights = torch.softmax(scale * region_logits.flatten(2), dim=-1)  # (B, K, N), each region sums to 1
    return torch.bmm(weights, features.flatten(2).transpose(1, 2))


class ObjectContextualHead(nn.Module):
    """
    The OCR head of Yuan, Chen, Wang, "Object-Contextual Representations for Semantic Segmentation" (ECCV 2020), for
    any ``spatial_dims``. Two softmaxes, as the paper and its reference code:

    1. soft object regions: an auxiliary head on an earlier stage (3x3 conv to ``mid_channels``, norm, act,
       dropout, 1x1 conv to ``num_classes``), whose logits are trained against the label (loss weight 0.4 in the
       paper) and resized to the pixel features' grid;
    2. region representations (Eq. 2): a softmax over pixels of each region map weights the pixel features (3x3 conv
       of the last stage to ``mid_channels``, norm, act);
    3. pixel-region relation (Eq. 3): a scaled dot-product softmax over the K regions, query (pixels) and key
       (regions) through two 1x1 conv-norm-act layers to ``key_channels``, value through one, the context (Eq. 4)
       back to ``mid_channels`` by a 1x1 conv-norm-act;
    4. augmented representation (Eq. 5): concat(context, pixel features), 1x1 conv to ``mid_channels``, norm, act,
       dropout, then the 1x1 classifier.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the last-stage features (the pixel representations).
        aux_in_channels: channels of the earlier-stage features fed to the auxiliary (soft region) head.
        num_classes: K, the classes including background.
        mid_channels: width of pixel, region and augmented representations (512 in the paper).
        key_channels: width of query, key and value (256 in the paper).
        dropout: dropout of the auxiliary head and of the augmented representation (0.05 in the paper).
        norm: MONAI norm name or ``(name, args)``.
        act: MONAI activation name or ``(name, args)``.
        region_scale: scale of the region logits in the spatial softmax.

    Returns (``forward(features, aux_features)``): ``(logits, region_logits)``, both on the grid of ``features``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        aux_in_channels: int,
        num_classes: int,
        mid_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        region_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"`num_classes` must count background and at least one class, got {num_classes}.")

        def block(dims: int, cin: int, cout: int, kernel: int, drop: float | None = None) -> Convolution:
            return Convolution(
                dims, cin, cout, kernel_size=kernel, norm=norm, act=act, dropout=drop, adn_ordering="NAD"
            )

        conv = Conv[Conv.CONV, spatial_dims]
        self.spatial_dims, self.key_channels, self.region_scale = spatial_dims, key_channels, region_scale
        self.aux_head = nn.Sequential(
            block(spatial_dims, aux_in_channels, mid_channels, 3, dropout), conv(mid_channels, num_classes, 1)
        )
        self.pixel = block(spatial_dims, in_channels, mid_channels, 3)
        self.query = nn.Sequential(
            block(spatial_dims, mid_channels, key_channels, 1), block(spatial_dims, key_channels, key_channels, 1)
        )
        # region vectors are (B, C, K): 1D layers over the K regions
        self.key = nn.Sequential(block(1, mid_channels, key_channels, 1), block(1, key_channels, key_channels, 1))
        self.value = block(1, mid_channels, key_channels, 1)
        self.context_up = block(spatial_dims, key_channels, mid_channels, 1)
        self.bottleneck = block(spatial_dims, 2 * mid_channels, mid_channels, 1, dropout)
        self.classifier = conv(mid_channels, num_classes, 1)

    def relation(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Pixel-region relation (Eq. 3) and object context (Eq. 4): ``(B, C, *S)``, ``(B, K, C)`` -> ``(B, C, *S)``."""
        query = self.query(pixels).flatten(2)  # (B, key, N)
        key = self.key(regions.transpose(1, 2))  # (B, key, K)
        value = self.value(regions.transpose(1, 2))  # (B, key, K)
        relation = torch.softmax(torch.bmm(query.transpose(1, 2), key) / math.sqrt(self.key_channels), dim=-1)
        context = torch.bmm(relation, value.transpose(1, 2)).transpose(1, 2)  # (B, key, N)
        return self.context_up(context.reshape(context.shape[0], context.shape[1], *pixels.shape[2:]))

    def forward(self, features: torch.Tensor, aux_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        region_logits = self.aux_head(aux_features)
        if region_logits.shape[2:] != features.shape[2:]:
            region_logits = F.interpolate(region_logits, size=features.shape[2:], mode="nearest")
        pixels = self.pixel(features)
        regions = region_representations(pixels, region_logits, self.region_scale)
        augmented = self.bottleneck(torch.cat([self.relation(pixels, regions), pixels], dim=1))
        return self.classifier(augmented), region_logits


_OUTPUT = "_multiscale_output"


def _keep_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
    """Forward hook: keep the module's output on the module itself (so that a deep copy keeps working)."""
    module.__dict__[_OUTPUT] = output


class MultiScaleFeatures(nn.Module):
    """
    Expose intermediate outputs of any MONAI network as a list of feature maps, by forward hooks on named
    sub-modules (``dict(network.named_modules())``), so that a head such as :py:class:`ObjectContextualHead` can sit on
    e.g. the decoder stages of ``BasicUNet`` (``["upcat_2", "upcat_1"]``) or ``SegResNet`` (``["up_layers.1",
    "up_layers.2"]``). The network's own output is discarded; its output layers can be removed (``remove``) so that
    every parameter takes part in the loss (``DistributedDataParallel`` requires it).

    Args:
        network: the backbone.
        layers: names of its sub-modules whose outputs are returned, in this order.
        remove: names of its sub-modules replaced by ``nn.Identity`` (e.g. ``["final_conv"]`` of ``BasicUNet``).

    Raises:
        ValueError: a name is not a sub-module of ``network``.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], remove: Sequence[str] = ()) -> None:
        super().__init__()
        modules = dict(network.named_modules())
        unknown = [name for name in [*layers, *remove] if name not in modules]
        if unknown or not layers:
            known = ", ".join(n for n in modules if n)
            raise ValueError(f"layers {unknown or list(layers)} are not sub-modules of the backbone; known: {known}.")
        for name in remove:
            parent, _, child = name.rpartition(".")
            setattr(network.get_submodule(parent) if parent else network, child, nn.Identity())
        self.network, self.layers = network, list(layers)
        for name in self.layers:
            modules[name].register_forward_hook(_keep_output)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.network(x)
        return [self.network.get_submodule(name).__dict__.pop(_OUTPUT) for name in self.layers]


class ObjectContextualNet(nn.Module):
    """
    :py:class:`ObjectContextualHead` on a MONAI backbone that yields multi-scale features: a network whose forward
    returns a list of feature maps (``ResNetFeatures``, the ``encoder`` of ``FlexibleUNet``) or any network wrapped in
    :py:class:`MultiScaleFeatures`. The soft regions come from the stage ``aux_index``, the pixel features from
    ``feature_index``; both outputs are resized to the input's spatial size.

    In training mode (``network.train()``) with ``aux_output`` it returns ``[logits, region_logits]``, the form that
    MONAI's ``DeepSupervisionLoss(loss, weights=[1.0, 0.4])`` reads (the aux weight of the paper); in eval mode, or
    when built with ``aux_output=False`` (inference configs, ``verify_net_in_out``, MONAI Label, 3D Slicer), the
    logits only. The parameters are the same either way, so weights load in both.

        Yuan, Y., Chen, X., Wang, J. (2020) Object-Contextual Representations for Semantic Segmentation. ECCV 2020.

    Args:
        backbone: ``x -> list of (B, C_i, *S_i)``.
        spatial_dims: 1, 2 or 3.
        feature_channels: channels of every stage the backbone returns (``C_i``).
        num_classes: K, the classes including background.
        feature_index: stage of the pixel features (default the last).
        aux_index: stage of the soft-region head (default the one before).
        mid_channels: see :py:class:`ObjectContextualHead` (512 in the paper).
        key_channels: see :py:class:`ObjectContextualHead` (256 in the paper).
        dropout: see :py:class:`ObjectContextualHead` (0.05 in the paper).
        norm: MONAI norm name.
        act: MONAI activation name.
        aux_output: return the region logits too in training mode.
        upsample_mode: ``F.interpolate`` mode to the input size (``"nearest"``, or linear: ``"bilinear"`` in 2D,
            ``"trilinear"`` in 3D, chosen from ``spatial_dims`` when ``"linear"``).
        dropout_prob: an alias of ``dropout`` set by MONAI Label's epistemic scoring (``network_def#dropout``); when
            given it replaces ``dropout``.

    Raises:
        ValueError: ``spatial_dims`` not 1-3, or ``feature_index`` / ``aux_index`` outside ``feature_channels``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spatial_dims: int,
        feature_channels: Sequence[int],
        num_classes: int,
        feature_index: int = -1,
        aux_index: int = -2,
        mid_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        aux_output: bool = True,
        upsample_mode: str = "linear",
        dropout_prob: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"`spatial_dims` must be 1, 2 or 3, got {spatial_dims}.")
        channels = list(feature_channels)
        for name, index in (("feature_index", feature_index), ("aux_index", aux_index)):
            if not -len(channels) <= index < len(channels):
                raise ValueError(f"`{name}` {index} is outside the {len(channels)} stages of `feature_channels`.")
        self.backbone, self.feature_index, self.aux_index = backbone, feature_index, aux_index
        self.head = ObjectContextualHead(
            spatial_dims,
            channels[feature_index],
            channels[aux_index],
            num_classes,
            mid_channels=mid_channels,
            key_channels=key_channels,
            dropout=dropout if dropout_prob is None else dropout_prob,
            norm=norm,
            act=act,
        )
        self.aux_output = aux_output
        if upsample_mode == "linear":
            upsample_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
        self.upsample_mode = upsample_mode

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        align = False if self.upsample_mode in ("linear", "bilinear", "trilinear", "bicubic") else None
        return F.interpolate(x, size=tuple(size), mode=self.upsample_mode, align_corners=align)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        stages = self.backbone(x)
        logits, region_logits = self.head(stages[self.feature_index], stages[self.aux_index])
        logits = self._resize(logits, x.shape[2:])
        if self.training and self.aux_output:
            return [logits, self._resize(region_logits, x.shape[2:])]
        return logits
