from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.data import DataLoader, Dataset
from monai.engines.utils import IterationEvents
from monai.handlers import StatsHandler
from monai.transforms import Compose, EnsureTyped

from monai_wsss.data import TwoStreamLoader
from monai_wsss.engines import UNLABELED_IMAGE, PrepareLabeledUnlabeledBatch, SemiSupervisedTrainer
from monai_wsss.handlers import ConsistencyWeightScheduler
from monai_wsss.losses import DualTaskConsistencyLoss
from monai_wsss.networks import DualTaskNet
from monai_wsss.transforms import SignedDistanceMapd

N_L, N_U = 2, 3  # samples per stream and iteration


def _id_items(ids):
    """Each sample's image and label are filled with its id: labelled ids 1..4, unlabelled ids 101..106."""
    return [
        {"image": torch.full((1, 16, 16), float(i)), "label": torch.full((1, 16, 16), float(i)), "id": i} for i in ids
    ]


def _id_loader(epoch_length=3, unlabeled=True):
    labeled = DataLoader(Dataset(_id_items([1, 2, 3, 4])), batch_size=N_L, shuffle=True)
    unlab = DataLoader(Dataset(_id_items(range(101, 107))), batch_size=N_U, shuffle=True) if unlabeled else None
    return TwoStreamLoader(labeled, unlab, epoch_length=epoch_length)


class SpyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.conv(x)


class SpyLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls: list[dict] = []

    def forward(self, pred, target, num_labeled, unsup_weight):
        loss = (pred**2).mean()
        aux = pred[:num_labeled].mean()
        self.calls.append(
            {
                "batch": len(pred),
                "num_labeled": num_labeled,
                "target": target.detach().clone(),
                "unsup_weight": unsup_weight,
                "loss": loss.detach().clone(),
                "aux": aux.detach().clone(),
            }
        )
        return {"loss": loss, "aux": aux}


def _trainer(loader, max_epochs=2, handlers=None, unsup_weight=0.0, net=None, loss=None):
    torch.manual_seed(0)
    net = net or SpyNet()
    loss = loss or SpyLoss()
    trainer = SemiSupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-6),  # ids up to 106: keep the spy's loss tame
        loss_function=loss,
        train_handlers=handlers,
        unsup_weight=unsup_weight,
    )
    return trainer, net, loss


def test_batches_targets_and_single_forward():
    trainer, net, loss = _trainer(_id_loader())
    stages = (
        IterationEvents.FORWARD_COMPLETED,
        IterationEvents.LOSS_COMPLETED,
        IterationEvents.BACKWARD_COMPLETED,
        IterationEvents.MODEL_COMPLETED,
    )
    events = dict.fromkeys(stages, 0)
    for e in stages:
        trainer.add_event_handler(e, lambda engine, e=e: events.__setitem__(e, events[e] + 1))
    trainer.run()
    assert trainer.state.iteration == 6
    assert len(net.inputs) == 6  # one forward pass per iteration, over the joint batch
    assert events == dict.fromkeys(stages, 6)
    assert len(loss.calls) == 6
    for x, call in zip(net.inputs, loss.calls, strict=True):
        assert call["batch"] == N_L + N_U and call["num_labeled"] == N_L
        ids = x[:, 0, 0, 0].tolist()
        assert all(1 <= i <= 4 for i in ids[:N_L])  # labelled first
        assert all(101 <= i <= 106 for i in ids[N_L:])
        target = call["target"]
        assert target.shape == (N_L, 1, 16, 16)
        assert set(target.unique().tolist()) <= {1.0, 2.0, 3.0, 4.0}  # never an unlabelled sample's label
        torch.testing.assert_close(target, x[:N_L])  # targets paired with the labelled images, in order
    # every labelled and unlabelled sample was seen
    seen = {int(i) for x in net.inputs for i in x[:, 0, 0, 0].tolist()}
    assert seen == {1, 2, 3, 4, *range(101, 107)}


def test_state_output_holds_loss_terms():
    trainer, net, loss = _trainer(_id_loader(), max_epochs=1)
    trainer.run()
    out = trainer.state.output
    assert {"image", "label", UNLABELED_IMAGE, "pred", "loss", "aux"} <= set(out)
    assert out["image"].shape == (N_L, 1, 16, 16) and out[UNLABELED_IMAGE].shape == (N_U, 1, 16, 16)
    assert out["pred"].shape == (N_L + N_U, 1, 16, 16)
    assert not out["aux"].requires_grad
    torch.testing.assert_close(out["aux"], loss.calls[-1]["aux"])
    torch.testing.assert_close(out["loss"].detach(), loss.calls[-1]["loss"])


def test_unsup_weight_from_state():
    trainer, _, loss = _trainer(_id_loader(), unsup_weight=0.25)
    trainer.run()
    assert [c["unsup_weight"] for c in loss.calls] == [0.25] * 6

    sch = ConsistencyWeightScheduler(max_weight=1.0, rampup_iterations=4, step_iterations=1)
    trainer, _, loss = _trainer(_id_loader(), handlers=[sch])
    trainer.run()
    expected = [math.exp(-5 * (1 - min(s, 4) / 4) ** 2) for s in range(6)]
    assert [c["unsup_weight"] for c in loss.calls] == pytest.approx(expected)
    assert trainer.state.unsup_weight == pytest.approx(1.0)


def test_without_unlabelled_stream():
    trainer, net, loss = _trainer(_id_loader(unlabeled=False), max_epochs=1)
    trainer.run()
    assert [c["batch"] for c in loss.calls] == [N_L] * 3
    assert [c["num_labeled"] for c in loss.calls] == [N_L] * 3
    assert trainer.state.output[UNLABELED_IMAGE].shape == (0, 1, 16, 16)


def test_prepare_batch_several_label_keys():
    batch = {
        "image": torch.zeros(2, 1, 4, 4),
        "label": torch.ones(2, 1, 4, 4),
        "label_sdf": torch.full((2, 1, 4, 4), -0.5),
        "image_u": torch.full((3, 1, 4, 4), 7.0),
    }
    x, targets, x_u = PrepareLabeledUnlabeledBatch(label_keys=("label", "label_sdf"))(batch)
    assert isinstance(targets, tuple) and len(targets) == 2
    assert targets[0].eq(1).all() and targets[1].eq(-0.5).all()
    assert x.shape == (2, 1, 4, 4) and x_u.shape == (3, 1, 4, 4) and x_u.eq(7).all()


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_stats_handler_works():
    logger = logging.getLogger("semi_supervised_test_stats")
    logger.setLevel(logging.INFO)
    capture = _ListHandler()
    logger.addHandler(capture)
    stats = StatsHandler(
        name="semi_supervised_test_stats",
        output_transform=lambda out: {"loss": out["loss"], "aux": out["aux"]},
        iteration_log=True,
        epoch_log=False,
    )
    trainer, _, loss = _trainer(_id_loader(), handlers=[stats])
    try:
        trainer.run()
    finally:
        logger.removeHandler(capture)
    lines = [m for m in capture.messages if "aux" in m]
    assert len(lines) == 6
    assert f"aux: {loss.calls[-1]['aux'].item():.4f}" in lines[-1]


def test_accumulation_steps_rejected():
    net = SpyNet()
    with pytest.raises(ValueError, match="accumulation_steps"):
        SemiSupervisedTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=_id_loader(),
            network=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            loss_function=SpyLoss(),
            accumulation_steps=2,
        )


def _square_items(n, seed):
    """Bright squares of random size and place on a noisy dark background."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        label = np.zeros((1, 16, 16), np.float32)
        s = int(rng.integers(4, 9))
        r, c = rng.integers(1, 16 - s, size=2)
        label[0, r : r + s, c : c + s] = 1
        image = (label * 0.8 + 0.1 + rng.normal(0, 0.05, label.shape)).astype(np.float32)
        items.append({"image": image, "label": label})
    return items


def test_dtc_loss_falls_on_synthetic_squares():
    torch.manual_seed(0)
    labelled_tf = Compose([SignedDistanceMapd(keys="label"), EnsureTyped(keys=["image", "label", "label_sdf"])])
    labeled = DataLoader(Dataset(_square_items(8, 0), transform=labelled_tf), batch_size=2, shuffle=True)
    unlabeled_items = [{"image": d["image"]} for d in _square_items(8, 1)]
    unlabeled = DataLoader(Dataset(unlabeled_items, transform=EnsureTyped(keys="image")), batch_size=2, shuffle=True)
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    net = DualTaskNet(backbone, spatial_dims=2, feature_channels=8)
    trainer = SemiSupervisedTrainer(
        device="cpu",
        max_epochs=3,
        train_data_loader=TwoStreamLoader(labeled, unlabeled, epoch_length=10),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
        loss_function=DualTaskConsistencyLoss(),
        prepare_batch=PrepareLabeledUnlabeledBatch(label_keys=("label", "label_sdf")),
        train_handlers=[ConsistencyWeightScheduler(rampup_iterations=30, step_iterations=1)],
    )
    terms: list[dict] = []
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED,
        lambda e: terms.append({k: e.state.output[k].detach().item() for k in ("loss", "loss_dice", "loss_sdf")}),
    )
    trainer.run()
    assert len(terms) == 30
    out = trainer.state.output
    assert {"loss_dice", "loss_sdf", "loss_consistency"} <= set(out)
    assert out["pred"][0].shape == out["pred"][1].shape == (4, 1, 16, 16)
    assert not out["loss_consistency"].requires_grad
    first = np.mean([t["loss"] for t in terms[:5]])
    last = np.mean([t["loss"] for t in terms[-5:]])
    assert last < 0.6 * first, (first, last)
    assert np.mean([t["loss_dice"] for t in terms[-5:]]) < 0.6 * np.mean([t["loss_dice"] for t in terms[:5]])
