"""monai_wsss.apps.segmenter.SegmenterRecipe: training on a tiny decathlon folder, resume, hand-checked metrics."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet
from monai.transforms import LoadImaged, ScaleIntensityRanged
from PIL import Image

from monai_wsss.apps.segmenter import SegmenterRecipe
from monai_wsss.data import load_semisupervised_datalist

PREPROCESSING = [
    LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True),
    ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True),
]


def _write_folder(root: str, training: list, test: list) -> str:
    """A decathlon folder of 8-bit PNG (image, mask) pairs."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    lists: dict = {"labels": {"0": "background", "1": "square"}, "training": [], "test": []}
    for split, pairs in (("training", training), ("test", test)):
        for i, (image, mask) in enumerate(pairs):
            item = {"image": f"images/{split}_{i}.png", "label": f"images/{split}_{i}_mask.png"}
            Image.fromarray(image.astype(np.uint8)).save(os.path.join(root, item["image"]))
            Image.fromarray(mask.astype(np.uint8)).save(os.path.join(root, item["label"]))
            lists[split].append(item)
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(lists, f)
    return root


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> str:
    """Bright squares (the label) of random size and place on noisy dark 16 x 16 images."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(10):
        mask = np.zeros((16, 16), np.uint8)
        s = int(rng.integers(4, 9))
        r, c = rng.integers(0, 16 - s, size=2)
        mask[r : r + s, c : c + s] = 1
        image = np.clip(40 + 150 * mask + rng.normal(0, 25, mask.shape), 0, 255)
        pairs.append((image, mask))
    return _write_folder(str(tmp_path_factory.mktemp("squares")), pairs[:8], pairs[8:])


def _recipe(folder: str, tmp: str, **kw) -> SegmenterRecipe:
    lists = load_semisupervised_datalist(folder, fully_labeled_fraction=None, val_fraction=0.0)
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(8, 16), strides=(2,), num_res_units=1, norm="batch")
    args = dict(
        network=net,
        train_data=lists["labeled"],
        test_data=lists["test"],
        preprocessing=PREPROCESSING,
        num_classes=2,
        ckpt_dir=os.path.join(tmp, "models"),
        output_dir=os.path.join(tmp, "eval"),
        roi_size=[8, 8],
        num_epochs=4,
        epoch_length=5,
        batch_size=4,
        learning_rate=1e-2,
    )
    args.update(kw)
    return SegmenterRecipe(**args)


def _curve(tmp: str) -> list[dict]:
    with open(os.path.join(tmp, "eval", "learning_curve.csv")) as f:
        return list(csv.DictReader(f))


def test_trains_on_a_decathlon_folder_loss_falls_and_resumes(squares, tmp_path):
    tmp = str(tmp_path)
    recipe = _recipe(squares, tmp)
    batch = next(iter(recipe.train_loader))
    assert tuple(batch["image"].shape) == (4, 1, 8, 8) and tuple(batch["label"].shape) == (4, 1, 8, 8)  # roi crops
    assert isinstance(recipe.inferer(), SlidingWindowInferer) and list(recipe.inferer().roi_size) == [8, 8]
    metrics = recipe.run()
    assert recipe.trainer.state.iteration == 20
    loss = [float(r["loss"]) for r in _curve(tmp)]
    assert len(loss) == 20
    assert np.mean(loss[-5:]) < 0.7 * np.mean(loss[:5]), loss
    # the held-out squares are found (sliding 8 x 8 windows over the 16 x 16 test images)
    assert set(metrics) == {"dice", "dice_per_class", "jaccard", "miou"}
    assert metrics["dice"] > 0.5, metrics
    assert sorted(os.listdir(os.path.join(tmp, "models"))) == ["checkpoint_epoch=4.pt", "model.pt"]
    with open(os.path.join(tmp, "eval", "metrics.csv")) as f:
        saved = {row[0]: row[1] for row in csv.reader(f) if row}
    assert float(saved["dice"]) == pytest.approx(metrics["dice"])
    assert sorted(f for f in os.listdir(os.path.join(tmp, "eval")) if f.endswith("_overlay.png")) == [
        "test_0_overlay.png",
        "test_1_overlay.png",
    ]

    # a second run with a longer schedule continues from the checkpoint: iterations 21..30, Adam's count carried on
    again = _recipe(squares, tmp, num_epochs=6)
    seen = []
    again.trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    again.run()
    assert seen[0] == 21 and again.trainer.state.iteration == 30 and len(seen) == 10
    assert all(int(s["step"]) == 30 for s in again.optimizer.state.values())
    assert [float(r["iteration"]) for r in _curve(tmp)] == list(range(1, 31))
    assert {"checkpoint_epoch=6.pt", "model.pt"} <= set(os.listdir(os.path.join(tmp, "models")))
    saved = torch.load(os.path.join(tmp, "models", "model.pt"), weights_only=True)
    for k, v in again.network.state_dict().items():
        torch.testing.assert_close(saved[k], v)

    # resume=False starts afresh
    fresh = _recipe(squares, str(tmp_path / "fresh"), num_epochs=1, resume=False)
    fresh.run()
    assert fresh.trainer.state.iteration == 5


class _Threshold(torch.nn.Module):
    """Logits (0.5 - x, x - 0.5): the prediction is ``x > 0.5``, a known segmentation."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cat([0.5 - x, x - 0.5], dim=1)


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> str:
    """Case 0: predicted square rows 0-3 x cols 0-3, true square rows 0-3 x cols 2-5 (8 of 16 pixels shared);
    case 1: prediction = truth (rows 5-6 x cols 5-6)."""
    pred0, true0 = np.zeros((8, 8)), np.zeros((8, 8))
    pred0[0:4, 0:4], true0[0:4, 2:6] = 1, 1
    pred1 = np.zeros((8, 8))
    pred1[5:7, 5:7] = 1
    cases = [(pred0 * 255, true0), (pred1 * 255, pred1)]
    return _write_folder(str(tmp_path_factory.mktemp("known")), cases, cases)


@pytest.mark.parametrize("roi_size", [None, [4, 4]])
def test_evaluation_matches_a_hand_computation(known, tmp_path, roi_size):
    tmp = str(tmp_path)
    recipe = _recipe(known, tmp, network=_Threshold(), roi_size=roi_size)
    assert isinstance(recipe.inferer(), SimpleInferer if roi_size is None else SlidingWindowInferer)
    evaluator = recipe.evaluation(os.path.join(tmp, "evaluate"), metric_details=True)
    evaluator.run()
    # case 0: Dice 2*8/(16+16) = 0.5, IoU 8/24; background: 40 shared of 48 + 48 -> IoU 40/56; case 1: all 1
    dice = (0.5 + 1.0) / 2
    jaccard = (8 / 24 + 1.0) / 2
    miou = (8 / 24 + 40 / 56 + 1.0 + 1.0) / 4
    m = evaluator.state.metrics
    assert m["dice"] == pytest.approx(dice) and m["jaccard"] == pytest.approx(jaccard)
    assert m["miou"] == pytest.approx(miou)
    assert float(torch.as_tensor(m["dice_per_class"]).reshape(-1)[0]) == pytest.approx(dice)
    with open(os.path.join(tmp, "evaluate", "metrics.csv")) as f:
        saved = {row[0]: row[1] for row in csv.reader(f) if row}
    assert float(saved["dice"]) == pytest.approx(dice) and float(saved["miou"]) == pytest.approx(miou)
    with open(os.path.join(tmp, "evaluate", "dice_raw.csv")) as f:
        rows = list(csv.reader(f))
    assert [os.path.basename(r[0]) for r in rows[1:]] == ["test_0.png", "test_1.png"]  # one row per case
    assert [float(r[1]) for r in rows[1:]] == pytest.approx([0.5, 1.0])
    assert len([f for f in os.listdir(os.path.join(tmp, "evaluate")) if f.endswith("_overlay.png")]) == 2


def test_evaluation_of_a_saved_model(known, tmp_path):
    """``ckpt_path`` loads a ``model.pt`` into the network before the evaluation."""
    tmp = str(tmp_path)
    saved = _Threshold()
    torch.save(saved.state_dict(), os.path.join(tmp, "model.pt"))
    net = _Threshold()
    with torch.no_grad():
        net.scale.fill_(-10.0)  # inverted prediction until the checkpoint is loaded
    recipe = _recipe(known, tmp, network=net, roi_size=None, save_overlays=False)
    evaluator = recipe.evaluation(os.path.join(tmp, "ev"), ckpt_path=os.path.join(tmp, "model.pt"))
    evaluator.run()
    assert float(net.scale) == 10.0 and evaluator.state.metrics["dice"] == pytest.approx(0.75)
    assert not [f for f in os.listdir(os.path.join(tmp, "ev")) if f.endswith(".png")]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"num_classes": 1}, "`num_classes`"),
        ({"num_epochs": 0}, "`num_epochs`"),
        ({"epoch_length": 0}, "`epoch_length`"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"train_data": []}, "`train_data` is empty"),
    ],
)
def test_invalid_arguments_raise(known, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        _recipe(known, str(tmp_path), **bad)


def test_defaults_are_dice_ce_and_adam(known, tmp_path):
    from monai.losses import DiceCELoss

    recipe = _recipe(known, str(tmp_path), learning_rate=3e-4)
    assert isinstance(recipe.loss, DiceCELoss) and isinstance(recipe.optimizer, torch.optim.Adam)
    assert recipe.optimizer.param_groups[0]["lr"] == 3e-4
    assert recipe.val_interval == recipe.num_epochs == 4  # one evaluation, after the last epoch
    sgd = torch.optim.SGD(recipe.network.parameters(), lr=0.1)
    assert _recipe(known, str(tmp_path), network=recipe.network, optimizer=sgd).optimizer is sgd
