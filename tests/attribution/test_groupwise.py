"""Group-wise semantic mining: co-attention, graph dropout, the loss, online map accumulation, training on MONAI's
SupervisedTrainer with one group per batch, and the GroupwiseSeeds seed method."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer

from monai_wsss.attribution import GroupwiseSeeds, SeedMethod
from monai_wsss.data import GroupSampler
from monai_wsss.handlers import OnlineMapAccumulator, image_key, load_accumulated_maps
from monai_wsss.losses import GroupwiseSoftMarginLoss
from monai_wsss.networks import CoAttention, GraphDropout, GroupGraph, GroupwiseClassifier, resnet_cam_classifier


def _square_images(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Even items: a bright square somewhere (class 0); odd items: noise only (negative)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, size, size, generator=g)
    tags = torch.zeros(n, 1)
    for i in range(0, n, 2):
        r, c = torch.randint(0, size - 24, (2,), generator=g).tolist()
        x[i, 0, r : r + 24, c : c + 24] += 0.9
        tags[i, 0] = 1
    return x, tags


@pytest.mark.parametrize("shape_a,shape_b", [((2, 4, 5, 6), (2, 4, 5, 6)), ((2, 4, 5, 6), (2, 4, 3, 2)),
                                             ((2, 3, 2, 3, 4), (2, 3, 4, 3, 2))])
def test_co_attention_returns_a_message_shaped_like_each_node(shape_a, shape_b):
    co = CoAttention(len(shape_a) - 2, shape_a[1])
    a, b = torch.randn(shape_a), torch.randn(shape_b)
    to_a, to_b = co(a, b)
    assert to_a.shape == a.shape and to_b.shape == b.shape
    back_b, back_a = co(b, a)  # the other argument order keeps the shapes
    assert back_a.shape == a.shape and back_b.shape == b.shape


def test_co_attention_against_a_hand_computation():
    co = CoAttention(1, 2)  # 1-D nodes, 2 channels, projections to 1 channel
    with torch.no_grad():
        co.proj_a.weight.copy_(torch.tensor([[[1.0], [0.0]]]))
        co.proj_b.weight.copy_(torch.tensor([[[2.0], [0.0]]]))
        co.proj_a.bias.zero_()
        co.proj_b.bias.zero_()
        co.gate.weight.zero_()  # gate = sigmoid(0) = 1/2
    a = torch.tensor([[[1.0, 0.0], [3.0, -1.0]]])  # (1, C=2, S=2)
    b = torch.tensor([[[0.0, 1.0], [5.0, 7.0]]])
    to_a, to_b = co(a, b)
    # affinity A[s, t] = a0[s] * 2 * b0[t] = [[0, 2], [0, 0]]
    w = torch.tensor([math.exp(0) / (1 + math.exp(2)), math.exp(2) / (1 + math.exp(2))])  # a position 0 attends b
    expect_a = torch.stack([torch.stack([b[0, c] @ w, b[0, c].mean()]) for c in range(2)]) / 2
    assert torch.allclose(to_a[0], expect_a, atol=1e-6)
    # the other direction: affinity proj_a(b)^T proj_b(a) = b0[s] * 2 * a0[t] = [[0, 0], [2, 0]]
    v = torch.tensor([math.exp(2) / (1 + math.exp(2)), 1 / (1 + math.exp(2))])
    expect_b = torch.stack([torch.stack([a[0, c].mean(), a[0, c] @ v]) for c in range(2)]) / 2
    assert torch.allclose(to_b[0], expect_b, atol=1e-6)


def test_a_group_of_identical_images_gives_identical_messages():
    torch.manual_seed(0)
    graph = GroupGraph(2, channels=3, group_size=3).eval()
    node = torch.randn(1, 3, 4, 5)
    incoming = graph.messages([node.clone(), node.clone(), node.clone()])
    flat = [m for msgs in incoming for m in msgs]
    assert len(flat) == 6 and all(torch.equal(flat[0], m) for m in flat)
    net = GroupwiseClassifier(resnet_cam_classifier(2, 1, 2, model_name="resnet10", output_stride=16)).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 64, 64).expand(3, -1, -1, -1))
    assert torch.equal(out["post_maps"][0], out["post_maps"][1]) and torch.equal(out["post"][1], out["post"][2])
    different = torch.randn(3, 3, 4, 5)
    incoming = graph.messages(list(different[:, None]))
    assert not torch.allclose(incoming[0][0], incoming[1][0])


def _attention_case(n: int) -> torch.Tensor:
    """``n`` samples of 2 channels on 1x4: channel mean [0.1, 0.5, 0.8, 1.0] (threshold 0.7 of 1.0 = 0.7)."""
    x = torch.tensor([[0.0, 0.4, 0.6, 1.0], [0.2, 0.6, 1.0, 1.0]])[None, :, None]  # (1, 2, 1, 4)
    return x.expand(n, -1, -1, -1).clone()


def test_graph_dropout_drops_only_above_the_threshold():
    x = _attention_case(4)
    dropped = GraphDropout(drop_rate=1.0, drop_threshold=0.7).train()(x)
    # mean 0.1 and 0.5 < 0.7: kept as is; 0.8 and 1.0 >= 0.7: halved
    assert torch.equal(dropped[..., :2], x[..., :2]) and torch.equal(dropped[..., 2:], x[..., 2:] / 2)
    importance = GraphDropout(drop_rate=0.0).train()(x)
    att = torch.sigmoid(x.mean(1, keepdim=True))
    assert torch.allclose(importance, (x * att + x) / 2)
    assert torch.equal(GraphDropout(drop_rate=1.0).eval()(x), x)  # training only


def test_graph_dropout_uses_the_drop_mask_at_the_configured_rate():
    torch.manual_seed(0)
    x = _attention_case(4000)
    out = GraphDropout(drop_rate=0.8, drop_threshold=0.7).train()(x)
    used_mask = torch.isclose(out[:, 1, 0, 0], x[:, 1, 0, 0])  # below the threshold: unchanged by the mask
    assert abs(float(used_mask.float().mean()) - 0.8) < 0.03
    # where the importance map was used instead, no position is exactly kept
    assert torch.allclose(out[~used_mask][:, 1, 0, 0], torch.tensor(0.2 * (1 + 1 / (1 + math.exp(-0.1))) / 2))


def test_loss_is_the_reference_sum_over_six():
    torch.manual_seed(0)
    pred = {"pre": torch.randn(3, 4), "post": torch.randn(3, 4)}
    y = torch.randint(0, 2, (3, 4)).float()
    pre = sum(F.multilabel_soft_margin_loss(pred["pre"][i : i + 1], y[i : i + 1]) for i in range(3))
    post = sum(F.multilabel_soft_margin_loss(pred["post"][i : i + 1], y[i : i + 1]) for i in range(3))
    assert torch.allclose(GroupwiseSoftMarginLoss()(pred, y), (0.4 * pre + post) / 6)
    terms = GroupwiseSoftMarginLoss(dict_output=True)(pred, y)
    assert set(terms) == {"loss", "loss_pre", "loss_post"}
    with pytest.raises(ValueError, match="'pre' and 'post'"):
        GroupwiseSoftMarginLoss()(pred["post"], y)


def _output(images, tags, maps, post):
    return {"image": images, "label": tags, "pred": {"pre_maps": maps, "post_maps": maps, "post": post}}


def test_accumulation_keeps_the_max_from_the_second_epoch_where_the_class_is_likely():
    images = torch.rand(3, 1, 2, 2)
    tags = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    acc = OnlineMapAccumulator(group_size=3, prob_threshold=0.1, start_epoch=2)
    first = torch.zeros(3, 2, 2, 2)
    first[:, 0] = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    acc.update(_output(images, tags, first, torch.full((3, 2), 5.0)), epoch=1, last_epoch=False)
    assert acc.maps == {}  # the first epoch never updates
    acc.update(_output(images, tags, first, torch.full((3, 2), 5.0)), epoch=2, last_epoch=False)
    key = image_key(images[0])
    assert list(acc.maps) == [key]  # the anchor only
    assert torch.equal(acc.maps[key][0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # divided by its max
    assert acc.present[key].tolist() == [True, False]  # class 1 is not tagged
    second = torch.zeros(3, 2, 2, 2)
    second[:, 0] = torch.tensor([[-2.0, 1.0], [0.5, 0.0]])  # rectified, /1 -> [[0, 1], [0.5, 0]]
    acc.update(_output(images, tags, second, torch.full((3, 2), 5.0)), epoch=3, last_epoch=False)
    assert torch.allclose(acc.maps[key][0], torch.tensor([[1.0, 1.0], [0.5, 0.0]]))
    third = torch.ones(3, 2, 2, 2)
    acc.update(_output(images, tags, third, torch.full((3, 2), -5.0)), epoch=4, last_epoch=True)  # prob 0.007
    assert torch.allclose(acc.maps[key][0], torch.tensor([[1.0, 1.0], [0.5, 0.0]]))
    other = torch.rand(3, 1, 2, 2)
    acc.update(_output(other, tags, third, torch.full((3, 2), -5.0)), epoch=4, last_epoch=True)
    assert torch.equal(acc.maps[image_key(other[0])][0], torch.ones(2, 2))  # last epoch: a missing class is stored


def test_training_on_groups_lowers_the_loss_and_feeds_the_seeds(tmp_path):
    torch.manual_seed(0)
    x, tags = _square_images(12)
    items = [{"image": x[i], "label": tags[i], "class_labels": tags[i].tolist()} for i in range(12)]
    loader = DataLoader(Dataset(items), batch_sampler=GroupSampler(items, seed=0))
    net = GroupwiseClassifier(resnet_cam_classifier(2, 1, 1, model_name="resnet10", output_stride=16))
    acc = OnlineMapAccumulator(save_path=str(tmp_path / "maps.pt"), start_epoch=1)
    losses = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=4,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.Adam(net.parameter_groups(1e-3, 10.0)),
        loss_function=GroupwiseSoftMarginLoss(),
        train_handlers=[acc],
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    assert sum(losses[-12:]) < 0.5 * sum(losses[:12])  # last epoch vs first
    saved = load_accumulated_maps(str(tmp_path / "maps.pt"))
    positives = [i for i in range(12) if tags[i, 0] > 0]
    assert set(saved["maps"]) == {image_key(x[i]) for i in positives}  # every positive anchored a group
    seeds = GroupwiseSeeds(net, maps=str(tmp_path / "maps.pt"))
    assert isinstance(seeds, SeedMethod)
    maps = seeds(x, tags)
    assert maps.shape == (12, 1, 64, 64) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert torch.equal(maps[1::2], torch.zeros_like(maps[1::2]))  # negatives: zero
    assert seeds.info == {"groupwise_accumulated": 6, "groupwise_computed": 0}
    fresh = _square_images(4, seed=5)
    computed = GroupwiseSeeds(net, maps=saved)(*fresh)  # images never seen: grouped within the call
    assert computed.shape == (4, 1, 64, 64) and float(computed[0].max()) > 0.99 and float(computed[1].max()) == 0


def test_seeds_need_the_trained_files(tmp_path):
    net = GroupwiseClassifier(resnet_cam_classifier(2, 1, 1, model_name="resnet10"))
    seeds = GroupwiseSeeds(net, checkpoint=str(tmp_path / "model.pt"))  # building it reads nothing
    with pytest.raises(FileNotFoundError, match="model.pt: trained weights not found"):
        seeds(torch.rand(1, 1, 64, 64), torch.ones(1, 1))
    with pytest.raises(FileNotFoundError, match="accumulated group-wise maps not found"):
        GroupwiseSeeds(net, maps=str(tmp_path / "maps.pt"))(torch.rand(1, 1, 64, 64), torch.ones(1, 1))
    assert os.listdir(tmp_path) == []


def test_graph_maps_picks_the_maps_before_or_after_the_graph():
    torch.manual_seed(0)
    x, tags = _square_images(6)
    net = GroupwiseClassifier(resnet_cam_classifier(2, 1, 1, model_name="resnet10", output_stride=16))
    pre, post, mean = (GroupwiseSeeds(net, graph_maps=w).group_maps(x, tags) for w in ("pre", "post", "mean"))
    assert not torch.allclose(pre, post)  # the graph changes the maps
    torch.testing.assert_close(mean, (pre + post) / 2)
    with pytest.raises(ValueError, match="graph_maps"):
        GroupwiseSeeds(net, graph_maps="both")
