"""The model-zoo configs of bundles/geometric_active_learning (inference, evaluate) on the real MNI152 tissue slabs at
4 mm (conftest.py), against the model.pt that a 1-round loop of train.json saved."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser, ConfigWorkflow

BUNDLE = os.path.join(REPO, "bundles", "geometric_active_learning")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
STRATEGY = "entropy"  # not the default strategy, so the strategy key must select the checkpoint
# one sliding window covers a tiny slab padded to [4, 4, 1] (49 x 58 x 3 -> 52 x 60 x 3), so the window prediction is
# the full-image prediction the inference test recomputes by hand
TINY = {"network_channels": [4, 8, 16], "roi_size": [52, 60, 3]}
LOOP = {
    "num_rounds": 1,
    "num_epochs": 1,
    "epoch_length": 30,
    "regions_per_round": 20,
    "n_segments": 60,
    "device": "cpu",
    **TINY,
}

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tissue_dataset) -> tuple[str, dict]:
    """bundle_root with ``outputs/entropy/model.pt`` from one round of the loop, and the loop's curve row."""
    root = str(tmp_path_factory.mktemp("al_bundle_root"))
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=META,
        workflow_type="train",
        bundle_root=root,
        dataset_dir=tiny_tissue_dataset,
        strategy={"_target_": "monai_wsss.active.EntropyStrategy"},
        **LOOP,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    assert os.path.isfile(os.path.join(root, "outputs", STRATEGY, "model.pt"))
    with open(os.path.join(root, "outputs", f"learning_curve_{STRATEGY}.csv")) as f:
        (row,) = list(csv.DictReader(f))
    return root, row


def _infer(root: str, configs: list[str], **over) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, c) for c in configs]
    wf = ConfigWorkflow(config_file=files, meta_file=META, workflow_type="infer", bundle_root=root, **TINY, **over)
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return wf


def test_evaluate_reproduces_the_loops_held_out_scores(trained, tiny_tissue_dataset):
    """evaluate.json scores the saved model of a strategy on the held-out slabs with the loop's definitions."""
    root, row = trained
    wf = _infer(root, ["inference.json", "evaluate.json"], dataset_dir=tiny_tissue_dataset, strategy=STRATEGY)
    metrics = wf.parser.get_parsed_content("evaluator").state.metrics
    assert metrics["dice"] > 0.1, metrics  # a trained network, not all background
    assert metrics["dice"] == pytest.approx(float(row["dice"]), abs=1e-5), (metrics, row)
    assert metrics["iou"] == pytest.approx(float(row["iou"]), abs=1e-5), (metrics, row)
    per_class = np.asarray(metrics["dice_per_class"])
    assert per_class.shape == (2,) and np.mean(per_class) == pytest.approx(metrics["dice"], abs=1e-5)
    assert np.asarray(metrics["iou_per_class"]).shape == (2,)

    out = os.path.join(root, "eval", STRATEGY)  # the default output_dir under bundle_root
    with open(os.path.join(out, "metrics.csv")) as f:
        assert {r[0] for r in csv.reader(f) if r} == {"dice", "iou", "dice_per_class", "iou_per_class"}
    test = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))["test"]
    with open(os.path.join(out, "dice_raw.csv")) as f:
        assert len(list(csv.reader(f))) == 1 + len(test)  # header + one row per held-out case
    for case in test:
        name = os.path.basename(case["image"]).split(".")[0]
        seg = nib.load(os.path.join(out, f"{name}_seg.nii.gz"))
        ref = nib.load(os.path.join(tiny_tissue_dataset, case["label"]))
        assert seg.shape == ref.shape and seg.get_data_dtype() == np.uint8
        np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}
        assert os.path.isfile(os.path.join(out, f"{name}_overlay.png"))


def test_inference_writes_labels_in_the_input_space(trained, tiny_tissue_dataset, tmp_path):
    """A folder of volumes (no datalist): a RAS slab whose size is no multiple of the divisor (padded, cropped back)
    and the same slab stored with permuted, flipped, anisotropic axes; each label map has its input's shape and
    affine, the two agree voxel by voxel, and the RAS one is the loop's own padded argmax prediction."""
    root, _ = trained
    case = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))["test"][0]
    src = nib.load(os.path.join(tiny_tissue_dataset, case["image"]))
    arr, aff = np.asarray(src.dataobj, dtype=np.float32), src.affine
    assert arr.shape[0] % 4 and nib.aff2axcodes(aff) == ("R", "A", "S")
    # voxel (k, i', j) of the second file is voxel (i = n0 - 1 - i', j, k) of the first; its k axis is 1.5x longer
    sla = np.ascontiguousarray(arr.transpose(2, 0, 1)[:, ::-1])
    sla_aff = np.eye(4)
    sla_aff[:3, 0], sla_aff[:3, 1], sla_aff[:3, 2] = 1.5 * aff[:3, 2], -aff[:3, 0], aff[:3, 1]
    sla_aff[:3, 3] = aff[:3, 3] + (arr.shape[0] - 1) * aff[:3, 0]
    assert nib.aff2axcodes(sla_aff) == ("S", "L", "A")
    in_dir, out_dir = str(tmp_path / "in"), str(tmp_path / "out")
    os.makedirs(in_dir)
    nib.save(nib.Nifti1Image(arr, aff), os.path.join(in_dir, "slab_ras.nii.gz"))
    nib.save(nib.Nifti1Image(sla, sla_aff), os.path.join(in_dir, "slab_sla.nii.gz"))

    wf = _infer(root, ["inference.json"], dataset_dir=in_dir, output_dir=out_dir, strategy=STRATEGY)
    assert sorted(os.listdir(out_dir)) == [
        "slab_ras_overlay.png",
        "slab_ras_seg.nii.gz",
        "slab_sla_overlay.png",
        "slab_sla_seg.nii.gz",
    ]
    seg_ras = nib.load(os.path.join(out_dir, "slab_ras_seg.nii.gz"))
    seg_sla = nib.load(os.path.join(out_dir, "slab_sla_seg.nii.gz"))
    assert seg_ras.shape == arr.shape and seg_sla.shape == sla.shape
    np.testing.assert_allclose(seg_ras.affine, aff, atol=1e-4)
    np.testing.assert_allclose(seg_sla.affine, sla_aff, atol=1e-4)
    ras = np.asarray(seg_ras.dataobj)
    np.testing.assert_array_equal(np.asarray(seg_sla.dataobj), ras.transpose(2, 0, 1)[:, ::-1])

    # the loop's predict(): replicate-pad the end of each axis to [4, 4, 1], argmax, crop
    net = wf.parser.get_parsed_content("network").eval()
    x = torch.as_tensor(arr)[None, None]
    pad = [0, 0, 0, -arr.shape[1] % 4, 0, -arr.shape[0] % 4]
    with torch.no_grad():
        expected = net(torch.nn.functional.pad(x, pad, mode="replicate"))[0].argmax(0)
    expected = expected[: arr.shape[0], : arr.shape[1], : arr.shape[2]].numpy()
    assert len(np.unique(expected)) >= 2  # a label pattern, so axis mix-ups would show
    np.testing.assert_array_equal(ras, expected)


def test_cli_inference_on_the_test_list(trained, tiny_tissue_dataset):
    """``python -m monai.bundle run`` with inference.json: by default the dataset's test list, written under
    ``eval/<strategy>/inference``."""
    root, _ = trained
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", os.path.join(CONFIGS, "inference.json")]
    cmd += ["--meta_file", META, "--bundle_root", root, "--dataset_dir", tiny_tissue_dataset]
    cmd += ["--strategy", STRATEGY, "--network_channels", "[4,8,16]", "--roi_size", "[52,60,3]"]
    cmd += ["--save_overlays", "False"]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = os.path.join(root, "eval", STRATEGY, "inference")
    test = json.load(open(os.path.join(tiny_tissue_dataset, "dataset.json")))["test"]
    names = sorted(os.path.basename(c["image"]).split(".")[0] for c in test)
    assert sorted(os.listdir(out)) == [f"{n}_seg.nii.gz" for n in names]
    for case in test:
        ref = nib.load(os.path.join(tiny_tissue_dataset, case["image"]))
        seg = nib.load(os.path.join(out, os.path.basename(case["image"]).split(".")[0] + "_seg.nii.gz"))
        assert seg.shape == ref.shape
        np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)


def test_inference_network_is_the_trained_unet(tiny_tissue_dataset):
    """What the model zoo's CI runs against inference.json alone, and the same UNet, strategy, padding and
    sliding-window inferer as train.json (so the loop's model.pt loads and predicts as in the loop)."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def", meta_file=META, config_file=os.path.join(CONFIGS, "inference.json"), n=2, device="cpu"
    )
    infer, train = ConfigParser(), ConfigParser()
    infer.read_config(os.path.join(CONFIGS, "inference.json"))
    infer.read_meta(META)
    train.read_config(os.path.join(CONFIGS, "train.json"))
    train["dataset_dir"] = tiny_tissue_dataset
    assert infer.get_parsed_content("strategy") == train.get_parsed_content("strategy").name
    keys = ("network_channels", "network_strides", "divisible_by", "roi_size", "sw_overlap", "num_classes")
    for key in (*keys, "image_channels"):
        assert infer.get_parsed_content(key) == train.get_parsed_content(key), key
    assert infer.get("inferer") == train.get("inferer")  # the same sliding-window inferer as the loop's
    assert repr(infer.get_parsed_content("network_def")) == repr(train.get_parsed_content("network_def"))
    channel_def = infer["_meta_::network_data_format::outputs::pred::channel_def"]
    assert len(channel_def) == infer["num_classes"]
