from __future__ import annotations

import csv
import os

import matplotlib.figure
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from monai_wsss.handlers import ConsistencyWeightScheduler, LearningCurveWriter, OverlayPNGSaver, save_overlay_png


def _png(path) -> np.ndarray:
    assert os.path.isfile(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    arr = mpimg.imread(path)
    assert arr.ndim == 3 and arr.shape[2] in (3, 4) and min(arr.shape[:2]) > 50
    return arr


@pytest.fixture
def titles(monkeypatch):
    seen = []
    real = matplotlib.figure.Figure.suptitle

    def spy(self, t, *args, **kwargs):
        seen.append(t)
        return real(self, t, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", spy)
    return seen


def test_overlay_2d(tmp_path, titles):
    img = torch.rand(1, 24, 20)
    label = torch.zeros(1, 24, 20)
    label[0, 5:15, 4:12] = 1
    one = tmp_path / "one.png"
    three = tmp_path / "sub" / "three.png"  # folders are created
    save_overlay_png(str(one), img, {"label": label}, title="case")
    save_overlay_png(str(three), img.numpy(), {"label": label, "pred": label.numpy(), "otsu": label}, title="case")
    a, b = _png(one), _png(three)
    assert b.shape[1] > 1.5 * a.shape[1]  # one panel per mask next to the image
    assert titles == ["case", "case"]
    assert sorted(os.listdir(tmp_path)) == ["one.png", "sub"]  # no temp files left


def test_overlay_3d_picks_largest_slice(tmp_path, titles):
    img = np.random.default_rng(0).random((1, 16, 12, 10)).astype(np.float32)
    label = np.zeros((1, 16, 12, 10), np.float32)
    label[0, 2:8, 2:8, 3] = 1  # 36 voxels on slice 3
    label[0, 2:12, 2:10, 7] = 1  # 80 voxels on slice 7 of the last axis
    path = tmp_path / "vol.png"
    save_overlay_png(str(path), img, {"label": label, "pred": np.zeros_like(label)}, title="vol")
    _png(path)
    save_overlay_png(str(tmp_path / "ax0.png"), img, {"label": label}, title="vol", slice_axis=0)
    save_overlay_png(str(tmp_path / "empty.png"), img, {"label": np.zeros_like(label)}, title="vol")
    # along axis 0, rows 2..11 all hold 8 + (6 if row < 8) voxels: the first largest is row 2
    assert titles == ["vol (slice 7 of axis 2)", "vol (slice 2 of axis 0)", "vol (slice 5 of axis 2)"]
    _png(tmp_path / "empty.png")


def test_learning_curve_writer(tmp_path):
    rows_after_epoch = []

    def step(engine, batch):
        return [{"loss": 1.0 / engine.state.iteration, "loss_dice": 0.5, "image": torch.zeros(2)}]

    engine = Engine(step)
    ConsistencyWeightScheduler(rampup_iterations=4, step_iterations=1).attach(engine)
    writer = LearningCurveWriter(
        str(tmp_path / "curves"), output_keys=("loss", "loss_dice", "absent"), state_attributes=("unsup_weight",)
    )
    writer.attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def _count(e):
        with open(tmp_path / "curves" / "learning_curve.csv") as f:
            rows_after_epoch.append(len(list(csv.DictReader(f))))

    engine.run(range(3), max_epochs=2)
    assert rows_after_epoch == [3, 6]
    with open(tmp_path / "curves" / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["iteration", "loss", "loss_dice", "unsup_weight"]
    assert [float(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["loss"]) for r in rows] == pytest.approx([1 / i for i in range(1, 7)])
    assert [float(r["loss_dice"]) for r in rows] == [0.5] * 6
    expected_w = [np.exp(-5 * (1 - min(s, 4) / 4) ** 2) for s in range(6)]
    assert [float(r["unsup_weight"]) for r in rows] == pytest.approx(expected_w)
    _png(tmp_path / "curves" / "learning_curve.png")
    assert sorted(os.listdir(tmp_path / "curves")) == ["learning_curve.csv", "learning_curve.png"]


def test_learning_curve_writer_without_rows(tmp_path):
    writer = LearningCurveWriter(str(tmp_path / "none"))
    writer.write()
    assert not os.path.exists(tmp_path / "none")


def test_overlay_png_saver_names_after_meta(tmp_path):
    def image(name):
        img = MetaTensor(torch.rand(1, 16, 16))
        img.meta["filename_or_obj"] = name
        return img

    mask = torch.zeros(1, 16, 16)
    mask[0, 4:10, 4:10] = 1
    outputs = [
        {"image": image("/data/imagesTs/case_007.nii.gz"), "label": mask, "pred": mask},
        {"image": image("case_008.nii.gz"), "pred": mask},  # no label: that panel is skipped
    ]
    engine = Engine(lambda e, b: outputs)
    saver = OverlayPNGSaver(str(tmp_path / "png"), mask_keys=("label", "pred"))
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    expected = [str(tmp_path / "png" / "case_007_overlay.png"), str(tmp_path / "png" / "case_008_overlay.png")]
    assert saver.written == expected
    a, b = _png(expected[0]), _png(expected[1])
    assert a.shape[1] > b.shape[1]  # three panels versus two


def test_overlay_png_saver_without_meta(tmp_path):
    engine = Engine(lambda e, b: {"image": torch.rand(1, 16, 16), "pred": torch.ones(1, 16, 16)})
    saver = OverlayPNGSaver(str(tmp_path), mask_keys=("pred",))
    saver.attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert [os.path.basename(p) for p in saver.written] == ["case1_0_overlay.png", "case2_0_overlay.png"]
    for p in saver.written:
        _png(p)
