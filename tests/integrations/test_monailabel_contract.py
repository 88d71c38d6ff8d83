"""MONAI Label's bundle contract, per bundle, without ``monailabel``: each bundle's configs are loaded with MONAI's
``ConfigParser`` and given the overrides MONAI Label's bundle tasks apply (``monailabel/tasks/{infer,train}/
bundle.py`` 0.8.5); what it needs must resolve, and every part a bundle does not meet is named in its docs' "MONAI
Label" subsection. The app's plain-Python parts (``integrations/monailabel/wsss_app``) are tested here too."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged, SaveImaged

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "integrations", "monailabel"))

from wsss_app import (  # noqa: E402
    CONTRACT_PARTS,
    contract_report,
    image_score,
    infer_overrides,
    query_image,
    train_overrides,
    write_dataset_folder,
)

BUNDLES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(REPO, "bundles", "*", "configs")))
# the tiny real image each bundle is run on (conftest fixtures): (fixture, dataset.json list, index)
DATA = {
    "dtc_semisupervised_seg": "tiny_brain_dataset",
    "cotraining_semisupervised_seg": "tiny_tissue_dataset",
    "geometric_active_learning": "tiny_tissue_dataset",
    "weakly_supervised_seg": "nuclei_dataset",
    "pix2pix_microscopy_synthesis": "nuclei_dataset",
}


def _monailabel_section(bundle: str) -> str:
    path = os.path.join(REPO, "bundles", bundle, "docs", "README.md")
    if not os.path.isfile(path):
        return ""
    text = open(path).read()
    m = re.search(r"^(#+) MONAI Label\b.*?$(.*?)(?=^\1 |\Z)", text, flags=re.M | re.S)
    return m.group(2) if m else ""


def _copy_bundle(bundle: str, tmp) -> str:
    """The bundle as MONAI Label holds it, ``<app>/model/<name>`` (configs and docs only)."""
    root = os.path.join(str(tmp), "model", bundle)
    for sub in ("configs", "docs"):
        shutil.copytree(os.path.join(REPO, "bundles", bundle, sub), os.path.join(root, sub))
    return root


def _items(dataset_dir: str) -> list[dict]:
    meta = json.load(open(os.path.join(dataset_dir, "dataset.json")))
    out = []
    for d in meta.get("training", []) + meta.get("test", []):
        if d.get("label") and all(o["image"] != os.path.join(dataset_dir, d["image"]) for o in out):
            out.append({"image": os.path.join(dataset_dir, d["image"]), "label": os.path.join(dataset_dir, d["label"])})
    return out


@pytest.mark.parametrize("bundle", BUNDLES)
def test_unmet_parts_are_documented(bundle):
    report = contract_report(os.path.join(REPO, "bundles", bundle))
    assert set(report) == set(CONTRACT_PARTS)
    section = _monailabel_section(bundle)
    assert section, f"bundles/{bundle}/docs/README.md has no 'MONAI Label' subsection"
    missing = [part for part, why in report.items() if why is not None and f"`{part}`" not in section]
    assert not missing, f"{bundle}: unmet parts not named in its docs' MONAI Label subsection: {missing}"


def test_contract_report_on_a_broken_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        contract_report(str(tmp_path))
    os.makedirs(tmp_path / "configs")
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"network_data_format": {}}))
    (tmp_path / "configs" / "train.json").write_text("{not json")
    with pytest.raises(ValueError, match="train.json: not valid JSON"):
        contract_report(str(tmp_path))
    (tmp_path / "configs" / "train.json").write_text(json.dumps({"train": {"dataset": "@x", "trainer": {}}}))
    report = contract_report(str(tmp_path))
    assert report["configs/inference.json"].startswith("no configs/inference.json")
    assert report["train#dataset#data"] == "`train::dataset` is '@x', not a dataset component with `data`"
    assert report["train#trainer#max_epochs"] is not None and report["configs/logging.conf"] is not None


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_as_monailabel_loads_it(bundle, tmp_path, request):
    """BundleInferTask: bundle_root + device (+ network_def#dropout where declared), network_def with
    models/model.pt loaded, preprocessing / inferer / postprocessing less SaveImaged, first input / output keys of
    network_data_format and the channel_def labels; then one real prediction on a tiny image."""
    src = os.path.join(REPO, "bundles", bundle)
    if not os.path.isfile(os.path.join(src, "configs", "inference.json")):
        assert contract_report(src)["configs/inference.json"] is not None  # documented by the test above
        pytest.skip(f"{bundle} has no configs/inference.json (its docs say why)")
    root = _copy_bundle(bundle, tmp_path)
    parser = ConfigParser()
    parser.read_config(os.path.join(root, "configs", "inference.json"))
    declared = "dropout" in parser.config["network_def"]
    parser.config.update(infer_overrides(root, "cpu", dropout=0.2 if declared else None))
    if declared:
        parser["network_def#dropout"] = 0.2
    meta = json.load(open(os.path.join(root, "configs", "metadata.json")))
    key_image, image_fmt = next(iter(meta["network_data_format"]["inputs"].items()))
    key_pred, pred_fmt = next(iter(meta["network_data_format"]["outputs"].items()))
    labels = {v.lower(): int(k) for k, v in pred_fmt["channel_def"].items() if v.lower() != "background"}
    assert labels, "MONAI Label needs at least one foreground label name"

    network = parser.get_parsed_content("network_def", instantiate=True)
    # models/model.pt from the bundle's training network: MONAI Label loads it with strict=False, so a key mismatch
    # would silently keep random weights; require a strict match
    train_cfg = os.path.join(root, "configs", "train.json")
    if os.path.isfile(train_cfg):
        train = ConfigParser()
        train.read_config(train_cfg)
        train.config.update({"bundle_root": root, "device": "cpu"})
        if "network_def" in train.config:
            os.makedirs(os.path.join(root, "models"))
            trained = train.get_parsed_content("network_def", instantiate=True)
            torch.save(trained.state_dict(), os.path.join(root, "models", "model.pt"))
            ckpt = torch.load(os.path.join(root, "models", "model.pt"), weights_only=True)
            network.load_state_dict(ckpt.get("model", ckpt), strict=True)
    network.eval()

    pre = parser.get_parsed_content("preprocessing", instantiate=True)
    pre = list(pre.transforms) if isinstance(pre, Compose) else list(pre)
    loads = [t for t in pre if isinstance(t, LoadImaged)]
    assert loads and key_image in loads[0].keys, f"preprocessing must load `{key_image}` (first input key)"
    for t in loads:
        t._loader.image_only = False  # as MONAI Label does
    post = parser.get_parsed_content("postprocessing", instantiate=True)
    post = [t for t in (post.transforms if isinstance(post, Compose) else post) if not isinstance(t, SaveImaged)]
    inferer = parser.get_parsed_content("inferer", instantiate=True)

    default = "nuclei_dataset" if len(image_fmt["spatial_shape"]) == 2 else "tiny_brain_dataset"
    fixture = request.getfixturevalue(DATA.get(bundle, default))
    item = _items(fixture)[0]
    path = item["label"] if bundle.startswith("pix2pix") else item["image"]
    data = {key_image: path, "image_path": path}  # MONAI Label's request carries the path as `image_path`
    try:
        for t in pre:
            data = t(data)
    except AttributeError as e:  # MONAI 1.6's Spacingd updates every `image_*` entry of a NIfTI input as a dict
        assert "'str' object has no attribute 'update'" in str(e), e
        assert "`image_path`" in _monailabel_section(bundle), f"{bundle}: undocumented image_path failure: {e}"
        data = {key_image: path}  # what the project's app does (ImagePathSafe)
        for t in pre:
            data = t(data)
    with torch.no_grad():
        out = inferer(torch.as_tensor(data[key_image])[None].float(), network)
    data[key_pred] = out[0]
    try:
        for t in post:
            data = t(data)
    except KeyError as e:  # postprocessing written for the bundle's own evaluator (e.g. per-member keys)
        assert "`postprocessing`" in _monailabel_section(bundle), f"{bundle}: undocumented postprocessing gap: {e}"
        return
    pred = np.asarray(data[key_pred])
    import nibabel as nib  # noqa: F401  (LoadImage reads the tiny file for the expected shape below)
    from monai.transforms import LoadImage

    original = LoadImage(image_only=True, ensure_channel_first=True)(path)
    assert pred.shape[1:] == tuple(original.shape[1:]), "the prediction must come back at the input's shape"
    assert pred.shape[0] == 1
    if pred_fmt["format"] == "segmentation":
        assert set(np.unique(pred)) <= set(range(len(pred_fmt["channel_def"])))
    else:  # a generated image (pix2pix's inference.json: masks in, images out), not class indices
        assert np.isfinite(pred).all() and pred.min() >= 0 and pred.max() <= 255
    assert len(image_fmt["spatial_shape"]) in (2, 3)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_overrides_as_monailabel_applies_them(bundle, tmp_path, request):
    """BundleTrainTask: train#trainer#max_epochs, train#dataset#data, validate#dataset#data, device and
    train#handlers (with the CheckpointLoader it prepends when models/model.pt exists) reach the components."""
    src = os.path.join(REPO, "bundles", bundle)
    report = contract_report(src)
    if report["configs/train.json"] is not None:
        pytest.skip(f"{bundle} has no configs/train.json (its docs say why)")
    root = _copy_bundle(bundle, tmp_path)
    items = _items(request.getfixturevalue(DATA.get(bundle, "tiny_brain_dataset")))[:3]
    parser = ConfigParser()
    parser.read_config(os.path.join(root, "configs", "train.json"))
    parser.config.update({"bundle_root": root})
    handlers = list(parser.get("train#handlers", []))
    loader = {"_target_": "CheckpointLoader", "load_path": "x.pt", "load_dict": {"model": "$@network"}}
    overrides = train_overrides(root, items[:2], items[2:], 1, torch.device("cpu"), [loader, *handlers])
    met = {k: v for k, v in overrides.items() if report.get(k, None) is None}
    for key, value in met.items():
        parser[key] = value
    if report["train#trainer#max_epochs"] is None:
        assert parser.get_parsed_content("train#trainer#max_epochs") == 1
    if report["train#handlers"] is None:
        assert parser["train#handlers"][0] is loader and len(parser["train#handlers"]) == len(handlers) + 1
    for key, n in (("train#dataset", 2), ("validate#dataset", 1)):
        if report[f"{key}#data"] is None:
            parsed = parser.get_parsed_content(f"{key}#data")
            assert [d["image"] for d in parsed] == [d["image"] for d in overrides[f"{key}#data"]][:n]
        else:  # MONAI Label's override would fail or be ignored: ConfigParser cannot set `data` on a reference
            with pytest.raises((TypeError, KeyError, ValueError, AttributeError)):
                p = ConfigParser(dict(parser.config))
                p[f"{key}#data"] = overrides.get(f"{key}#data", [])
                p.get_parsed_content(f"{key}#data")
    if report["device"] is None:
        assert str(parser.get_parsed_content("device")) == "cpu"


def test_write_dataset_folder(tmp_path, tiny_brain_dataset):
    items = _items(tiny_brain_dataset)
    mni = os.path.join(tiny_brain_dataset, "imagesTr", "mni152.nii.gz")
    out = write_dataset_folder(str(tmp_path / "ds"), items[:2], [mni], {"0": "background", "1": "b"}, 1)
    meta = json.load(open(os.path.join(out, "dataset.json")))
    assert [d["image"] for d in meta["training"]] == [items[0]["image"]]
    assert meta["test"] == [items[1]] and meta["unlabeled"] == [{"image": mni}]
    from monai_wsss.data import load_semisupervised_datalist

    split = load_semisupervised_datalist(out, fully_labeled_fraction=None, val_fraction=0.0)
    assert len(split["labeled"]) == 1 and len(split["test"]) == 1
    with pytest.raises(ValueError, match="no labelled image"):
        write_dataset_folder(str(tmp_path / "e"), [], [items[0]["image"]], {"0": "bg"})
    with pytest.raises(ValueError, match="missing"):
        write_dataset_folder(str(tmp_path / "m"), [{"image": "/nope.nii.gz", "label": items[0]["label"]}], [], {})
    with pytest.raises(ValueError, match="must leave"):
        write_dataset_folder(str(tmp_path / "t"), items[:1], [], {}, test=1)


def test_image_score_and_query_by_hand():
    from monai_wsss.active import EntropyStrategy, GeometricPlaneStrategy, RandomStrategy

    regions = np.zeros((4, 4), dtype=np.int64)
    regions[:, 2:] = 1  # two regions of 8 pixels
    p = torch.full((2, 4, 4), 0.5)
    p[0, :, :2], p[1, :, :2] = 0.9, 0.1  # region 0 confident, region 1 uncertain
    ent1 = float(np.log(2))
    assert image_score(EntropyStrategy(), p, regions) == pytest.approx(ent1, rel=1e-4)
    annotated = regions == 1
    ent0 = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert image_score(EntropyStrategy(), p, regions, annotated) == pytest.approx(ent0, rel=1e-4)
    assert image_score(EntropyStrategy(), p, regions, np.ones((4, 4), bool)) == float("-inf")
    mask, fields = query_image(EntropyStrategy(), p, regions, regions_per_round=1)
    assert mask.sum() == 8 and mask[:, 2:].all() and fields["region_ids"] == [1] and fields["voxels"] == 8
    assert fields["strategy"] == "entropy" and json.dumps(fields)
    with pytest.raises(ValueError, match="do not match"):
        image_score(EntropyStrategy(), p[:, :3], regions)
    with pytest.raises(ValueError, match="already annotated"):
        query_image(RandomStrategy(), None, regions, np.ones((4, 4), bool))
    # 3D: a planar patch with its plane parameters, JSON-ready
    regions3 = np.zeros((8, 8, 8), dtype=np.int64)
    regions3[4:] = 1
    p3 = torch.full((2, 8, 8, 8), 0.5)
    p3[0, :4], p3[1, :4] = 0.99, 0.01
    mask3, f3 = query_image(GeometricPlaneStrategy(plane_radius=None, plane_angles=(2, 4)), p3, regions3)
    assert mask3.any() and f3["plane"] is not None and json.loads(json.dumps(f3))["plane"] == f3["plane"]
