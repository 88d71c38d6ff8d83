"""
Issue 18, item 6: the model zoo's checks (``ci/verify_bundle.py`` in full mode runs MONAI's own
``verify_metadata``, ``verify_net_in_out`` and ``ckpt_export`` on ``configs/inference.json`` alone) on every bundle,
on CPU with untrained weights, plus the standard files the zoo's layout expects. Where TorchScript scripting cannot
apply (the bundle docs say why), the test checks that it still fails, so the docs stay true, and that the
documented replacement, a TorchScript module traced at the inferer's input size, exports, loads and runs.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from monai_wsss.errors import SettingsError, find_input_error

SCHEMA = os.path.join(REPO, "monai_wsss", "schemas", "meta_schema_20240725.json")

# bundle -> None (scripted TorchScript export applies) or the input shape of the traced export, which is the shape
# the bundle's inferer feeds the network (sliding-window / slice roi_size; pix2pix: the one-hot mask of a tile).
EXPORT = {
    "weakly_supervised_seg": None,
    "geometric_active_learning": None,
    "dtc_semisupervised_seg": [1, 1, 64, 64, 32],
    "cotraining_semisupervised_seg": [1, 1, 96, 96],
    "pix2pix_microscopy_synthesis": [1, 2, 128, 128],
}
BUNDLES = sorted(EXPORT)


def _paths(bundle: str) -> tuple[str, str, str]:
    root = os.path.join(REPO, "bundles", bundle)
    return root, os.path.join(root, "configs", "metadata.json"), os.path.join(root, "configs", "inference.json")


def _in_channels(parser: ConfigParser) -> int:
    return int(parser.get_parsed_content("network_def::in_channels"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_standard_files(bundle):
    root, _, _ = _paths(bundle)
    for name in ("LICENSE", "docs/README.md", "configs/metadata.json", "configs/inference.json", "configs/train.json"):
        assert os.path.isfile(os.path.join(root, name)), f"{bundle}: no {name}"
    assert os.path.isfile(os.path.join(root, "configs", "multi_gpu_train.json")), f"{bundle}: no multi_gpu_train.json"
    with open(os.path.join(root, "configs", "metadata.json")) as f:
        meta = json.load(f)
    assert meta["version"] in meta["changelog"]
    with open(os.path.join(root, "docs", "README.md")) as f:
        assert "## Model-zoo verification" in f.read(), f"{bundle}: docs do not state the zoo verification"


def test_advcam_train_json_trains_the_inference_network():
    """train.json is segment.json (one file), whose segmenter is the network inference.json serves."""
    configs = os.path.join(REPO, "bundles", "weakly_supervised_seg", "configs")
    assert os.path.samefile(os.path.join(configs, "train.json"), os.path.join(configs, "segment.json"))
    train, infer = ConfigParser(), ConfigParser()
    train.read_config(os.path.join(configs, "train.json"))
    train.update({"num_classes": 2, "image_channels": 1, "device": "cpu"})  # inference.json's defaults, no data read
    infer.read_config(os.path.join(configs, "inference.json"))
    torch.manual_seed(0)
    trained = train.get_parsed_content("segment::network")
    net = infer.get_parsed_content("network_def")
    net.load_state_dict(trained.state_dict(), strict=True)  # the weights segment.json saves load into inference


def test_active_learning_multi_gpu_is_a_clear_refusal():
    configs = os.path.join(REPO, "bundles", "geometric_active_learning", "configs")
    parser = ConfigParser()
    parser.read_config([os.path.join(configs, "train.json"), os.path.join(configs, "multi_gpu_train.json")])
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("initialize")
    err = find_input_error(info.value)
    assert isinstance(err, SettingsError) and err.file == "configs/multi_gpu_train.json"
    assert "does not train on several GPUs or processes" in err.problem and "--device" in err.hint


@pytest.mark.parametrize("bundle", BUNDLES)
def test_zoo_checks_on_inference_json(tmp_path, bundle):
    root, meta, inference = _paths(bundle)
    verify_metadata(meta_file=meta, filepath=SCHEMA)
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, bundle_root=root)

    parser = ConfigParser()
    parser.read_config(inference)
    parser.read_meta(meta)
    parser["bundle_root"] = root
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    ckpt = str(tmp_path / "model.pt")
    torch.save(net.state_dict(), ckpt)
    ts = str(tmp_path / "model.ts")
    kwargs = dict(filepath=ts, ckpt_file=ckpt, meta_file=meta, config_file=inference, bundle_root=root)
    shape = EXPORT[bundle]
    if shape is None:
        ckpt_export("network_def", **kwargs)  # the zoo's own call: scripting
    else:
        with pytest.raises(
            (RuntimeError, torch.jit.frontend.FrontendError)
        ):  # scripting does not apply (docs/README.md, Model-zoo verification)
            ckpt_export("network_def", **kwargs)
        ckpt_export("network_def", use_trace=True, input_shape=shape, **kwargs)
    loaded = torch.jit.load(ts)
    x = torch.rand(
        *(shape or [1, _in_channels(parser), *[32] * parser.get_parsed_content("network_def::spatial_dims")])
    )
    if bundle == "pix2pix_microscopy_synthesis":
        x = torch.nn.functional.one_hot((x[:, 0] > 0.5).long(), 2).movedim(-1, 1).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-4, atol=1e-5)
