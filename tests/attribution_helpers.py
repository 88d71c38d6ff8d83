"""Tiny CAM classifiers (2D / 3D) for the attribution tests."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution

from monai_wsss.networks import CAMClassifier


def tiny_backbone(spatial_dims: int, in_channels: int = 1, channels: int = 6, stride: int = 2) -> nn.Module:
    """Two conv blocks with BatchNorm (randomised running statistics, so eval mode matters)."""
    net = nn.Sequential(
        Convolution(spatial_dims, in_channels, 4, strides=stride, kernel_size=3, norm="batch", act="relu"),
        Convolution(spatial_dims, 4, channels, strides=1, kernel_size=3, norm="batch", act="relu"),
    )
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


def tiny_classifier(spatial_dims: int, num_classes: int = 3, stride: int = 2, seed: int = 0) -> CAMClassifier:
    torch.manual_seed(seed)
    return CAMClassifier(spatial_dims, tiny_backbone(spatial_dims, stride=stride), 6, num_classes)
