"""ActiveLearningLoop on the real MNI152 tissue slabs (4 mm, conftest.py): mid-round resume, 2D fallback, checks, and
the retraining engine (iterations through the trainer's handlers, crops on annotated voxels, sliding-window
prediction, warm start vs scratch)."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    DeleteItemsd,
    DivisiblePadd,
    EnsureTyped,
    RandAxisFlipd,
    RandWeightedCropd,
)

from monai_wsss.active import GeometricPlaneStrategy
from monai_wsss.apps.active_learning import ActiveLearningLoop
from monai_wsss.data import load_semisupervised_datalist
from monai_wsss.handlers import AtomicCheckpointSaver
from monai_wsss.losses import PartialLabelLoss
from monai_wsss.transforms import Supervoxels

PLANE_RADIUS = 6.0


def _lists(dataset_dir: str) -> dict:
    return load_semisupervised_datalist(dataset_dir, fully_labeled_fraction=None, val_fraction=0.0)


def _trainer(
    net: torch.nn.Module,
    out: str,
    roi_size,
    divisible_by,
    loss: torch.nn.Module | None = None,
    num_epochs: int = 1,
    epoch_length: int = 2,
    handlers: list | None = None,
    name: str = "",
    ignore_value: int = -1,
) -> SupervisedTrainer:
    """The bundle's retraining engine, built in Python: crops centred on annotated voxels, padding to the network's
    divisor (labels padded with the ignore value), random flips, Adam, the final weights saved atomically."""
    keys = ["image", "label"]
    transform = Compose(
        [
            RandWeightedCropd(keys, w_key="annotated", spatial_size=roi_size, num_samples=1),
            DeleteItemsd("annotated"),
            DivisiblePadd("image", k=divisible_by, mode="replicate", method="end"),
            DivisiblePadd("label", k=divisible_by, mode="constant", method="end", value=ignore_value),
            RandAxisFlipd(keys, prob=0.5),
            EnsureTyped(keys, track_meta=False),
        ]
    )
    dataset = Dataset([{"placeholder": 0}], transform)
    saver = AtomicCheckpointSaver(
        save_dir=os.path.join(out, name), save_dict={"model": net}, save_final=True, final_filename="model.pt"
    )
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=num_epochs,
        epoch_length=epoch_length,
        train_data_loader=DataLoader(dataset, batch_size=3, shuffle=True),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
        loss_function=loss if loss is not None else PartialLabelLoss(ignore_value=ignore_value),
        train_handlers=[saver, *(handlers or [])],
    )


def _strategy(name: str):
    """Library strategies by name; the planar one with a small disc and orientation grid."""
    if name == "geometric_plane":
        return GeometricPlaneStrategy(plane_radius=PLANE_RADIUS, plane_angles=(3, 8))
    return name


def _loop(out: str, pool, heldout, spatial_dims: int = 3, **kw) -> ActiveLearningLoop:
    torch.manual_seed(0)
    strides = [[2, 2, 1], [2, 2, 1]] if spatial_dims == 3 else [2, 2]
    net = kw.pop("network", None) or UNet(spatial_dims, 1, 3, channels=[4, 8, 16], strides=strides, num_res_units=1)
    divisible_by = kw.pop("divisible_by", [4, 4, 1] if spatial_dims == 3 else 4)
    roi_size = kw.pop("roi_size", [64, 64, 3] if spatial_dims == 3 else [64, 64])  # the whole tiny slab
    strategy = _strategy(kw.pop("strategy", "geometric"))
    name = strategy if isinstance(strategy, str) else strategy.name
    trainer_kw = {k: kw.pop(k) for k in ("loss", "num_epochs", "epoch_length", "handlers") if k in kw}
    args = {
        "num_classes": 3,
        "regions_per_round": 3,
        "supervoxels": Supervoxels(n_segments=40),
        "divisible_by": divisible_by,
    }
    args.update(kw)
    trainer = _trainer(net, out, roi_size, divisible_by, name=name, **trainer_kw)
    inferer = kw.get("inferer") or SlidingWindowInferer(roi_size, sw_batch_size=2, overlap=0.25)
    args.pop("inferer", None)
    return ActiveLearningLoop(trainer, inferer, pool, heldout, out, strategy=strategy, **args)


def test_kill_after_annotation_resumes_without_new_query(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    out = str(tmp_path)
    loop = _loop(out, lists["labeled"], lists["test"], strategy="geometric_plane")
    loop.run(2)
    csv_path = loop.curve_path
    with open(csv_path) as f:
        full = f.read().splitlines()
    # simulate a kill after round 1 was annotated but before its curve row was written
    with open(csv_path, "w") as f:
        f.write("\n".join(full[:2]) + "\n")
    state_root = os.path.join(out, "geometric_plane", "state")
    before = {c: json.load(open(os.path.join(state_root, c, "queries.json"))) for c in os.listdir(state_root)}
    rows = _loop(out, lists["labeled"], lists["test"], strategy="geometric_plane").run(2)
    after = {c: json.load(open(os.path.join(state_root, c, "queries.json"))) for c in os.listdir(state_root)}
    assert before == after  # round 1's recorded query is reused, not asked again
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert int(rows[1]["annotated_voxels"]) == int(full[2].split(",")[4])


def test_2d_plane_strategy_falls_back_to_regions(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    cases = {}
    for role in ("labeled", "test"):
        cases[role] = []
        for i, c in enumerate(lists[role]):
            item = {}
            for key in ("image", "label"):
                img = nib.load(c[key])
                path = os.path.join(str(tmp_path), f"{role}{i}_{key}.nii.gz")
                nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 1], np.eye(4)), path)
                item[key] = path
            cases[role].append(item)
    loop = _loop(os.path.join(str(tmp_path), "out"), cases["labeled"], cases["test"], 2, strategy="geometric_plane")
    assert loop.spatial_dims == 2
    rows = loop.run(2)
    assert len(rows) == 2
    state_root = os.path.join(str(tmp_path), "out", "geometric_plane", "state")
    queries = [q for c in os.listdir(state_root) for q in json.load(open(os.path.join(state_root, c, "queries.json")))]
    assert all(q["plane"] is None and len(q["region_ids"]) == 3 for q in queries)


def test_invalid_arguments(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    with pytest.raises(ValueError, match="strategy|Unsupported option"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], strategy="margin_of_error")
    with pytest.raises(ValueError, match="`heldout` is empty"):
        _loop(str(tmp_path), lists["labeled"], [], strategy="random")
    with pytest.raises(ValueError, match="no `label`"):
        _loop(str(tmp_path), lists["unlabeled"], lists["test"], strategy="random")


@pytest.mark.parametrize("strategy", ["random", "entropy", "geometric", "geometric_plane"])
def test_voxels_per_round_matches_the_budget(tmp_path, tiny_tissue_dataset, strategy):
    lists = _lists(tiny_tissue_dataset)
    budget = 60
    loop = _loop(str(tmp_path), lists["labeled"], lists["test"], strategy=strategy, voxels_per_round=budget)
    rows = loop.run(3)
    counts = [0] + [int(r["annotated_voxels"]) for r in rows]
    largest = max(int(np.bincount(loop.regions(c).ravel()).max()) for c in loop.pool)
    plane_size = (2 * PLANE_RADIUS + 1) ** 2  # a disc of radius r and thickness 1 holds fewer voxels
    for r, (before, after) in enumerate(zip(counts[:-1], counts[1:], strict=True)):
        # round 0 is a random region query for every strategy
        step = plane_size if strategy == "geometric_plane" and r > 0 else largest
        assert budget <= after - before < budget + step, (strategy, counts, step)
    queries = [
        q
        for c in loop.pool
        for q in json.load(open(os.path.join(str(tmp_path), strategy, "state", c["name"], "queries.json")))
    ]
    if strategy == "geometric_plane":
        assert all(len(q["planes"]) >= 1 for q in queries if q["round"] > 0)


def test_voxels_per_round_invalid(tmp_path, tiny_tissue_dataset):
    lists = _lists(tiny_tissue_dataset)
    with pytest.raises(ValueError, match="voxels_per_round"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], voxels_per_round=0)


def test_retraining_loss_and_per_class_dice(tmp_path, tiny_tissue_dataset):
    """A given loss is the one minimised; each curve row carries the Dice of every foreground class."""
    from monai_wsss.losses import PartialLabelLoss

    lists = _lists(tiny_tissue_dataset)
    calls = []

    class Recording(PartialLabelLoss):
        def forward(self, input, target, mask=None):
            calls.append(int((target != self.ignore_value).sum()))
            return super().forward(input, target, mask)

    loop = _loop(str(tmp_path), lists["labeled"], lists["test"], strategy="random", loss=Recording(dice_weight=1.0))
    rows = loop.run(1)
    # one loss call per engine iteration; the crop covers the whole slab, so the first sees every annotated voxel
    assert len(calls) == loop.trainer.state.max_epochs * loop.trainer.state.epoch_length
    assert calls[0] == int(rows[0]["annotated_voxels"])
    per_class = [float(v) for v in rows[0]["dice_per_class"].split()]
    assert len(per_class) == 2  # grey and white matter; background is not scored
    dice, _, again = loop.evaluate()
    assert again == pytest.approx(per_class, abs=1e-6)
    assert dice == pytest.approx(float(rows[0]["dice"]), abs=1e-6)
    assert dice == pytest.approx(float(np.mean(per_class)), abs=1e-6)  # both classes in every held-out slab
    with pytest.raises(ValueError, match="ignore_value"):
        _loop(str(tmp_path), lists["labeled"], lists["test"], loss=PartialLabelLoss(ignore_value=255))


class _IterationCounter:
    """A handler attached through the trainer's ``train_handlers``: counts the iterations of every run and records
    the annotated voxels of each crop of each batch."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.annotated_per_crop: list[int] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.runs.append(0))
        engine.add_event_handler(Events.ITERATION_STARTED, self.count)  # the collated batch (decollated after)

    def count(self, engine) -> None:
        self.runs[-1] += 1
        labels = engine.state.batch["label"]
        self.annotated_per_crop += [int((lab != -1).sum()) for lab in labels]


def test_rounds_train_through_the_engine_on_annotated_crops(tmp_path, tiny_tissue_dataset):
    """Each round is one ``trainer.run()`` of num_epochs x epoch_length iterations (seen by a handler), on crops
    smaller than the slab that each hold annotated voxels; the loop's per-round curve and the checkpoint handler's
    model.pt are written."""
    lists = _lists(tiny_tissue_dataset)
    counter = _IterationCounter()
    loop = _loop(
        str(tmp_path), lists["labeled"], lists["test"], strategy="entropy", roi_size=[16, 16, 3],
        num_epochs=2, epoch_length=3, handlers=[counter],
    )  # fmt: skip
    rows = loop.run(2)
    assert counter.runs == [6, 6]  # two rounds, 2 x 3 iterations each, through the engine
    assert loop.trainer.state.iteration == 6 and loop.trainer.state.epoch == 2
    # every crop is centred on an annotated voxel: none is empty although the annotated fraction is small
    assert float(rows[0]["annotated_fraction"]) < 0.2
    assert len(counter.annotated_per_crop) > 0 and min(counter.annotated_per_crop) >= 1
    for r in (0, 1):
        with open(os.path.join(str(tmp_path), "entropy", "training", f"round_{r:03d}.csv")) as f:
            assert len(f.read().splitlines()) == 1 + 6  # header + one row per iteration
    state = torch.load(os.path.join(str(tmp_path), "entropy", "model.pt"), weights_only=True)
    for k, v in loop.network.state_dict().items():
        torch.testing.assert_close(state[k], v)  # the checkpoint handler saved the last round's weights


def test_weighted_crop_is_centred_on_the_annotated_voxel():
    """The bundle's crop (``RandWeightedCropd`` on the loop's ``annotated`` key) puts the only annotated voxel at the
    centre of every patch."""
    from conftest import REPO
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", "geometric_active_learning", "configs", "train.json"))
    parser.update({"roi_size": [8, 8, 5], "flip_prob": 0.0, "intensity_prob": 0.0, "num_samples": 3})
    transform = parser.get_parsed_content("train::preprocessing")
    label = np.full((1, 32, 32, 5), -1, dtype=np.int64)
    label[0, 20, 10, 2] = 2
    item = {
        "image": np.random.default_rng(0).random((1, 32, 32, 5)).astype(np.float32),
        "label": label,
        "annotated": (label != -1).astype(np.float32),
    }
    crops = transform(item)
    assert len(crops) == 3
    for crop in crops:
        assert tuple(crop["label"].shape) == (1, 8, 8, 5) and "annotated" not in crop
        assert int(crop["label"][0, 4, 4, 2]) == 2  # the centre of an 8 x 8 x 5 patch
        assert int((crop["label"] != -1).sum()) == 1
        np.testing.assert_allclose(np.asarray(crop["image"][0, 4, 4, 2]), item["image"][0, 20, 10, 2], rtol=1e-6)


def test_sliding_window_prediction_equals_full_image_prediction(tmp_path, tiny_tissue_dataset):
    """A network without spatial context (1x1x1 convolution) gives the same probabilities through small overlapping
    windows as on the whole image; a UNet gives them when one window covers the padded image."""
    lists = _lists(tiny_tissue_dataset)
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(1, 3, kernel_size=1)
    loop = _loop(
        str(tmp_path / "conv"), lists["labeled"], lists["test"], network=conv, divisible_by=1,
        inferer=SlidingWindowInferer([8, 8, 2], sw_batch_size=3, overlap=0.5, mode="gaussian"),
    )  # fmt: skip
    image = loop.heldout[0]["image"]
    with torch.no_grad():
        full = torch.softmax(conv(torch.as_tensor(image)[None])[0], 0)
    torch.testing.assert_close(loop.predict(image), full, atol=1e-5, rtol=1e-5)

    loop = _loop(str(tmp_path / "unet"), lists["labeled"], lists["test"], inferer=SlidingWindowInferer([52, 60, 3]))
    x = torch.as_tensor(image)[None]
    h, w = x.shape[2:4]
    padded = torch.nn.functional.pad(x, [0, 0, 0, (-w) % 4, 0, (-h) % 4], mode="replicate")
    assert tuple(padded.shape[2:]) == (52, 60, 3)
    loop.network.eval()
    with torch.no_grad():
        full = torch.softmax(loop.network(padded)[0, :, :h, :w], 0)
    torch.testing.assert_close(loop.predict(image), full, atol=1e-5, rtol=1e-5)


class _StartWeights:
    """Records a copy of the network's weights and the optimiser's state size when each run starts."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net, self.weights, self.opt_states = net, [], []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self.record)

    def record(self, engine) -> None:
        self.weights.append({k: v.detach().clone() for k, v in self.net.state_dict().items()})
        self.opt_states.append(len(engine.optimizer.state))


@pytest.mark.parametrize("warm_start", [False, True])
def test_warm_start_vs_retraining_from_scratch(tmp_path, tiny_tissue_dataset, warm_start):
    """Scratch (the default) starts every round from the initial weights; warm start from the previous round's
    final weights. The optimiser state is reset in both."""
    lists = _lists(tiny_tissue_dataset)
    torch.manual_seed(0)
    net = UNet(3, 1, 3, channels=[4, 8, 16], strides=[[2, 2, 1], [2, 2, 1]], num_res_units=1)
    probe = _StartWeights(net)
    loop = _loop(
        str(tmp_path), lists["labeled"], lists["test"], strategy="random", network=net, handlers=[probe],
        warm_start=warm_start,
    )  # fmt: skip
    assert loop.warm_start is warm_start
    initial = {k: v.clone() for k, v in loop.initial_state.items()}
    loop.run(1)
    after_round0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    loop.run(2)
    assert probe.opt_states == [0, 0]  # a fresh Adam state every round
    for k in initial:
        torch.testing.assert_close(probe.weights[0][k], initial[k])  # round 0 always starts from the initial weights
    expected = after_round0 if warm_start else initial
    changed = [k for k in initial if not torch.equal(after_round0[k], initial[k])]
    assert changed  # round 0 trained the network, so the two starting points differ
    for k in initial:
        torch.testing.assert_close(probe.weights[1][k], expected[k])


class _FailOnce:
    """Raises in the first iteration of the run number ``at`` (counting runs from 0): a crash during retraining."""

    def __init__(self, at: int) -> None:
        self.at, self.runs = at, -1

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.fail)

    def started(self, engine) -> None:
        self.runs += 1

    def fail(self, engine) -> None:
        if self.runs == self.at:
            raise RuntimeError("killed during retraining")


def test_crash_during_retraining_resumes_to_the_uninterrupted_curve(tmp_path, tiny_tissue_dataset):
    """A loop killed inside round 1's training resumes at round 1 (query kept) and, retraining from scratch with the
    round's seed, ends with the same curve as a run that was never interrupted."""
    lists = _lists(tiny_tissue_dataset)
    reference = _loop(str(tmp_path / "a"), lists["labeled"], lists["test"], strategy="entropy").run(2)
    out = str(tmp_path / "b")
    with pytest.raises(RuntimeError, match="killed during retraining"):
        _loop(out, lists["labeled"], lists["test"], strategy="entropy", handlers=[_FailOnce(1)]).run(2)
    with open(os.path.join(out, "learning_curve_entropy.csv")) as f:
        assert len(f.read().splitlines()) == 2  # header + round 0
    rows = _loop(out, lists["labeled"], lists["test"], strategy="entropy").run(2)
    keys = ("round", "case", "queried_voxels", "annotated_voxels", "dice", "iou", "dice_per_class", "train_loss")
    assert [{k: str(r[k]) for k in keys} for r in rows] == [{k: str(r[k]) for k in keys} for r in reference]
