"""The model-zoo configs of bundles/weakly_supervised_seg (inference, evaluate, multi_gpu_train), real tiles."""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, run_two_cpu_ranks
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.networks.nets import UNet
from monai.transforms import LoadImage
from PIL import Image

BUNDLE = os.path.join(REPO, "bundles", "weakly_supervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
META = os.path.join(CONFIGS, "metadata.json")
TINY_UNET = {"channels": [4, 8, 16], "strides": [2, 2]}
SEGMENT = {"segment::batch_size": 4, "segment::num_epochs": 1, "segment::epoch_length": 2}

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


def _workflow(configs: list[str], workflow_type: str, tmp: str, **over) -> ConfigWorkflow:
    files = [os.path.join(CONFIGS, c) for c in configs]
    wf = ConfigWorkflow(config_file=files, meta_file=META, workflow_type=workflow_type, bundle_root=tmp, **over)
    wf.initialize()
    return wf


def _run(wf: ConfigWorkflow) -> ConfigWorkflow:
    wf.run()
    wf.finalize()
    return wf


def _tiny_unet(image_channels: int = 1, num_classes: int = 2) -> UNet:
    return UNet(2, image_channels, num_classes, num_res_units=2, norm="batch", **TINY_UNET)


def test_segment_then_evaluate_reports_the_same_metrics(tmp_path, small_tagged):
    """evaluate.json reloads the segmenter that segment.json saved and scores it on the same real test masks."""
    tmp = str(tmp_path)
    unet = {f"segment::networks::plain::{k}": v for k, v in TINY_UNET.items()}
    trained = _run(_workflow(["segment.json"], "train", tmp, dataset_dir=small_tagged, **unet, **SEGMENT))
    during_training = trained.parser.get_parsed_content("segment::evaluator").state.metrics
    name = os.path.basename(small_tagged)
    assert os.path.isfile(f"{tmp}/models/segmenter_{name}/model.pt")

    wf = _workflow(["segment.json", "evaluate.json"], "infer", tmp, dataset_dir=small_tagged, **unet)
    assert wf.check_properties() == []
    metrics = _run(wf).parser.get_parsed_content("evaluator").state.metrics
    assert set(metrics) == {"dice", "dice_per_class", "jaccard", "miou"}
    for k, v in during_training.items():  # same weights, same tiles: same numbers
        assert metrics[k] == pytest.approx(v, abs=1e-6), (k, metrics, during_training)
    out = f"{tmp}/eval/segmenter_{name}/evaluate"
    with open(f"{out}/metrics.csv") as f:
        saved = {row[0]: float(row[1]) for row in csv.reader(f) if row}
    assert saved == pytest.approx(metrics)
    with open(f"{out}/dice_raw.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 4  # header + one row per test tile
    assert len([f for f in os.listdir(out) if f.endswith("_overlay.png")]) == 4


def test_inference_writes_labels_in_the_input_space(tmp_path, small_tagged):
    """PNG in -> PNG label map out (same size, same axes); other formats (here 2D NIfTI) -> NIfTI with the input's
    shape and affine; sizes that are no multiple of 8 are padded for the UNet and cropped back."""
    tmp = str(tmp_path)
    torch.manual_seed(0)
    net = _tiny_unet().eval()  # untrained: a non-trivial label pattern, so axis mix-ups would show
    ckpt = os.path.join(tmp, "model.pt")
    torch.save(net.state_dict(), ckpt)
    tile = json.load(open(os.path.join(small_tagged, "dataset.json")))["test"][0]["image"]
    os.makedirs(f"{tmp}/in")
    pixels = np.asarray(Image.open(tile))
    Image.fromarray(pixels).save(f"{tmp}/in/square.png")
    Image.fromarray(pixels[2:31, 5:26]).save(f"{tmp}/in/odd.png")  # 29 x 21 pixels
    load = LoadImage(image_only=True, ensure_channel_first=True)
    affine = np.diag([-0.5, 0.25, 1.0, 1.0])
    affine[:2, 3] = [12.0, -3.0]
    odd = np.asarray(load(f"{tmp}/in/odd.png"))[0]  # MONAI axes of the PNG
    nib.save(nib.Nifti1Image(odd.astype(np.float32), affine), f"{tmp}/in/odd.nii.gz")

    over = {f"network_def#{k}": v for k, v in TINY_UNET.items()}
    over.update(dataset_dir=f"{tmp}/in", ckpt_path=ckpt)
    pngs = [f"{tmp}/in/square.png", f"{tmp}/in/odd.png"]
    wf = _workflow(["inference.json"], "infer", tmp, datalist=pngs, output_dir=f"{tmp}/out", **over)
    assert wf.check_properties() == []
    _run(wf)
    _run(_workflow(["inference.json"], "infer", tmp, datalist=[f"{tmp}/in/odd.nii.gz"], **over))
    assert sorted(os.listdir(f"{tmp}/out")) == [
        "odd_overlay.png",
        "odd_seg.png",
        "square_overlay.png",
        "square_seg.png",
    ]
    for stem in ("square", "odd"):
        seg = Image.open(f"{tmp}/out/{stem}_seg.png")
        assert seg.size == Image.open(f"{tmp}/in/{stem}.png").size and seg.mode == "L"
    with torch.no_grad():
        expected = net(load(f"{tmp}/in/square.png")[None].float() / 255).argmax(1)[0]
    square = torch.as_tensor(np.asarray(load(f"{tmp}/out/square_seg.png"))[0])
    assert 0 < int(square.sum()) < square.numel()  # both classes present
    torch.testing.assert_close(square, expected.float(), check_dtype=False)

    nifti = nib.load(f"{tmp}/eval/inference/odd_seg.nii.gz")  # the default output_dir under bundle_root
    assert nifti.shape == odd.shape and nifti.get_data_dtype() == np.uint8
    np.testing.assert_allclose(nifti.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), np.asarray(load(f"{tmp}/out/odd_seg.png"))[0])


def test_inference_network_def_matches_metadata():
    """What the model zoo's CI runs against inference.json alone: one prediction tensor with the declared channels."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", meta_file=META, config_file=os.path.join(CONFIGS, "inference.json"), n=2)
    parser = ConfigParser()
    parser.read_config(os.path.join(CONFIGS, "inference.json"))
    parser.read_meta(META)
    assert parser["_meta_::network_data_format::outputs::pred::num_channels"] == parser["num_classes"]
    assert parser["_meta_::network_data_format::outputs::pred::channel_def"] == {"0": "background", "1": "nucleus"}


def test_train_classifier_properties(tmp_path, small_tagged):
    """The classifier training config that multi_gpu_train.json overrides has the train workflow's properties."""
    wf = _workflow(["train_classifier.json"], "train", str(tmp_path), dataset_dir=small_tagged)
    assert wf.check_properties() == []


def test_multi_gpu_classifier_two_cpu_processes(tmp_path, small_tagged):
    """torchrun, 2 CPU processes (gloo): each rank trains on its half of the tiles, the ranks end with identical
    parameters, and only rank 0 writes checkpoints and the learning curve."""
    tmp = str(tmp_path)
    args = ["--dataset_dir", small_tagged, "--roi_size", "[32,32]", "--model_name", "resnet10"]
    args += ["--batch_size", "2", "--num_epochs", "2"]
    configs = [f"{CONFIGS}/train_classifier.json", f"{CONFIGS}/multi_gpu_train.json"]
    w0, w1 = run_two_cpu_ranks(tmp, configs, META, tmp, args)
    assert w0.keys() == w1.keys()
    # BatchNorm running statistics are only broadcast from rank 0 before each forward (DDP broadcast_buffers)
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 20 and "classifier.weight" in params
    for k in params:
        torch.testing.assert_close(w0[k], w1[k], msg=f"ranks differ in {k}")
    saved = torch.load(os.path.join(tmp, "models_rank0", "model.pt"), weights_only=True)
    assert saved.keys() == w0.keys()  # DDP unwrapped: no "module." prefix
    torch.testing.assert_close(saved["classifier.weight"], w0["classifier.weight"])
    assert sorted(os.listdir(os.path.join(tmp, "models_rank0"))) == ["checkpoint_epoch=2.pt", "model.pt"]
    ckpt = torch.load(os.path.join(tmp, "models_rank0", "checkpoint_epoch=2.pt"), weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 * 3  # 12 tiles / 2 ranks / batch 2 = 3 iterations per epoch
    assert os.path.isfile(os.path.join(tmp, "outputs_rank0", "classifier_learning_curve.csv"))
    assert not os.path.exists(os.path.join(tmp, "models_rank1"))
    assert not os.path.exists(os.path.join(tmp, "outputs_rank1"))


def test_segment_network_and_loss_are_picked_by_target(tmp_path, small_tagged):
    """Any MONAI network and loss drop into the segment:: section by `_target_`, with no library edit."""
    from monai.losses import DiceFocalLoss
    from monai.networks.nets import SegResNet

    tmp = str(tmp_path)
    over = {
        "segment::loss": {"_target_": "DiceFocalLoss", "to_onehot_y": True, "softmax": True},
        "segment::network_def": {
            "_target_": "SegResNet",
            "spatial_dims": 2,
            "in_channels": "@image_channels",
            "out_channels": "@num_classes",
            "init_filters": 8,
        },
        "segment::num_epochs": 1,
        "segment::epoch_length": 2,
        "segment::batch_size": 4,
    }
    wf = _run(_workflow(["segment.json"], "train", tmp, dataset_dir=small_tagged, **over))
    recipe = wf.parser.get_parsed_content("segment::recipe")
    assert isinstance(recipe.loss, DiceFocalLoss) and isinstance(recipe.network, SegResNet)
    assert recipe.trainer.state.iteration == 2 and 0.0 <= recipe.evaluator.state.metrics["dice"] <= 1.0
    saved = torch.load(f"{tmp}/models/segmenter_{os.path.basename(small_tagged)}/model.pt", weights_only=True)
    assert saved.keys() == recipe.network.state_dict().keys()
