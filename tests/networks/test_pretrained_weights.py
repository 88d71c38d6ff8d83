"""load_pretrained_weights / PretrainedWeightsLoader / export_encoder, and `pretrained_weights` in every segmentation
bundle: by name, report of loaded / missing / unexpected, clear errors on a wrong file or a shape mismatch."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser

from monai_wsss.errors import SettingsError
from monai_wsss.handlers import PretrainedWeightsLoader
from monai_wsss.networks import DualTaskVNet, SegmentationEnsemble, export_encoder, load_pretrained_weights


def _vnet(**kw) -> DualTaskVNet:
    return DualTaskVNet(spatial_dims=2, in_channels=1, out_channels=1, features=4, **kw)


def test_encoder_loads_by_name_and_heads_keep_their_values(tmp_path, caplog):
    torch.manual_seed(0)
    src, dst = _vnet(), _vnet()
    full = str(tmp_path / "model.pt")
    torch.save({"model": src.state_dict()}, full)  # a checkpoint-style dict is unwrapped
    enc = str(tmp_path / "encoder.pt")
    assert export_encoder([str(tmp_path / "absent.pt"), full], enc) == full
    saved = torch.load(enc, weights_only=True)
    assert saved and all(k.startswith("backbone.") for k in saved)
    head_before = dst.seg_head.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        report = load_pretrained_weights(dst, enc)
    assert set(report["loaded"]) == set(saved)
    assert report["missing"] == ["seg_head.weight", "seg_head.bias", "sdf_head.weight", "sdf_head.bias"]
    assert report["unexpected"] == []
    for k, v in dst.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(v, src.state_dict()[k])
    assert torch.equal(dst.seg_head.weight, head_before)
    assert f"{len(saved)} of the network's {len(saved) + 4} tensors loaded; 4 missing" in caplog.text


def test_prefixes_fill_every_member_and_unexpected_are_reported(tmp_path):
    member = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 2, 1))
    src = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    state = dict(src.state_dict(), extra=torch.zeros(1))
    path = str(tmp_path / "w.pt")
    torch.save(state, path)
    ens = SegmentationEnsemble(member, num_models=2)
    report = load_pretrained_weights(ens, path, prefix=["members.0.", "members.1."])
    assert report["unexpected"] == ["extra"]
    assert sorted(report["loaded"]) == sorted(f"members.{i}.0.{p}" for i in (0, 1) for p in ("weight", "bias"))
    for i in (0, 1):
        assert torch.equal(ens.members[i][0].weight, src[0].weight)


def test_none_is_a_no_op():
    net = _vnet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_pretrained_weights(net, None) is None and load_pretrained_weights(net, "") is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_shape_mismatch_names_file_and_tensor(tmp_path):
    path = str(tmp_path / "encoder.pt")
    torch.save(_vnet().state_dict(), path)
    bigger = DualTaskVNet(spatial_dims=2, in_channels=1, out_channels=1, features=8)
    with pytest.raises(SettingsError, match="backbone.encoder.0.0.conv.weight") as e:
        load_pretrained_weights(bigger, path)
    assert e.value.file == path and "shape (4, 1, 3, 3)" in str(e.value) and "(8, 1, 3, 3)" in str(e.value)


def test_wrong_files_fail_clearly(tmp_path):
    net = _vnet()
    with pytest.raises(SettingsError, match="not found"):
        load_pretrained_weights(net, str(tmp_path / "missing.pt"))
    text = tmp_path / "notes.pt"
    text.write_text("not torch weights")
    with pytest.raises(SettingsError, match="cannot be read as torch weights") as e:
        load_pretrained_weights(net, str(text))
    assert e.value.file == str(text)
    other = str(tmp_path / "other.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(SettingsError, match="none of its 2 tensor names matches"):
        load_pretrained_weights(net, other)
    listing = str(tmp_path / "list.pt")
    torch.save([1, 2], listing)
    with pytest.raises(SettingsError, match="no state dict"):
        load_pretrained_weights(net, listing)


def test_handler_skips_when_the_run_resumes(tmp_path, caplog):
    path = str(tmp_path / "encoder.pt")
    src = _vnet()
    torch.save(src.state_dict(), path)
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    net = _vnet()
    loader = PretrainedWeightsLoader(path, net, ckpt_dir=str(ckpt), resume=True)
    loader.attach(None)
    assert loader.report is not None and torch.equal(net.seg_head.weight, src.seg_head.weight)
    (ckpt / "checkpoint_epoch=3.pt").write_bytes(b"")
    fresh = _vnet()
    skipped = PretrainedWeightsLoader(path, fresh, ckpt_dir=str(ckpt), resume=True)
    with caplog.at_level(logging.INFO):
        skipped.attach(None)
    assert skipped.skipped_for == str(ckpt / "checkpoint_epoch=3.pt")
    assert skipped.report is None and not torch.equal(fresh.seg_head.weight, src.seg_head.weight)
    assert "not loaded: the run resumes from a checkpoint" in caplog.text
    forced = PretrainedWeightsLoader(path, fresh, ckpt_dir=str(ckpt), resume=False)
    forced.attach(None)
    assert forced.report is not None


# every segmentation bundle: one `pretrained_weights` key (null by default) wired to a PretrainedWeightsLoader on
# the network the trainer optimises; weights of that network load by name, a V-Net encoder into a U-Net is refused
BUNDLES = {
    "dtc": (["dtc_semisupervised_seg/configs/train.json"], "train::handlers", "network_def"),
    "cotraining": (["cotraining_semisupervised_seg/configs/train.json"], "train::handlers", "network_def"),
    "ocr": (["ocr_supervised_seg/configs/train.json"], "segment::handlers", "segment::network_def"),
    "advcam": (
        ["weakly_supervised_seg/configs/segment.json"],
        "segment::handlers",
        "segment::network_def",
    ),
    "pix2pix": (
        ["pix2pix_microscopy_synthesis/configs/train.json", "pix2pix_microscopy_synthesis/configs/segment.json"],
        "segment::handlers",
        "segment::network_def",
    ),
}


def _parser(files: list[str]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([os.path.join(REPO, "bundles", f) for f in files])
    for key, value in (("image_channels", 3), ("num_classes", 3), ("head", "plain")):
        if key in parser.config:
            parser[key] = value  # instead of reading a data folder
    return parser


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_every_segmentation_bundle_loads_pretrained_weights(name, tmp_path):
    files, handlers_id, net_id = BUNDLES[name]
    parser = _parser(files)
    assert parser["pretrained_weights"] is None
    handlers = parser[handlers_id]
    entries = [h for h in handlers if isinstance(h, dict) and h.get("_target_", "").endswith("PretrainedWeightsLoader")]
    assert len(entries) == 1 and entries[0]["path"] == "@pretrained_weights" and entries[0]["resume"] == "@resume"
    torch.manual_seed(1)
    trained = parser.get_parsed_content(net_id, instantiate=True)
    path = str(tmp_path / "model.pt")
    torch.save(trained.state_dict(), path)
    fresh = _parser(files).get_parsed_content(net_id, instantiate=True)
    report = load_pretrained_weights(fresh, path)
    assert report["missing"] == [] and report["unexpected"] == []
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in fresh.state_dict().items())
    if name != "dtc":  # a 3D V-Net encoder does not fit these 2D U-Nets: refused, naming the file
        enc = str(tmp_path / "encoder.pt")
        torch.save(DualTaskVNet(features=4).backbone.state_dict(), enc)
        with pytest.raises(SettingsError) as e:
            load_pretrained_weights(fresh, enc)
        assert e.value.file == enc


def test_bundle_docs_name_the_key():
    for name, (files, _, _) in BUNDLES.items():
        readme = os.path.join(REPO, "bundles", files[0].split("/")[0], "docs", "README.md")
        if name == "ocr":
            continue  # its docs are the lead's (bundle in progress)
        with open(readme) as f:
            assert "pretrained_weights" in f.read(), readme
