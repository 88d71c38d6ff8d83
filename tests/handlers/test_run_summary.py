from __future__ import annotations

import json
import logging
import os
import warnings

import pytest
from ignite.engine import Engine

from monai_wsss.handlers import RunSummary, quiet_optional_decoders


def _datalist(root: str) -> dict:
    item = lambda n, lab=True: {"image": os.path.join(root, f"imagesTr/{n}.nii.gz"), **({"label": "x"} if lab else {})}  # noqa: E731
    return {
        "labeled": [item("a"), item("b")],
        "unlabeled": [item("c", False)],
        "validation": [item("d")],
        "test": [],
    }


def test_first_line_names_bundle_data_split_device_and_total(tmp_path, caplog):
    root = str(tmp_path)
    bundle = os.path.join(root, "my_bundle")
    os.makedirs(os.path.join(bundle, "configs"))
    with open(os.path.join(bundle, "configs", "metadata.json"), "w") as f:
        json.dump({"name": "My bundle"}, f)
    summary = RunSummary(
        bundle, root, _datalist(root), "cpu", num_epochs=16, epoch_length=50, output_dir=os.path.join(root, "out"),
        split_order="seeded", seed=7,
    )  # fmt: skip
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs, engine.state.epoch_length = 16, 50
    with caplog.at_level(logging.INFO, logger="monai_wsss"):
        summary.attach(engine)
    lines = [r.getMessage() for r in caplog.records if r.name == "monai_wsss"]
    assert lines[0] == (
        f"My bundle (my_bundle): data {root}; split seeded, seed 7: 2 labeled, 1 unlabeled, 1 validation, 0 test; "
        "device cpu; 16 epochs x 50 iterations = 800 iterations."
    )
    assert lines[1] == "labeled (2): imagesTr/a.nii.gz, imagesTr/b.nii.gz"
    summary._write(engine)
    with open(os.path.join(root, "out", "split.json")) as f:
        split = json.load(f)
    assert split == {
        "split_order": "seeded",
        "seed": 7,
        "labeled": ["imagesTr/a.nii.gz", "imagesTr/b.nii.gz"],
        "unlabeled": ["imagesTr/c.nii.gz"],
        "validation": ["imagesTr/d.nii.gz"],
        "test": [],
    }


def test_schedule_mismatch_and_bad_values_are_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(ValueError, match="`epoch_length` must be a positive integer"):
        RunSummary(root, root, {}, "cpu", num_epochs=2, epoch_length=0)
    summary = RunSummary(root, root, {}, "cpu", num_epochs=2, epoch_length=3)
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs, engine.state.epoch_length = 2, 4
    with pytest.raises(ValueError, match="2 epochs of 4 iterations"):
        summary.attach(engine)


def test_decoder_notices_hidden_on_cpu_unless_verbose():
    logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    logger.filters.clear()
    assert quiet_optional_decoders(verbose=True, device="cpu") is False and not logger.filters
    assert quiet_optional_decoders(verbose="True", device="cpu") is False
    assert quiet_optional_decoders(verbose=False, device="cuda:0") is False and not logger.filters
    assert quiet_optional_decoders(verbose="false", device="cpu") is True  # a command line's lowercase false
    record = logger.makeRecord(logger.name, logging.WARNING, "f", 1, "nvImageCodec is not available; x", (), None)
    assert not logger.filter(record)
    other = logger.makeRecord(logger.name, logging.WARNING, "f", 1, "something else", (), None)
    assert logger.filter(other)
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully.")
    assert not caught
    logger.filters.clear()
    with pytest.raises(ValueError, match="`verbose` must be true or false"):
        quiet_optional_decoders(verbose="loud")


def test_lists_of_a_datalist_without_split(tmp_path, caplog):
    root = str(tmp_path)
    tagged = {"classes": ["a", "b"], "training": [{"image": os.path.join(root, "t0.png"), "tags": [1, 0]}]}
    summary = RunSummary(root, root, tagged, "cpu", num_epochs=3, epoch_length=2, split_order=None, seed=1)
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs, engine.state.epoch_length = 3, 2
    with caplog.at_level(logging.INFO, logger="monai_wsss"):
        summary.attach(engine)
    lines = [r.getMessage() for r in caplog.records if r.name == "monai_wsss"]
    assert lines[0].endswith("lists of the datalist: 1 training; device cpu; 3 epochs x 2 iterations = 6 iterations.")
    assert lines[1:] == ["training (1): t0.png"]
