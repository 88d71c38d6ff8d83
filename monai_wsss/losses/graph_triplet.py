"""The "match" step of Mix-and-Match: triplets from a class-wise connected graph over a batch's patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["GraphTripletLoss", "class_graph_triplets"]


def class_graph_triplets(
    labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Build the class-wise connected graph of Mix-and-Match over patches with class ``labels`` (``(N,)``) and return
    its triplets ``(anchor, positive, negative)`` as index tensors.

    The nodes join the graph in a random order; each new node is linked to a random node of its own class and to a
    random node of another class among the nodes already in the graph, so each class forms a connected tree and the
    classes are connected to each other. A node that joins before any node of its class (or of another class) is
    linked to a random later one instead, so every node has one same-class and one other-class neighbour; its
    triplet is (node, same-class neighbour, other-class neighbour). Nodes whose class has a single member, or batches
    with a single class, give no triplet.

        Zhan, X., Liu, Z., Luo, P., Tang, X., Loy, C. C. (2018) Mix-and-Match Tuning for Self-Supervised Semantic
        Segmentation. AAAI 2018.

    Args:
        labels: class of each node, ``(N,)`` (or ``(N, 1)``) integers.
        generator: random generator (``None``: torch's global one).

    Returns:
        three ``(T,)`` long tensors on ``labels``' device.

    Raises:
        ValueError: ``labels`` is not one value per node.
    """
    labels = labels.reshape(labels.shape[0], -1)
    if labels.shape[1] != 1:
        raise ValueError(f"`labels` must hold one class per node, got shape {tuple(labels.shape)}.")
    lab = labels[:, 0].long().cpu()
    n = lab.numel()
    order = torch.randperm(n, generator=generator)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)

    def pick(candidates: torch.Tensor) -> int:
        return int(candidates[torch.randint(len(candidates), (1,), generator=generator)])

    anchors, positives, negatives = [], [], []
    for i in order.tolist():
        same = torch.nonzero((lab == lab[i]) & (torch.arange(n) != i)).flatten()
        other = torch.nonzero(lab != lab[i]).flatten()
        if len(same) == 0 or len(other) == 0:
            continue
        earlier_same, earlier_other = same[rank[same] < rank[i]], other[rank[other] < rank[i]]
        anchors.append(i)
        positives.append(pick(earlier_same if len(earlier_same) else same))
        negatives.append(pick(earlier_other if len(earlier_other) else other))
    device = labels.device
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    return as_tensor(anchors), as_tensor(positives), as_tensor(negatives)


class GraphTripletLoss(_Loss):
    """
    Triplet loss of Mix-and-Match over a batch of patch features: features are globally average-pooled over their
    spatial axes (input ``BC[HWD]`` or ``BC``), L2-normalised, and every triplet of the class-wise connected graph
    (:py:func:`class_graph_triplets`) contributes ``max(0, |a - p|^2 - |a - n|^2 + margin)`` (squared Euclidean
    distances of unit vectors, in [0, 4]).

        Zhan, X., Liu, Z., Luo, P., Tang, X., Loy, C. C. (2018) Mix-and-Match Tuning for Self-Supervised Semantic
        Segmentation. AAAI 2018.

    Args:
        margin: the hinge margin (the authors' solver uses 2.1 on their feature scale; here distances of unit
            vectors, so a margin above 4 can never be met).
        reduction: {``"mean"``, ``"sum"``, ``"none"``} over the triplets; ``"none"`` returns one value per triplet.
            A batch without a triplet gives 0 (connected to the graph, so ``backward`` works).
        generator: random generator of the graph (``None``: torch's global one, seeded by ``set_determinism``).

    Raises:
        ValueError: ``margin`` < 0; at call: features and labels disagree on the batch size.

    Example::

        >>> loss = GraphTripletLoss(margin=0.5)
        >>> loss(torch.randn(6, 16, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
    """

    def __init__(
        self,
        margin: float = 2.1,
        reduction: LossReduction | str = LossReduction.MEAN,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if margin < 0:
            raise ValueError(f"`margin` must be >= 0, got {margin}.")
        self.margin, self.generator = float(margin), generator

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.shape[0] != labels.shape[0]:
            raise ValueError(f"features and labels differ in batch size: {features.shape[0]} vs {labels.shape[0]}.")
        pooled = features.flatten(2).mean(dim=2) if features.ndim > 2 else features
        emb = F.normalize(pooled, p=2, dim=1)
        a, p, n = class_graph_triplets(labels, self.generator)
        if a.numel() == 0:
            return emb.sum() * 0.0
        d_ap = (emb[a] - emb[p]).pow(2).sum(dim=1)
        d_an = (emb[a] - emb[n]).pow(2).sum(dim=1)
        f = torch.clamp(d_ap - d_an + self.margin, min=0.0)
        if self.reduction == LossReduction.MEAN.value:
            return f.mean()
        if self.reduction == LossReduction.SUM.value:
            return f.sum()
        return f
