"""PseudoLabelWriter: seeds of each method to pseudo-label files + a datalist the data layer accepts, scored."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.transforms import Compose, EnsureTyped, LoadImage, LoadImaged, ScaleIntensityRanged

from monai_wsss.apps import PseudoLabelWriter, resize_maps
from monai_wsss.attribution import (
    AdvCAM,
    PeakInstanceRetrieval,
    PeakResponseMapping,
    superpixel_proposals,
)
from monai_wsss.data import build_tagged_nuclei_dataset, load_semisupervised_datalist, load_tagged_datalist
from monai_wsss.networks import CAMClassifier

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> dict:
    root = build_tagged_nuclei_dataset(str(tmp_path_factory.mktemp("tagged")))
    lists = load_tagged_datalist(root)
    pos = [i for i in lists["training"] if i["class_labels"][0] == 1][:5]
    neg = [i for i in lists["training"] if i["class_labels"][0] == 0][:3]
    return {"classes": lists["classes"], "training": pos + neg, "test": lists["test"][:4]}


def _net() -> CAMClassifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1))
    net = CAMClassifier(2, backbone, 8, num_classes=1)
    with torch.no_grad():  # a positive class map wherever the image is bright, so seeds are not empty
        net.classifier.weight.fill_(0.5)
    return net.eval()


PRE = Compose(
    [
        LoadImaged("image", ensure_channel_first=True, image_only=True),
        ScaleIntensityRanged("image", 0, 255, 0.0, 1.0, clip=True),
        EnsureTyped("image", track_meta=False),
    ]
)


@pytest.mark.parametrize("method", ["cam", "advcam", "prm"])
def test_writer_each_method(tmp_path, tagged, method):
    net = _net()
    out = str(tmp_path / f"pl_{method}")
    writer = PseudoLabelWriter(
        net,
        tagged["training"],
        out,
        tagged["classes"],
        PRE,
        seed_method=method,
        advcam=AdvCAM(net, steps=2, flip=True),
        prm=PeakResponseMapping(net),
        batch_size=3,
        test_items=tagged["test"],
        panel_path=str(tmp_path / "panel.png"),
        panel_samples=3,
    )
    metrics = writer.run()
    assert metrics["seed_method"] == method and metrics["num_images"] == 8 and metrics["num_positive"] == 5
    assert metrics["negatives_all_background"] is True
    assert 0.0 <= metrics["seed_iou"]["nucleus"] <= 1.0 and 0.0 <= metrics["seed_miou"] <= 1.0
    assert len(metrics["fg_iou_by_threshold"]) == 19
    assert json.load(open(os.path.join(out, "seed_metrics.json")))["seed_fg_iou"] == metrics["seed_fg_iou"]
    assert os.path.getsize(tmp_path / "panel.png") > 0
    meta = json.load(open(os.path.join(out, "dataset.json")))
    assert meta["labels"] == {"0": "background", "1": "nucleus"} and meta["classes"] == ["nucleus"]
    assert [i["class_labels"] for i in meta["training"]] == [[1]] * 5 + [[0]] * 3
    # the pseudo-label folder is a valid semi-supervised datalist: training = pseudo-labels, test = real masks
    lists = load_semisupervised_datalist(out, fully_labeled_fraction=None, val_fraction=0.0)
    assert len(lists["labeled"]) == 8 and len(lists["test"]) == 4
    load = LoadImage(image_only=True, ensure_channel_first=True)
    labels = [np.asarray(load(i["label"])) for i in lists["labeled"]]
    assert all(lab.shape == (1, 32, 32) and set(np.unique(lab)) <= {0, 1} for lab in labels)
    assert all((lab == 0).all() for lab in labels[5:])  # negatives: all background, no seed
    assert any(lab.any() for lab in labels[:5])  # positives get seeds


def test_seeds_are_scored_against_the_masks(tmp_path, tagged):
    """Using the true mask as the 'seed' map gives IoU 1 (checks the scoring, not the classifier)."""
    net = _net()
    writer = PseudoLabelWriter(net, tagged["training"], str(tmp_path / "pl"), tagged["classes"], PRE, "cam")
    load = LoadImage(image_only=True, ensure_channel_first=True)

    def oracle(method, images, labels):
        masks = [torch.as_tensor(np.asarray(load(i["label"]))).float() for i in tagged["training"]]
        return torch.stack(masks) * labels.view(-1, 1, 1, 1)

    writer.maps = oracle  # one batch of all 8 images (batch_size 16)
    metrics = writer.run()
    assert metrics["seed_fg_iou"] == pytest.approx(1.0, abs=0.02)  # tagged negatives may hold < 20 nucleus pixels
    assert metrics["best_threshold"]["fg_iou"] >= metrics["seed_fg_iou"] - 1e-6


def test_resize_maps_and_bad_arguments(tagged, tmp_path):
    m = torch.rand(2, 3, 16, 16)
    assert resize_maps(m, (8, 8)).shape == (2, 3, 8, 8) and resize_maps(m, (32, 32)).shape == (2, 3, 32, 32)
    torch.testing.assert_close(resize_maps(m, (8, 8)), torch.nn.functional.avg_pool2d(m, 2))
    with pytest.raises(ValueError, match="needs an `advcam`"):
        PseudoLabelWriter(_net(), tagged["training"], str(tmp_path), ["nucleus"], PRE, "advcam")
    with pytest.raises(ValueError):
        PseudoLabelWriter(_net(), tagged["training"], str(tmp_path), ["nucleus"], PRE, "gradcam++")


def test_writer_prm_instances_gives_binary_instance_seeds(tmp_path, tagged):
    """With a retrieval, PRM seeds are unions of proposal masks: each pseudo-label region is a whole proposal."""
    net = _net()
    retrieval = PeakInstanceRetrieval(proposals=lambda x: superpixel_proposals(x, n_segments=(16,)))
    out = str(tmp_path / "pl_inst")
    writer = PseudoLabelWriter(
        net,
        tagged["training"],
        out,
        tagged["classes"],
        PRE,
        "prm",
        prm=PeakResponseMapping(net),
        prm_retrieval=retrieval,
    )
    metrics = writer.run()
    assert metrics["prm_instances"] is True and metrics["negatives_all_background"] is True
    images = torch.stack([torch.as_tensor(PRE({"image": i["image"]})["image"]) for i in tagged["training"]])
    tags = torch.stack([torch.as_tensor(i["class_labels"]) for i in tagged["training"]])
    seeds = writer.maps("prm", images, tags)
    assert all(v == 0 or abs(v - 1) < 1e-4 for v in seeds.unique().tolist())  # binary, up to the max-normaliser
    assert seeds[:5].sum() > 0 and seeds[5:].sum() == 0
    for b in range(5):
        props = superpixel_proposals(images[b], n_segments=(16,))
        covered = seeds[b, 0] > 0.5
        if covered.any():  # the seed is a union of proposals: every covered pixel lies in a proposal inside it
            inside = props[(props & ~covered).flatten(1).sum(1) == 0]
            assert torch.equal(inside.any(0), covered)


def test_a_declared_class_absent_everywhere_is_left_out_of_the_mean(tmp_path, tagged):
    """A class in neither the truth nor the seeds has no IoU (None), instead of an IoU of 0 that lowers the mIoU."""
    items = [dict(i, class_labels=np.asarray([*i["class_labels"], 0.0], dtype=np.float32)) for i in tagged["training"]]
    net = CAMClassifier(2, nn.Conv2d(1, 4, 3, padding=1), 4, num_classes=2)
    writer = PseudoLabelWriter(net, items, str(tmp_path / "pl"), ["nucleus", "ghost"], PRE, "cam")
    load = LoadImage(image_only=True, ensure_channel_first=True)

    def oracle(method, images, labels):
        masks = torch.stack([torch.as_tensor(np.asarray(load(i["label"]))).float() for i in items])
        return torch.cat([masks * labels[:, :1].view(-1, 1, 1, 1), torch.zeros_like(masks)], 1)

    writer.maps = oracle
    metrics = writer.run()
    assert metrics["seed_iou"]["ghost"] is None
    expected = (metrics["seed_background_iou"] + metrics["seed_iou"]["nucleus"]) / 2
    assert metrics["seed_miou"] == pytest.approx(expected)
    assert metrics["seed_miou"] > 0.9
