"""Multi-label classifier whose class activation map is exactly its class score map (the CAM recipe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.nets import ResNetFeatures

from ...compat import unstride_resnet_block

__all__ = ["CAMClassifier", "resnet_cam_classifier"]

_RESNET_LAST_CHANNELS = {
    "resnet10": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnet200": 2048,
}


class CAMClassifier(nn.Module):
    """
    Multi-label classifier for weakly supervised segmentation (the CAM / AdvCAM recipe): any MONAI backbone that
    returns a feature map, then a bias-free 1x1(x1) convolution to one score map per class (the *class maps*), and
    logits = global average pool of the class maps. Because the pooling is linear and the classifier has no bias,
    ``logits_c = GAP(w_c^T f) = w_c^T GAP(f)`` and the class activation map of class ``c`` is exactly the class map
    ``w_c^T f`` (ReLU it for a CAM); Grad-CAM on ``feature`` gives the same map up to the constant ``1 / |spatial|``.

        Zhou, B. et al. (2016) Learning Deep Features for Discriminative Localization. CVPR 2016,
        https://arxiv.org/abs/1512.04150

    Train it with a multi-label soft-margin loss on the multi-hot image-level labels, e.g.
    ``torch.nn.MultiLabelSoftMarginLoss()(model(x), y.float())`` (``y``: ``(B, num_classes)`` in {0, 1});
    a background class is not modelled: an image with no positive class is a valid all-negative example.

    Named layers for hooks (``monai.visualize`` / :py:mod:`monai_wsss.attribution.cam`): ``"feature"`` (the selected
    backbone feature map, an ``nn.Identity``) and ``"classifier"`` (the 1x1 convolution, i.e. the class maps).

    Args:
        spatial_dims: 2 or 3.
        backbone: a module mapping ``(B, in_channels, *spatial)`` to a feature map ``(B, feature_channels, *s)`` or
            to a list/tuple of feature maps (e.g. ``monai.networks.nets.ResNetFeatures``).
        feature_channels: channels of the selected feature map.
        num_classes: number of foreground classes (no background).
        feature_index: which element to use when the backbone returns a list/tuple. Defaults to -1 (last stage).

    Example::

        >>> from monai.networks.nets import ResNetFeatures

from ...compat import unstride_resnet_block
        >>> net = CAMClassifier(2, ResNetFeatures("resnet10", pretrained=False, spatial_dims=2), 512, num_classes=3)
        >>> net(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self, spatial_dims: int, backbone: nn.Module, feature_channels: int, num_classes: int, feature_index: int = -1
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"`spatial_dims` must be 1, 2 or 3, got {spatial_dims}.")
        if num_classes < 1 or feature_channels < 1:
            raise ValueError(
                f"`num_classes` and `feature_channels` must be positive, got {num_classes}, {feature_channels}."
            )
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.feature_index = feature_index
        self.backbone = backbone
        self.feature = nn.Identity()
        self.classifier = Conv[Conv.CONV, spatial_dims](feature_channels, num_classes, kernel_size=1, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone feature map ``f`` (through the ``feature`` identity layer, so hooks see it)."""
        out = self.backbone(x)
        if isinstance(out, (list, tuple)):
            out = out[self.feature_index]
        return self.feature(out)

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Class maps ``w_c^T f`` of shape ``(B, num_classes, *s)`` (un-rectified CAMs)."""
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_maps(x).flatten(2).mean(2)


def resnet_cam_classifier(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    model_name: str = "resnet18",
    pretrained: bool = False,
    feature_index: int = -1,
    output_stride: int = 32,
) -> CAMClassifier:
    """
    :py:class:`CAMClassifier` on ``monai.networks.nets.ResNetFeatures`` (MedicalNet ResNet trunk, stride 32 at the
    last stage). ``feature_index`` picks the stage (``-1``: layer4, ``-2``: layer3 with half the channels).
    ``pretrained=True`` downloads MedicalNet weights (3D, one input channel only). ``output_stride=16`` removes the
    stride of the last stage (its first block and shortcut), as the AdvCAM / IRN classifiers do (no dilation).
    """
    if model_name not in _RESNET_LAST_CHANNELS:
        raise ValueError(f"`model_name` must be one of {sorted(_RESNET_LAST_CHANNELS)}, got {model_name!r}.")
    if output_stride not in (16, 32):
        raise ValueError(f"`output_stride` must be 16 or 32, got {output_stride}.")
    backbone = ResNetFeatures(model_name, pretrained=pretrained, spatial_dims=spatial_dims, in_channels=in_channels)
    if output_stride == 16:
        unstride_resnet_block(backbone.layer4[0], spatial_dims)
    stages: Sequence[int] = (
        [64, 64, 128, 256, 512] if _RESNET_LAST_CHANNELS[model_name] == 512 else [64, 256, 512, 1024, 2048]
    )
    return CAMClassifier(spatial_dims, backbone, stages[feature_index], num_classes, feature_index=feature_index)
