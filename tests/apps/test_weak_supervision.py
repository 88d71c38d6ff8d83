"""PseudoLabelWriter: the seeds of one seed method to pseudo-label files + a datalist the data layer accepts, scored."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.transforms import Compose, EnsureTyped, LoadImage, LoadImaged, ScaleIntensityRanged
from PIL import Image

from monai_wsss.apps import PseudoLabelWriter
from monai_wsss.attribution import (
    AdvCAM,
    AdvCAMSeeds,
    CAMSeeds,
    PeakInstanceRetrieval,
    PeakResponseMapping,
    PRMSeeds,
    resize_maps,
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


class Oracle:
    """Toy seed method: the true mask of each image (by batch position) for its present classes."""

    name = "oracle"

    def __init__(self, items: list[dict], extra_classes: int = 0) -> None:
        load = LoadImage(image_only=True, ensure_channel_first=True)
        self.masks = torch.stack([torch.as_tensor(np.asarray(load(i["label"]))).float() for i in items])
        self.extra = extra_classes

    def __call__(self, images, tags):
        maps = self.masks * tags[:, :1].view(-1, 1, 1, 1)
        return torch.cat([maps] + [torch.zeros_like(maps)] * self.extra, 1)


def _methods(net) -> dict:
    return {
        "cam": CAMSeeds(net),
        "advcam": AdvCAMSeeds(AdvCAM(net, steps=2, flip=True)),
        "prm": PRMSeeds(PeakResponseMapping(net)),
    }


@pytest.mark.parametrize("method", ["cam", "advcam", "prm"])
def test_writer_each_method(tmp_path, tagged, method):
    net = _net()
    out = str(tmp_path / f"pl_{method}")
    methods = _methods(net)
    writer = PseudoLabelWriter(
        tagged["training"],
        out,
        tagged["classes"],
        PRE,
        seed_method=methods[method],
        panel_methods=list(methods.values()),
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
    oracle = Oracle(tagged["training"])  # one batch of all 8 images (batch_size 16)
    writer = PseudoLabelWriter(tagged["training"], str(tmp_path / "pl"), tagged["classes"], PRE, oracle)
    metrics = writer.run()
    assert metrics["seed_method"] == "oracle" and "prm_instances" not in metrics
    assert metrics["seed_fg_iou"] == pytest.approx(1.0, abs=0.02)  # tagged negatives may hold < 20 nucleus pixels
    assert metrics["best_threshold"]["fg_iou"] >= metrics["seed_fg_iou"] - 1e-6


def test_resize_maps_and_bad_arguments(tagged, tmp_path):
    m = torch.rand(2, 3, 16, 16)
    assert resize_maps(m, (8, 8)).shape == (2, 3, 8, 8) and resize_maps(m, (32, 32)).shape == (2, 3, 32, 32)
    torch.testing.assert_close(resize_maps(m, (8, 8)), torch.nn.functional.avg_pool2d(m, 2))
    # a method name is no seed method (the bundle picks the object by `_target_`)
    with pytest.raises(TypeError, match="must be callable"):
        PseudoLabelWriter(tagged["training"], str(tmp_path), ["nucleus"], PRE, "advcam")
    with pytest.raises(TypeError, match="must be callable"):
        PseudoLabelWriter(tagged["training"], str(tmp_path), ["nucleus"], PRE, CAMSeeds(_net()), ["gradcam++"])
    with pytest.raises(ValueError, match="no tagged image"):
        PseudoLabelWriter([], str(tmp_path), ["nucleus"], PRE, CAMSeeds(_net()))


class _Broken:
    name = "broken"

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, images, tags):
        return self.fn(images, tags)


@pytest.mark.parametrize(
    "fn,match",
    [
        (lambda x, t: torch.zeros(x.shape[0], 2, *x.shape[2:]), "expected maps of shape"),  # wrong K
        (lambda x, t: torch.zeros(x.shape[0], 1, 8, 8), "expected maps of shape"),  # not at the image size
        (lambda x, t: 2 * torch.ones(x.shape[0], 1, *x.shape[2:]), r"expected \[0, 1\]"),  # out of range
    ],
)
def test_a_seed_method_breaking_the_protocol_fails_clearly(tmp_path, tagged, fn, match):
    writer = PseudoLabelWriter(tagged["training"], str(tmp_path / "pl"), tagged["classes"], PRE, _Broken(fn))
    with pytest.raises(ValueError, match=match):
        writer.run()
    assert not os.path.exists(tmp_path / "pl")


def test_writer_prm_instances_gives_binary_instance_seeds(tmp_path, tagged):
    """With a retrieval, PRM seeds are unions of proposal masks: each pseudo-label region is a whole proposal."""
    net = _net()
    retrieval = PeakInstanceRetrieval(proposals=lambda x: superpixel_proposals(x, n_segments=(16,)))
    out = str(tmp_path / "pl_inst")
    writer = PseudoLabelWriter(
        tagged["training"], out, tagged["classes"], PRE, PRMSeeds(PeakResponseMapping(net), retrieval)
    )
    metrics = writer.run()
    assert metrics["prm_instances"] is True and metrics["negatives_all_background"] is True
    images = torch.stack([torch.as_tensor(PRE({"image": i["image"]})["image"]) for i in tagged["training"]])
    tags = torch.stack([torch.as_tensor(i["class_labels"]) for i in tagged["training"]])
    seeds = writer.maps(writer.seed_method, images, tags)
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
    writer = PseudoLabelWriter(items, str(tmp_path / "pl"), ["nucleus", "ghost"], PRE, Oracle(items, extra_classes=1))
    metrics = writer.run()
    assert metrics["seed_iou"]["ghost"] is None
    expected = (metrics["seed_background_iou"] + metrics["seed_iou"]["nucleus"]) / 2
    assert metrics["seed_miou"] == pytest.approx(expected)
    assert metrics["seed_miou"] > 0.9


class ImageAsSeed:
    """Toy seed method: the (scaled) image itself is the map of every present class."""

    name = "image"

    def __call__(self, images, tags):
        return images[:, :1] * tags.view(*tags.shape, *[1] * (images.ndim - 2))


def _hand_case(tmp_path, images: list[np.ndarray], truths: list[np.ndarray], tags: list[list[int]]) -> list[dict]:
    items = []
    for n, (img, truth, tag) in enumerate(zip(images, truths, tags, strict=True)):
        Image.fromarray(img.astype(np.uint8)).save(tmp_path / f"img{n}.png")
        Image.fromarray(truth.astype(np.uint8)).save(tmp_path / f"truth{n}.png")
        items.append({"image": str(tmp_path / f"img{n}.png"), "label": str(tmp_path / f"truth{n}.png")})
        items[-1]["class_labels"] = tag
    return items


def test_seed_iou_is_pooled_over_images_hand_case(tmp_path):
    """
    Two 4x4 images, classes a and b. Image 0 (tag a): seed on the top half, truth a on the left half. Image 1 (tag b):
    seed on the first row, truth b everywhere. Pooled counts: a 4 / 12, b 4 / 16, background (4 + 0) / (12 + 12);
    foreground (4 + 4) / (12 + 16) = 2/7 (a mean of per-image IoUs, as MONAI's MeanIoU takes, would give 7/24).
    """
    top, left, row = np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4))
    top[:2], left[:, :2], row[0] = 255, 1, 255
    items = _hand_case(tmp_path, [top, row], [left, np.full((4, 4), 2)], [[1, 0], [0, 1]])
    metrics = PseudoLabelWriter(items, str(tmp_path / "pl"), ["a", "b"], PRE, ImageAsSeed()).run()
    assert metrics["seed_iou"] == pytest.approx({"a": 1 / 3, "b": 1 / 4})
    assert metrics["seed_background_iou"] == pytest.approx(1 / 6)
    assert metrics["seed_miou"] == pytest.approx((1 / 3 + 1 / 4 + 1 / 6) / 3)
    assert metrics["seed_fg_iou"] == pytest.approx(8 / 28)
    assert list(metrics["fg_iou_by_threshold"].values()) == pytest.approx([8 / 28] * 19)  # binary seeds
    assert metrics["num_scored"] == 2 and metrics["seed_method"] == "image"
    load = LoadImage(image_only=True, ensure_channel_first=True)
    pseudo = [np.asarray(load(str(tmp_path / "pl" / "labels" / f"img{n}.png")))[0] for n in range(2)]
    assert (pseudo[0] == np.asarray(load(items[0]["image"]))[0] / 255).all()  # class a (1) where the seed is
    assert (pseudo[1] == 2 * np.asarray(load(items[1]["image"]))[0] / 255).all()  # class b (2) on the first row
    meta = json.load(open(tmp_path / "pl" / "dataset.json"))
    assert meta["seed_method"] == "image" and meta["name"] == "pseudo-labels (image)"


def test_foreground_iou_is_any_class_vs_background(tmp_path):
    """A seed of the wrong class on the right pixels: class IoUs 0, background in neither (None, left out of the
    mean), foreground IoU 1."""
    items = _hand_case(tmp_path, [np.full((4, 4), 255)], [np.ones((4, 4))], [[0, 1]])
    metrics = PseudoLabelWriter(items, str(tmp_path / "pl"), ["a", "b"], PRE, ImageAsSeed()).run()
    assert metrics["seed_iou"] == {"a": 0.0, "b": 0.0}
    assert metrics["seed_background_iou"] == 0.0 and metrics["seed_miou"] == 0.0
    assert metrics["seed_fg_iou"] == 1.0 and metrics["best_threshold"] == {"threshold": 0.05, "fg_iou": 1.0}


def test_nifti_pseudo_labels_keep_the_image_affine(tmp_path, tagged):
    """A 2D NIfTI set with 0.25 mm pixels: the written labels carry each image's affine, so the folder passes the
    datalist's image / label geometry check."""
    import nibabel as nib

    load = LoadImage(image_only=True, ensure_channel_first=True)
    affine = np.diag([0.25, 0.25, 1.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 2.5]
    items = []
    for n, item in enumerate(tagged["training"]):
        for key in ("image", "label"):
            arr = np.asarray(load(item[key]))[0].astype(np.float32)
            nib.save(nib.Nifti1Image(arr, affine), str(tmp_path / f"{key}_{n}.nii.gz"))
        items.append(dict(item, image=str(tmp_path / f"image_{n}.nii.gz"), label=str(tmp_path / f"label_{n}.nii.gz")))
    out = str(tmp_path / "pl")
    PseudoLabelWriter(items, out, tagged["classes"], PRE, Oracle(items)).run()
    meta = json.load(open(os.path.join(out, "dataset.json")))
    for entry in meta["training"]:
        written = nib.load(os.path.join(out, entry["label"]))
        np.testing.assert_allclose(written.affine, affine)
    lists = load_semisupervised_datalist(out, fully_labeled_fraction=None, val_fraction=0.0)
    assert len(lists["labeled"]) == len(items)
