"""The Slicer module's Logic without Slicer (``integrations/slicer/MONAIWSSS/MONAIWSSS.py`` imports with ``slicer``,
``qt``, ``vtk`` absent): runner commands, a real inference through the runner in a subprocess, error messages,
the active-learning calls and the plane-to-slice-view matrix."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(REPO, "integrations", "slicer", "MONAIWSSS", "MONAIWSSS.py")


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("MONAIWSSS", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.slicer is None  # imported as plain Python
    return module


@pytest.fixture
def logic(mod):
    return mod.MONAIWSSSLogic(python=sys.executable, timeout=300)


def test_command_and_default_python(mod, logic, monkeypatch):
    expected_cmd = [sys.executable, "-m", "monai_wsss.apps.slicer", "infer", "--bundle", "b"]
    assert logic.command("infer", "--bundle", "b") == expected_cmd
    monkeypatch.setenv("MONAI_WSSS_PYTHON", "/opt/py/bin/python")
    assert mod.MONAIWSSSLogic().python == "/opt/py/bin/python"
    monkeypatch.delenv("MONAI_WSSS_PYTHON")
    expected = os.path.join(REPO, ".venv", "bin", "python")
    assert mod.MONAIWSSSLogic().python == (expected if os.path.isfile(expected) else "python3")


def test_bundles_lists_those_with_inference(mod):
    found = [os.path.basename(b) for b in mod.MONAIWSSSLogic.bundles(os.path.join(REPO, "bundles"))]
    assert "dtc_semisupervised_seg" in found and "geometric_active_learning" in found
    assert all(os.path.isfile(os.path.join(REPO, "bundles", b, "configs", "inference.json")) for b in found)
    assert mod.MONAIWSSSLogic.bundles("/no/such/folder") == []


def test_slice_to_ras_is_a_frame_on_the_plane(mod):
    m = np.asarray(mod.MONAIWSSSLogic.slice_to_ras([10.0, -5.0, 3.0], [0.0, 2.0, 2.0]))
    r = m[:3, :3]
    assert np.allclose(r.T @ r, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)  # orthonormal, right-handed
    assert np.allclose(r[:, 2], [0.0, 2 ** -0.5, 2 ** -0.5]) and np.allclose(m[:3, 3], [10.0, -5.0, 3.0])
    assert np.allclose(r[:, 0], [1.0, 0.0, 0.0])  # closest to RAS right
    lr = np.asarray(mod.MONAIWSSSLogic.slice_to_ras([0, 0, 0], [-1, 0, 0]))
    assert np.allclose(lr[:3, 2], [-1, 0, 0]) and np.allclose(lr[:3, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="non-zero 3D normal"):
        mod.MONAIWSSSLogic.slice_to_ras([0, 0, 0], [0, 0, 0])


def test_slicer_only_steps_say_so(logic):
    with pytest.raises(RuntimeError, match="needs 3D Slicer"):
        logic.showPlaneInSliceView({"center": [0, 0, 0], "normal": [0, 0, 1]})


def test_infer_through_the_runner_and_its_errors(tmp_path, logic, tiny_brain_dataset):
    root = tmp_path / "dtc"
    shutil.copytree(os.path.join(REPO, "bundles", "dtc_semisupervised_seg", "configs"), root / "configs")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    os.makedirs(root / "models")
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    image = os.path.join(tiny_brain_dataset, "imagesTr", "robex.nii.gz")
    result = logic.infer(str(root), image, str(tmp_path / "out"))
    assert result["segments"] == [{"value": 1, "name": "foreground"}]
    assert nib.load(result["segmentation"]).shape[:3] == nib.load(image).shape[:3]
    with pytest.raises(RuntimeError) as e:
        logic.infer(str(root), str(tmp_path / "missing.nii.gz"), str(tmp_path / "out"))
    assert str(e.value) == f"{tmp_path / 'missing.nii.gz'}: no such image file."


def test_active_learning_calls_reach_the_runner(tmp_path, logic, tiny_tissue_dataset):
    bundle = os.path.join(REPO, "bundles", "geometric_active_learning")
    settings = {"n_segments": 30, "num_epochs": 1, "epoch_length": 1, "roi_size": [32, 32, 3]}
    work = str(tmp_path / "session")
    curve = logic.learning_curve(bundle, tiny_tissue_dataset, work, "entropy", settings=settings)
    assert curve["rows"] == [] and curve["png"] is None and curve["csv"].endswith("learning_curve_entropy.csv")
    q = logic.next_query(bundle, tiny_tissue_dataset, work, "entropy", settings=settings)
    assert q["round"] == 0 and os.path.isfile(q["query_mask"]) and q["strategy"] == "entropy"
    assert json.load(open(os.path.join(work, "entropy", "pending_query.json"))) == q
