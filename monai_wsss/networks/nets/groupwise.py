"""Group-wise semantic mining: a co-attention graph over the class maps of a group of images sharing a class, n-D.

    Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised Semantic
    Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from .cam_classifier import CAMClassifier

__all__ = ["CoAttention", "GraphDropout", "ConvGRUCell", "GroupGraph", "GroupwiseClassifier"]


class CoAttention(nn.Module):
    """
    Co-attention between two graph nodes ``a`` and ``b`` (maps ``(B, C, *s)`` of two images of a group). The message
    to ``a`` from ``b``: 1x1(x1) projections to ``max(1, C // 2)`` channels (``proj_a`` of the receiver,
    ``proj_b`` of the sender), the affinity ``A = proj_a(a)^T proj_b(b)`` over all position pairs ``(S_a, S_b)``,
    a softmax over ``b``'s positions for every position of ``a`` (the reference's softmax of the affinity's
    transpose), the attended map ``b softmax(A)^T`` (shaped like ``a``) and a sigmoid gate (a bias-free 1x1
    convolution to one channel) multiplying it. ``forward(a, b)`` returns the two messages of the edge,
    ``(to a from b, to b from a)``, the second with the roles swapped (as the reference calls it), so the two are
    shaped like ``a`` and ``b`` and identical nodes give identical messages.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: node channels ``C`` (the number of classes when the nodes are class maps).

    Raises:
        ValueError: ``a`` and ``b`` differ in batch or channels.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        inner = max(1, channels // 2)
        self.proj_a = conv(channels, inner, kernel_size=1)
        self.proj_b = conv(channels, inner, kernel_size=1)
        self.gate = conv(channels, 1, kernel_size=1, bias=False)

    def message(self, receiver: torch.Tensor, sender: torch.Tensor) -> torch.Tensor:
        """The gated message to ``receiver`` from ``sender``, shaped like ``receiver``."""
        affinity = torch.bmm(self.proj_a(receiver).flatten(2).transpose(1, 2), self.proj_b(sender).flatten(2))
        attended = torch.bmm(sender.flatten(2), affinity.softmax(2).transpose(1, 2)).view_as(receiver)
        return attended * torch.sigmoid(self.gate(attended))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"`a` and `b` must share batch and channels, got {tuple(a.shape)} and {tuple(b.shape)}.")
        return self.message(a, b), self.message(b, a)


class GraphDropout(nn.Module):
    """
    Graph dropout of the node states (the attention-based dropout layer of Choe and Shim, CVPR 2019, as group-wise
    mining applies it after every node update): attention = channel mean of ``x``; for each sample, with
    probability ``drop_rate`` the selection map is the drop mask ``1[attention < drop_threshold * max attention]``
    (the most discriminative part is hidden), otherwise the importance map ``sigmoid(attention)``; the output is
    ``(x * selection + x) / 2``, so a dropped position is halved and a kept one unchanged. Training only: in eval
    mode the input is returned as is.

    Args:
        drop_rate: probability of the drop mask. Defaults to 0.8.
        drop_threshold: fraction of the maximum attention above which positions are dropped. Defaults to 0.7.

    Raises:
        ValueError: a value outside [0, 1].
    """

    def __init__(self, drop_rate: float = 0.8, drop_threshold: float = 0.7) -> None:
        super().__init__()
        for name, v in (("drop_rate", drop_rate), ("drop_threshold", drop_threshold)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {v}.")
        self.drop_rate, self.drop_threshold = float(drop_rate), float(drop_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        nd = x.ndim - 2
        attention = x.mean(1, keepdim=True)
        peak = attention.flatten(1).max(1)[0].view(-1, 1, *[1] * nd)
        drop_mask = (attention < self.drop_threshold * peak).to(x.dtype)
        use_mask = (torch.rand(x.shape[0], device=x.device) < self.drop_rate).to(x.dtype).view(-1, 1, *[1] * nd)
        selection = use_mask * drop_mask + (1.0 - use_mask) * torch.sigmoid(attention)
        return (x * selection + x) / 2

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, drop_threshold={self.drop_threshold}"


class ConvGRUCell(nn.Module):
    """
    Convolutional GRU cell, n-D (Ballas et al., ICLR 2016): update gate ``z``, reset gate ``r`` and candidate
    ``tanh(conv([x, r * h]))`` from convolutions of the concatenated input and hidden state;
    ``h' = (1 - z) * h + z * candidate``. Group-wise mining updates each node with kernel size 1.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the input (the fused message).
        hidden_channels: channels of the hidden state (the node).
        kernel_size: odd kernel size. Defaults to 1.

    Raises:
        ValueError: an even ``kernel_size``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, hidden_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd, got {kernel_size}.")
        conv = Conv[Conv.CONV, spatial_dims]
        pad = kernel_size // 2
        self.gates = conv(in_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=pad)
        self.candidate = conv(in_channels + hidden_channels, hidden_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        cand = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * cand


class GroupGraph(nn.Module):
    """
    The fully connected graph of group-wise mining over ``group_size`` nodes: ``num_rounds`` rounds of message
    passing, each computing the two messages of every edge (:py:class:`CoAttention`), fusing the ``group_size - 1``
    incoming messages of a node (concatenated in node order) with a 3x3(x3) convolution, updating the node with a
    :py:class:`ConvGRUCell` (kernel 1; input = fused message, hidden = node) and applying :py:class:`GraphDropout`.
    All weights are shared by the nodes, edges and rounds.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: node channels.
        group_size: nodes per group. Defaults to 3.
        num_rounds: message-passing rounds. Defaults to 3.
        drop_rate, drop_threshold: see :py:class:`GraphDropout`.

    Raises:
        ValueError: ``group_size`` < 2 or ``num_rounds`` < 1; in ``forward``, a batch that is not a multiple of
            ``group_size``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        group_size: int = 3,
        num_rounds: int = 3,
        drop_rate: float = 0.8,
        drop_threshold: float = 0.7,
    ) -> None:
        super().__init__()
        if group_size < 2 or num_rounds < 1:
            raise ValueError(f"`group_size` must be >= 2 and `num_rounds` >= 1, got {group_size}, {num_rounds}.")
        self.group_size, self.num_rounds = int(group_size), int(num_rounds)
        self.co_attention = CoAttention(spatial_dims, channels)
        self.fusion = Conv[Conv.CONV, spatial_dims](channels * (group_size - 1), channels, kernel_size=3, padding=1)
        self.update = ConvGRUCell(spatial_dims, channels, channels, kernel_size=1)
        self.dropout = GraphDropout(drop_rate, drop_threshold)

    def messages(self, nodes: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """``incoming[i]``: the messages to node ``i`` from every other node, in node order."""
        n = len(nodes)
        incoming: list[list[torch.Tensor]] = [[] for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                to_i, to_j = self.co_attention(nodes[i], nodes[j])
                incoming[i].append((j, to_i))
                incoming[j].append((i, to_j))
        return [[m for _, m in sorted(msgs, key=lambda t: t[0])] for msgs in incoming]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(G * group_size, C, *s)``, the groups contiguous; returns the node states after the last round."""
        if x.shape[0] % self.group_size:
            raise ValueError(f"the batch ({x.shape[0]}) must be a multiple of `group_size` = {self.group_size}.")
        groups = x.view(-1, self.group_size, *x.shape[1:])
        nodes = [groups[:, i] for i in range(self.group_size)]
        for _ in range(self.num_rounds):
            incoming = self.messages(nodes)
            nodes = [
                self.dropout(self.update(self.fusion(torch.cat(incoming[i], 1)), nodes[i]))
                for i in range(self.group_size)
            ]
        return torch.stack(nodes, 1).view_as(x)


class GroupwiseClassifier(nn.Module):
    """
    The group-wise mining network on the library's CAM classifier: the class maps of every image
    (:py:meth:`~monai_wsss.networks.CAMClassifier.class_maps`, ``(B, K, *s)``) are the graph nodes, a
    :py:class:`GroupGraph` passes messages between the images of each group, and both the class maps before
    (``pre``) and after (``post``) the graph are pooled to logits (global average). ``forward`` returns
    ``{"pre": (B, K), "post": (B, K), "pre_maps": (B, K, *s), "post_maps": (B, K, *s)}`` (the loss is
    :py:class:`~monai_wsss.losses.GroupwiseSoftMarginLoss`; the maps feed the online accumulation,
    :py:class:`~monai_wsss.handlers.OnlineMapAccumulator`). A batch is ``G`` groups of ``group_size`` images, each
    group contiguous (one group per batch in the paper: ``DataLoader(..., batch_sampler=GroupSampler(...))``).

    The reference trains VGG16 (ImageNet weights, dilated last block, three extra 3x3 convolutions and a 1x1 to the
    20 VOC classes); no ImageNet weights are available offline here, and any MONAI trunk fits through
    :py:class:`~monai_wsss.networks.CAMClassifier` (e.g. :py:func:`~monai_wsss.networks.resnet_cam_classifier`).

        Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised
        Semantic Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007

    Args:
        classifier: the CAM classifier (its ``class_maps`` are the nodes).
        group_size: images per group. Defaults to 3.
        num_rounds: message-passing rounds. Defaults to 3.
        drop_rate: graph dropout rate. Defaults to 0.8.
        drop_threshold: graph dropout threshold (fraction of the max attention). Defaults to 0.7.

    Example::

        >>> net = GroupwiseClassifier(resnet_cam_classifier(2, 1, num_classes=2, model_name="resnet10"))
        >>> {k: tuple(v.shape) for k, v in net(torch.rand(3, 1, 64, 64)).items()}["post"]
        (3, 2)
    """

    def __init__(
        self,
        classifier: CAMClassifier,
        group_size: int = 3,
        num_rounds: int = 3,
        drop_rate: float = 0.8,
        drop_threshold: float = 0.7,
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.group_size = int(group_size)
        self.graph = GroupGraph(
            classifier.spatial_dims, classifier.num_classes, group_size, num_rounds, drop_rate, drop_threshold
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pre_maps = self.classifier.class_maps(x)
        post_maps = self.graph(pre_maps)
        return {
            "pre": pre_maps.flatten(2).mean(2),
            "post": post_maps.flatten(2).mean(2),
            "pre_maps": pre_maps,
            "post_maps": post_maps,
        }

    def parameter_groups(self, learning_rate: float, new_layer_multiplier: float = 10.0) -> list[dict]:
        """
        Optimiser parameter groups: the classifier at ``learning_rate``, the graph (the new layers) at
        ``new_layer_multiplier`` times it (the reference's x10; it also doubles the rate of biases, not done here).
        """
        return [
            {"params": list(self.classifier.parameters()), "lr": learning_rate},
            {"params": list(self.graph.parameters()), "lr": learning_rate * new_layer_multiplier},
        ]
