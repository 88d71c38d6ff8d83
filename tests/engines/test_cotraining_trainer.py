"""Tests of ``CoTrainingTrainer``: per-member labelled subsets, phase events, loss composition, ramps, learning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.networks.nets import UNet
from monai.utils import set_determinism

from monai_wsss.data import MultiStreamLoader
from monai_wsss.engines import CoTrainingEvents, CoTrainingTrainer, PrepareEnsembleBatch
from monai_wsss.handlers import ConsistencyWeightScheduler
from monai_wsss.losses import segmentation_cross_entropy
from monai_wsss.losses.adversarial import FGSM, VAT
from monai_wsss.networks import SegmentationEnsemble

SIZE = 8
LOSS_KEYS = ("loss_sup", "loss_cot", "loss_adv", "loss")


def _const_batches(value: float, label: int | None, n_batches: int = 2, b: int = 2) -> list[dict]:
    """Batches of constant images (and a constant label map when ``label`` is given)."""
    out = []
    for k in range(n_batches):
        batch = {"image": torch.full((b, 1, SIZE, SIZE), value + 0.01 * k)}
        if label is not None:
            batch["label"] = torch.full((b, 1, SIZE, SIZE), label)
        out.append(batch)
    return out


def _random_batches(seed: int, n_batches: int, b: int, num_classes: int, labelled: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        batch = {"image": 0.2 + 0.6 * torch.rand(b, 1, SIZE, SIZE, generator=g)}
        if labelled:
            batch["label"] = torch.randint(0, num_classes, (b, 1, SIZE, SIZE), generator=g)
        out.append(batch)
    return out


def _member(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, num_classes, 1))


def _trainer(streams: dict, epochs: int = 1, length: int = 2, num_models: int = 2, num_classes: int = 3, **kwargs):
    torch.manual_seed(0)
    net = SegmentationEnsemble(_member(num_classes), num_models=num_models)
    kwargs.setdefault("fgsm", FGSM(eps=0.05))
    kwargs.setdefault("vat", VAT(xi=1e-6, eps=0.05))
    trainer = CoTrainingTrainer(
        device="cpu",
        max_epochs=epochs,
        epoch_length=length,
        train_data_loader=MultiStreamLoader(streams, length),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3),
        **kwargs,
    )
    return trainer, net


def test_each_member_is_supervised_on_its_own_subset():
    """Member 0 only learns from subset 0 (0.25 / label 1), member 1 from subset 1 (0.75 / label 2)."""
    streams = {
        "_0": _const_batches(0.25, 1),
        "_1": _const_batches(0.75, 2),
        "_u": _const_batches(0.5, None, b=3),
    }
    calls: list[dict] = []

    def spy_loss(logits, label):
        calls.append({"labels": label.unique().tolist(), "batch": logits.shape[0]})
        return segmentation_cross_entropy(logits, label)

    trainer, net = _trainer(streams, epochs=2, length=2, loss_function=spy_loss, cot_weight=0.5, adv_weight=0.5)
    first_inputs: list[dict[int, float]] = []

    def _new_iteration(engine):
        first_inputs.append({})

    def _hook(i):
        def pre_hook(module, args):
            first_inputs[-1].setdefault(i, args[0].mean().item())

        return pre_hook

    trainer.add_event_handler(Events.ITERATION_STARTED, _new_iteration)
    for i, m in enumerate(net.members):
        m.register_forward_pre_hook(_hook(i))
    trainer.run()

    n_iter = 4
    assert len(first_inputs) == n_iter
    for it in first_inputs:
        assert it[0] == pytest.approx(0.25, abs=0.011)
        assert it[1] == pytest.approx(0.75, abs=0.011)
    # the supervised loss: once per member per iteration, in member order, with that member's labels
    assert [c["labels"] for c in calls] == [[1], [2]] * n_iter
    assert all(c["batch"] == 2 for c in calls)  # never the unlabelled batch (3 samples)
    assert "loss_cot" in trainer.state.output and "loss_adv" in trainer.state.output


def _record_phases(trainer):
    """Record (event, iteration, loss keys present) for the three phase events and the standard ones around them."""
    log: list[tuple[str, int, set]] = []
    events = [
        IterationEvents.FORWARD_COMPLETED,
        CoTrainingEvents.SUPERVISED_COMPLETED,
        CoTrainingEvents.AGREEMENT_COMPLETED,
        CoTrainingEvents.DIVERSITY_COMPLETED,
        IterationEvents.LOSS_COMPLETED,
    ]
    for ev in events:
        trainer.add_event_handler(
            ev,
            lambda e, ev=ev: log.append((ev.name, e.state.iteration, {k for k in LOSS_KEYS if k in e.state.output})),
        )
    return log


def _record_totals(trainer):
    totals: list[dict] = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: totals.append(
            {
                "loss": e.state.output["loss"].item(),
                "sup": e.state.output["loss_sup"].item(),
                "cot": e.state.output["loss_cot"].item() if "loss_cot" in e.state.output else None,
                "adv": e.state.output["loss_adv"].item() if "loss_adv" in e.state.output else None,
                "cot_weight": e.state.cot_weight,
                "adv_weight": e.state.adv_weight,
                "epoch": e.state.epoch,
            }
        ),
    )
    return totals


def _mixed_streams(num_models: int = 2, num_classes: int = 3, b_u: int = 3) -> dict:
    streams = {f"_{i}": _random_batches(10 + i, 2, 2, num_classes) for i in range(num_models)}
    streams["_u"] = _random_batches(99, 2, b_u, num_classes, labelled=False)
    return streams


def test_phase_events_order_and_total_loss():
    trainer, _ = _trainer(_mixed_streams(), epochs=1, length=3, cot_weight=0.7, adv_weight=0.3)
    log = _record_phases(trainer)
    totals = _record_totals(trainer)
    trainer.run()
    expected = []
    for it in (1, 2, 3):
        expected += [
            ("FORWARD_COMPLETED", it, set()),
            ("SUPERVISED_COMPLETED", it, {"loss_sup"}),
            ("AGREEMENT_COMPLETED", it, {"loss_sup", "loss_cot"}),
            ("DIVERSITY_COMPLETED", it, {"loss_sup", "loss_cot", "loss_adv"}),
            ("LOSS_COMPLETED", it, {"loss_sup", "loss_cot", "loss_adv", "loss"}),
        ]
    assert log == expected
    assert len(totals) == 3
    for t in totals:
        assert t["cot"] > 0 and t["adv"] > 0
        assert t["loss"] == pytest.approx(t["sup"] + 0.7 * t["cot"] + 0.3 * t["adv"], rel=1e-6)
    out = trainer.state.output
    assert not out["loss_sup"].requires_grad and not out["loss_cot"].requires_grad
    assert isinstance(out["pred"], list) and len(out["pred"]) == 2


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def test_loss_terms_against_independent_computation():
    """
    S = 3: loss_sup = sum of the members' CE on their own batches; loss_cot = numpy JSD of the unlabelled softmax
    maps; loss_adv = mean over the 6 ordered pairs (i, j) of KL(p_j(x_adv_i) || p_i(x)) on labelled (FGSM) plus
    unlabelled (VAT) images, recomputed from a snapshot of the ensemble and the RNG state of the iteration.
    """
    vat = VAT(xi=1e-3, eps=0.05)  # xi large enough to be reproducible in float32
    fgsm = FGSM(eps=0.05)
    streams = _mixed_streams(num_models=3)
    trainer, _ = _trainer(streams, length=1, num_models=3, cot_weight=0.7, adv_weight=0.3, fgsm=fgsm, vat=vat)
    snap: dict = {}

    def _snapshot(engine):
        snap["net"] = copy.deepcopy(engine.network)
        snap["rng"] = torch.get_rng_state()
        snap["batch"] = {k: v.clone() for k, v in engine.state.batch.items()}

    trainer.add_event_handler(Events.ITERATION_STARTED, _snapshot)
    totals = _record_totals(trainer)
    trainer.run()
    t = totals[0]
    ens, batch = snap["net"], snap["batch"]
    xs = [batch[f"image_{i}"] for i in range(3)]
    ys = [batch[f"label_{i}"] for i in range(3)]
    xu = batch["image_u"]
    with torch.no_grad():
        logits_l = [ens(xs[i], member=i) for i in range(3)]
        logits_u = [ens(xu, member=i) for i in range(3)]
    # supervised: numpy CE
    sup = 0.0
    for lg, y in zip(logits_l, ys, strict=True):
        lsm = _np_log_softmax(lg.numpy().astype(np.float64))
        sup += -np.take_along_axis(lsm, y.numpy().astype(np.int64), axis=1).mean()
    assert t["sup"] == pytest.approx(sup, rel=1e-5)
    # agreement: numpy JSD
    p = np.stack([np.exp(_np_log_softmax(lg.numpy().astype(np.float64))) for lg in logits_u])
    h_mean = -(p.mean(0) * np.log(p.mean(0))).sum(1)
    h_each = -(p * np.log(p)).sum(2)
    assert t["cot"] == pytest.approx((h_mean - h_each.mean(0)).mean(), rel=1e-5)

    # diversity
    def kl(a, b):  # KL(softmax(a) || softmax(b)), mean over voxels
        la, lb = _np_log_softmax(a.numpy().astype(np.float64)), _np_log_softmax(b.numpy().astype(np.float64))
        return (np.exp(la) * (la - lb)).sum(1).mean()

    torch.set_rng_state(snap["rng"])
    terms = []
    for i in range(3):
        member_i = lambda x, i=i: ens(x, member=i)  # noqa: E731
        x_adv = fgsm(member_i, xs[i], ys[i])
        u_adv = vat(member_i, xu, logits_u[i])
        for j in range(3):
            if j != i:
                with torch.no_grad():
                    terms.append(kl(ens(x_adv, member=j), logits_l[i]) + kl(ens(u_adv, member=j), logits_u[i]))
    assert len(terms) == 6
    assert t["adv"] == pytest.approx(np.mean(terms), rel=1e-4)
    # pairing matters: comparing member j with its OWN clean prediction would give a clearly different value
    torch.set_rng_state(snap["rng"])
    wrong = []
    for i in range(3):
        member_i = lambda x, i=i: ens(x, member=i)  # noqa: E731
        x_adv, u_adv = fgsm(member_i, xs[i], ys[i]), vat(member_i, xu, logits_u[i])
        for j in range(3):
            if j != i:
                with torch.no_grad():
                    wrong.append(kl(ens(x_adv, member=j), ens(xs[i], member=j)) + kl(ens(u_adv, member=j), logits_u[j]))
    assert abs(t["adv"] - np.mean(wrong)) > 0.5 * t["adv"], (t["adv"], np.mean(wrong))
    assert t["loss"] == pytest.approx(t["sup"] + 0.7 * t["cot"] + 0.3 * t["adv"], rel=1e-6)


@pytest.mark.parametrize("use_agreement, use_diversity", [(False, False), (True, False), (False, True)])
def test_ablations_drop_their_terms(use_agreement, use_diversity):
    trainer, _ = _trainer(
        _mixed_streams(),
        length=2,
        cot_weight=0.7,
        adv_weight=0.3,
        use_agreement=use_agreement,
        use_diversity=use_diversity,
    )
    totals = _record_totals(trainer)
    trainer.run()
    out = trainer.state.output
    assert ("loss_cot" in out) == use_agreement
    assert ("loss_adv" in out) == use_diversity
    for t in totals:
        expected = t["sup"] + (0.7 * t["cot"] if use_agreement else 0.0) + (0.3 * t["adv"] if use_diversity else 0.0)
        assert t["loss"] == pytest.approx(expected, rel=1e-6)
        if not (use_agreement or use_diversity):
            assert t["loss"] == pytest.approx(t["sup"], rel=1e-7)


def test_without_unlabelled_stream():
    """No ``image_u``: no agreement term; the diversity term uses the labelled FGSM examples only."""
    streams = {"_0": _random_batches(1, 2, 2, 3), "_1": _random_batches(2, 2, 2, 3)}
    trainer, _ = _trainer(streams, cot_weight=0.7, adv_weight=0.3)
    totals = _record_totals(trainer)
    trainer.run()
    assert "loss_cot" not in trainer.state.output and "loss_adv" in trainer.state.output
    assert trainer.state.output["image_u"].shape == (0, 1, SIZE, SIZE)
    for t in totals:
        assert t["loss"] == pytest.approx(t["sup"] + 0.3 * t["adv"], rel=1e-6)


def test_cot_weight_per_epoch_ramp():
    epochs, length = 4, 2
    trainer, _ = _trainer(_mixed_streams(), epochs=epochs, length=length, adv_weight=0.3)
    ConsistencyWeightScheduler(
        max_weight=1.0, rampup_iterations=epochs * length, step_iterations=length, attribute="cot_weight"
    ).attach(trainer)
    totals = _record_totals(trainer)
    trainer.run()
    assert len(totals) == epochs * length
    for t in totals:
        e = t["epoch"]
        assert t["cot_weight"] == pytest.approx(math.exp(-5 * (1 - (e - 1) / epochs) ** 2))
        assert t["adv_weight"] == 0.3
        assert t["loss"] == pytest.approx(t["sup"] + t["cot_weight"] * t["cot"] + 0.3 * t["adv"], rel=1e-6)
    assert totals[-1]["cot_weight"] == pytest.approx(math.exp(-5 * (1 / epochs) ** 2))
    assert trainer.state.cot_weight == pytest.approx(math.exp(-5 * (1 - (epochs - 1) / epochs) ** 2))


def _square_batches(seed: int, n_batches: int, b: int, labelled: bool = True) -> list[dict]:
    """Dark noisy images with one bright square at a random place; the label is the square."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        img = 0.1 + 0.1 * torch.rand(b, 1, 12, 12, generator=g)
        lab = torch.zeros(b, 1, 12, 12, dtype=torch.long)
        for s in range(b):
            r, c = torch.randint(0, 8, (2,), generator=g).tolist()
            img[s, :, r : r + 4, c : c + 4] += 0.6
            lab[s, :, r : r + 4, c : c + 4] = 1
        out.append({"image": img, "label": lab} if labelled else {"image": img})
    return out


def test_supervised_loss_falls():
    set_determinism(seed=0)
    try:
        streams = {
            "_0": _square_batches(1, 4, 2),
            "_1": _square_batches(2, 4, 2),
            "_u": _square_batches(3, 4, 2, labelled=False),
        }
        torch.manual_seed(0)
        net = SegmentationEnsemble(_member(2), num_models=2)
        trainer = CoTrainingTrainer(
            device="cpu",
            max_epochs=4,
            epoch_length=10,
            train_data_loader=MultiStreamLoader(streams, 10),
            network=net,
            optimizer=torch.optim.Adam(net.parameters(), 3e-2),
            fgsm=FGSM(eps=0.05),
            vat=VAT(eps=0.05),
            cot_weight=0.1,
            adv_weight=0.01,
        )
        totals = _record_totals(trainer)
        trainer.run()
    finally:
        set_determinism(seed=None)
    sup = [t["sup"] for t in totals]
    assert len(sup) == 40
    assert np.mean(sup[-5:]) < 0.5 * np.mean(sup[:5]), sup


def test_invalid_construction_and_batches():
    torch.manual_seed(0)
    unet = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))
    with pytest.raises(ValueError, match="SegmentationEnsemble"):
        CoTrainingTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=MultiStreamLoader(_mixed_streams(), 1),
            network=unet,
            optimizer=torch.optim.Adam(unet.parameters(), 1e-3),
        )
    with pytest.raises(ValueError, match="num_models"):
        PrepareEnsembleBatch(num_models=1)
    batch = {"image_0": torch.zeros(1, 1, 4, 4), "label_0": torch.zeros(1, 1, 4, 4), "image_1": torch.zeros(1, 1, 4, 4)}
    with pytest.raises(KeyError, match="label_1"):
        PrepareEnsembleBatch(num_models=2)(batch)
    # the same error through the trainer
    streams = {"_0": _random_batches(1, 1, 2, 3), "_1": [{"image": torch.zeros(2, 1, SIZE, SIZE)}]}
    trainer, _ = _trainer(streams, length=1)
    with pytest.raises(KeyError, match="label_1"):
        trainer.run()


def test_prepare_ensemble_batch_unpacks_streams():
    batch = {
        "image_0": torch.zeros(2, 1, 4, 4),
        "label_0": torch.ones(2, 1, 4, 4),
        "image_1": torch.full((2, 1, 4, 4), 0.5),
        "label_1": torch.full((2, 1, 4, 4), 2.0),
        "image_u": torch.full((3, 1, 4, 4), 0.7),
    }
    xs, ys, xu = PrepareEnsembleBatch(num_models=2)(batch, device="cpu")
    assert [x.unique().tolist() for x in xs] == [[0.0], [0.5]]
    assert [y.unique().tolist() for y in ys] == [[1.0], [2.0]]
    assert xu.shape == (3, 1, 4, 4) and xu.eq(0.7).all()
    del batch["image_u"]
    _, _, xu = PrepareEnsembleBatch(num_models=2)(batch)
    assert xu.shape == (0, 1, 4, 4)


@pytest.mark.parametrize("adversarial_norm_statistics", [False, True])
def test_adversarial_passes_leave_norm_statistics_alone(adversarial_norm_statistics):
    """Default: the running batch-norm statistics after an iteration are those of its clean passes only."""

    def run(use_diversity: bool) -> tuple[dict, CoTrainingTrainer]:
        torch.manual_seed(0)
        member = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Conv2d(4, 3, 1))
        net = SegmentationEnsemble(member, num_models=2)
        trainer = CoTrainingTrainer(
            device="cpu",
            max_epochs=1,
            epoch_length=1,
            train_data_loader=MultiStreamLoader(_mixed_streams(), 1),
            network=net,
            optimizer=torch.optim.Adam(net.parameters(), 1e-3),
            fgsm=FGSM(eps=0.2),
            vat=VAT(xi=1e-3, eps=2.0),
            adv_weight=0.3,
            use_diversity=use_diversity,
            adversarial_norm_statistics=adversarial_norm_statistics,
        )
        trainer.run()
        stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
        return stats, trainer

    clean, _ = run(use_diversity=False)
    with_adv, trainer = run(use_diversity=True)
    assert float(trainer.state.output["loss_adv"]) > 0
    same = all(torch.equal(clean[k], with_adv[k]) for k in clean)
    assert same != adversarial_norm_statistics
