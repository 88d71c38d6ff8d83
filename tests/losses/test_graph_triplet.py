"""GraphTripletLoss / class_graph_triplets: graph links, hand-computed loss, zero once the margin is met."""

from __future__ import annotations

import math

import pytest
import torch

from monai_wsss.losses import GraphTripletLoss, class_graph_triplets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_node_links_one_same_and_one_other_class_node(seed):
    labels = torch.tensor([0, 1, 1, 2, 0, 2, 2, 1, 0, 0])
    a, p, n = class_graph_triplets(labels, torch.Generator().manual_seed(seed))
    assert sorted(a.tolist()) == list(range(10))
    assert torch.all(labels[a] == labels[p]) and torch.all(a != p)
    assert torch.all(labels[a] != labels[n])


def test_same_class_edges_connect_each_class():
    labels = torch.tensor([0] * 5 + [1] * 4)
    a, p, _ = class_graph_triplets(labels, torch.Generator().manual_seed(4))
    for c in (0, 1):
        nodes = set(torch.nonzero(labels == c).flatten().tolist())
        seen, frontier = set(), [min(nodes)]
        edges = [(int(i), int(j)) for i, j in zip(a, p, strict=True) if int(labels[i]) == c]
        while frontier:
            v = frontier.pop()
            seen.add(v)
            frontier += [j for i, j in edges if i == v and j not in seen] + [
                i for i, j in edges if j == v and i not in seen
            ]
        assert seen == nodes


def test_singleton_classes_give_no_triplet():
    a, _, _ = class_graph_triplets(torch.tensor([0, 1, 1]))
    assert a.tolist() in ([1, 2], [2, 1])
    assert class_graph_triplets(torch.tensor([3, 3, 3]))[0].numel() == 0


def test_loss_equals_hand_computation():
    # two classes of two 2-d features each: every triplet is (a, its class mate, a node of the other class)
    f = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = GraphTripletLoss(margin=2.1, reduction="none", generator=torch.Generator().manual_seed(0))
    values = loss(f, labels)
    a, p, n = class_graph_triplets(labels, torch.Generator().manual_seed(0))
    e = [(1.0, 0.0), (0.0, 1.0), (1 / math.sqrt(2), 1 / math.sqrt(2)), (-1.0, 0.0)]

    def d2(i, j):
        return (e[i][0] - e[j][0]) ** 2 + (e[i][1] - e[j][1]) ** 2

    expected = [max(0.0, d2(i, j) - d2(i, k) + 2.1) for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True)]
    assert values.tolist() == pytest.approx(expected, abs=1e-6)
    # node 0 (1, 0) with mate 1 (0, 1) and other-class node 3 (-1, 0): 2 - 4 + 2.1 = 0.1
    mean = GraphTripletLoss(margin=2.1, generator=torch.Generator().manual_seed(0))(f, labels)
    assert float(mean) == pytest.approx(sum(expected) / 4, abs=1e-6)


def test_zero_once_margin_is_met_and_pooling_is_spatial():
    # classes along opposite directions: d(a,p)=0, d(a,n)=4 >= margin
    f = torch.zeros(4, 2, 3, 3)
    f[:2, 0] = torch.rand(2, 3, 3) + 0.5
    f[2:, 0] = -(torch.rand(2, 3, 3) + 0.5)
    labels = torch.tensor([[0], [0], [1], [1]])
    assert float(GraphTripletLoss(margin=3.9)(f, labels)) == 0.0
    assert float(GraphTripletLoss(margin=4.5)(f, labels)) == pytest.approx(0.5, abs=1e-6)


def test_loss_falls_when_features_are_optimised():
    torch.manual_seed(0)
    x = torch.randn(12, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2] * 4)
    loss_fn = GraphTripletLoss(margin=1.0)
    opt = torch.optim.SGD([x], lr=0.5)
    first = None
    for _ in range(60):
        loss = loss_fn(x, labels)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss_fn(x, labels)) < 0.2 * first


def test_bad_input_raises():
    with pytest.raises(ValueError, match="margin"):
        GraphTripletLoss(margin=-1)
    with pytest.raises(ValueError, match="batch size"):
        GraphTripletLoss()(torch.rand(3, 4), torch.tensor([0, 1]))
