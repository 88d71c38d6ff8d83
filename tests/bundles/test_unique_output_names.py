"""Issue 18, item 5: inference gives inputs that share a file name in different folders their own outputs (SaveImaged
and the overlay PNGs under ``data_root_dir = output_root_dir(inputs)``), keeps flat names when the inputs share one
folder, and refuses, naming both, two inputs that would still collide."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_wsss.utils import output_root_dir

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")


def test_output_root_dir(tmp_path):
    a, b = str(tmp_path / "x" / "a" / "scan.nii.gz"), str(tmp_path / "x" / "b" / "scan.nii.gz")
    assert output_root_dir([a, b]) == str(tmp_path / "x")
    assert output_root_dir([{"image": a}, {"image": str(tmp_path / "x" / "a" / "other.nii")}]) == str(
        tmp_path / "x" / "a"
    )
    assert output_root_dir([{"image": a, "label": "l"}, {"label": "only"}], key="image") == str(tmp_path / "x" / "a")
    assert output_root_dir([]) == ""
    assert output_root_dir([a, a]) == str(tmp_path / "x" / "a")  # the same file twice is one output
    with pytest.raises(ValueError, match=r"scan\.nii and .*scan\.nii\.gz would be saved under the same output name"):
        output_root_dir([str(tmp_path / "x" / "a" / "scan.nii"), a])


def _checkpoint(tmp: str) -> str:
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "inference.json"))
    parser["network_def"]["features"] = 8
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    path = os.path.join(tmp, "model.pt")
    torch.save(net.state_dict(), path)
    return path


def _infer(tmp: str, datalist: list[str], ckpt: str, out: str) -> None:
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "inference.json"),
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        workflow_type="infer",
        bundle_root=BUNDLE,
        datalist=datalist,
        ckpt_path=ckpt,
        output_dir=out,
        device="cpu",
        roi_size=[32, 32, 32],
        **{"network_def#features": 8},
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_inputs_with_one_file_name_in_two_folders_get_two_outputs(tmp_path, robex_small):
    image, _, affine = robex_small
    tmp = str(tmp_path)
    inputs = []
    for sub, arr in (("site_a", image), ("site_b", image[:, :, :30].copy())):  # told apart by their shapes
        os.makedirs(os.path.join(tmp, "data", sub))
        inputs.append(os.path.join(tmp, "data", sub, "scan.nii.gz"))
        nib.save(nib.Nifti1Image(arr, affine), inputs[-1])
    ckpt = _checkpoint(tmp)

    out = os.path.join(tmp, "eval")
    _infer(tmp, inputs, ckpt, out)
    files = _files(out)
    assert files == [
        "site_a/scan_overlay.png",
        "site_a/scan_seg.nii.gz",
        "site_b/scan_overlay.png",
        "site_b/scan_seg.nii.gz",
    ], files
    segs = [np.asarray(nib.load(os.path.join(out, s, "scan_seg.nii.gz")).dataobj) for s in ("site_a", "site_b")]
    assert segs[0].shape == image.shape and segs[1].shape == image[:, :, :30].shape  # neither overwrote the other

    flat = os.path.join(tmp, "eval_flat")  # one folder: the usual flat names
    _infer(tmp, inputs[:1], ckpt, flat)
    assert _files(flat) == ["scan_overlay.png", "scan_seg.nii.gz"]
