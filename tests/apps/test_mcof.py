"""MCOF: region labels, Bayesian fusion, the objectness prior, one bottom-up round growing a planted seed to the
superpixels it touches, and the round runner (seeds -> regions -> segmenter -> next seeds) on real tagged tiles."""

from __future__ import annotations

import json
import os

import pytest
import torch
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, LoadImaged, Resized, ScaleIntensityRanged

from monai_wsss.apps import MCOFSeeds
from monai_wsss.attribution import SeedMethod
from monai_wsss.attribution.mcof import (
    RegionMining,
    bayesian_fusion,
    objectness_prior,
    region_means,
    region_seed_labels,
)
from monai_wsss.data import load_tagged_datalist
from monai_wsss.transforms import Supervoxels

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


def test_region_means_and_seed_labels_by_hand():
    regions = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    seeds = torch.tensor([[[0.9, 0.1, 0.6, 0.6], [0.0, 0.1, 0.3, 0.2]]])  # (K=1, 2, 4)
    assert torch.allclose(region_means(seeds, regions)[:, 0], torch.tensor([0.5, 0.6, 0.05, 0.25]))
    # region 0: half its pixels >= 0.5 -> seed; region 1: all -> seed; 2: mean 0.05 < 0.15 -> background; 3: neither
    labels = region_seed_labels(seeds, torch.tensor([1.0]), regions, fg_threshold=0.5, bg_threshold=0.15)
    assert labels.tolist() == [1, 1, 0, -1]
    strict = region_seed_labels(seeds, torch.tensor([1.0]), regions, min_overlap=0.75)
    assert strict.tolist() == [-1, 1, 0, -1]
    assert region_seed_labels(seeds, torch.tensor([0.0]), regions).tolist() == [0, 0, 0, 0]  # a negative image


def test_bayesian_fusion_and_the_objectness_prior():
    p = torch.tensor([0.8, 0.5, 0.8])
    s = torch.tensor([0.5, 0.9, 0.8])
    assert torch.allclose(bayesian_fusion(p, s), torch.tensor([0.8, 0.9, 0.64 / 0.68]), atol=1e-4)
    image = torch.zeros(1, 8, 8)
    image[0, 3:5, 3:5] = 1.0
    regions = torch.zeros(8, 8, dtype=torch.long)
    regions[3:5, 3:5] = 1
    assert torch.allclose(objectness_prior(image, regions, "contrast"), torch.tensor([0.05, 0.95]))
    centre = objectness_prior(image, regions, "centre_contrast")
    assert centre[1] > 0.9 and objectness_prior(image, regions, "none") is None
    with pytest.raises(ValueError, match="saliency"):
        objectness_prior(image, regions, "dss")


def _coordinates(images: torch.Tensor) -> torch.Tensor:
    """Features: intensity and the two coordinates (a backbone stand-in that separates every region)."""
    b, _, h, w = images.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.cat([images, yy.expand(b, 1, h, w), xx.expand(b, 1, h, w), torch.ones(b, 1, h, w)], 1)


def test_one_round_grows_a_planted_seed_to_the_superpixels_it_touches():
    image = torch.zeros(1, 1, 48, 48)
    image[0, 0, 8:40, 8:40] = 1.0
    seeds = torch.zeros(1, 1, 48, 48)
    seeds[0, 0, 22:25, 22:25] = 1.0  # a 3x3 seed inside the square
    mining = RegionMining(_coordinates, Supervoxels(n_segments=16, compactness=0.1), min_overlap=0.01, num_epochs=300)
    refined = mining(image, torch.ones(1, 1), seeds)
    regions = mining.regions(image)[0]
    touched = regions[22:25, 22:25].unique()
    inside = torch.isin(regions, touched)
    assert mining.last_info["seed_regions"] == len(touched) and inside.sum() > 9 * 4  # grown well past 9 pixels
    assert bool((refined[0, 0][inside] > 0.5).all())  # every touched superpixel becomes object
    assert bool((refined[0, 0][~inside] < 0.5).all())  # nothing else
    assert torch.equal(mining(image, torch.zeros(1, 1), seeds * 0 + 1), torch.zeros_like(seeds))  # untagged -> 0


def test_the_prior_is_fused_only_when_asked():
    image = torch.zeros(1, 1, 48, 48)
    image[0, 0, 8:40, 8:40] = 1.0
    seeds = torch.zeros(1, 1, 48, 48)
    seeds[0, 0, 22:25, 22:25] = 1.0
    kw = {"supervoxels": Supervoxels(n_segments=16, compactness=0.1), "min_overlap": 0.01, "num_epochs": 300}
    plain = RegionMining(_coordinates, **kw)(image, torch.ones(1, 1), seeds)
    with_prior = RegionMining(_coordinates, saliency="contrast", **kw)
    fused = with_prior(image, torch.ones(1, 1), seeds)
    assert torch.equal(with_prior(image, torch.ones(1, 1), seeds, use_prior=False), plain)
    background = image[0, 0] == 0
    assert float(fused[0, 0][background].max()) < float(plain[0, 0][background].max())  # dark border: less object


class _TagEverywhere:
    name = "tags"

    def __call__(self, images, tags):
        return tags.to(images.dtype).view(*tags.shape, 1, 1).expand(-1, -1, *images.shape[2:]).clone()


def test_rounds_on_real_tiles_record_the_seed_miou_of_every_round(tmp_path, small_tagged):
    tagged = load_tagged_datalist(small_tagged)
    pre = Compose([
        LoadImaged("image", ensure_channel_first=True, image_only=True),
        ScaleIntensityRanged("image", 0, 255, 0.0, 1.0, clip=True),
        Resized("image", (32, 32)),
        EnsureTyped("image", track_meta=False),
    ])  # fmt: skip
    seg_pre = [
        LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True),
        ScaleIntensityRanged("image", 0, 255, 0.0, 1.0, clip=True),
    ]
    predict = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), seg_pre[1]])
    torch.manual_seed(0)
    mcof = MCOFSeeds(
        items=tagged["training"],
        classes=tagged["classes"],
        preprocessing=pre,
        initial_seeds=_TagEverywhere(),
        mining=RegionMining(_coordinates, Supervoxels(n_segments=16, compactness=0.1), num_epochs=5),
        network_def=lambda: UNet(2, 1, 2, channels=(8, 16), strides=(2,), num_res_units=0),
        segmenter={"preprocessing": seg_pre, "roi_size": [32, 32], "num_epochs": 1, "epoch_length": 2,
                   "batch_size": 4, "save_overlays": False},  # fmt: skip
        predict_preprocessing=predict,
        output_dir=str(tmp_path / "mcof"),
        ckpt_dir=str(tmp_path / "models"),
        num_rounds=2,
        test_items=tagged["test"],
    )
    assert isinstance(mcof, SeedMethod)
    x = torch.stack([pre({"image": i["image"]})["image"] for i in tagged["training"][:5]])
    tags = torch.stack([torch.as_tensor(i["class_labels"]) for i in tagged["training"][:5]])
    maps = mcof(x, tags)  # runs both rounds first
    with open(tmp_path / "mcof" / "rounds.json") as f:
        summary = json.load(f)
    assert [r["round"] for r in summary["rounds"]] == [1, 2] and "final" in summary
    first, second = summary["rounds"]
    # round 1 starts from the tag-only seeds: the whole tile is nucleus on positives
    with open(tmp_path / "mcof" / "round_1" / "seeds" / "seed_metrics.json") as f:
        assert json.load(f)["seed_miou"] == first["seeds"]["seed_miou"]
    assert second["seeds_from"] == "segmenter of round 1"
    assert second["seeds"]["seed_miou"] != first["seeds"]["seed_miou"]
    assert {"dice", "miou"} <= set(first["segmenter"]) and first["region_counts"]["regions"] > 12
    for r in (1, 2):
        assert os.path.isfile(tmp_path / "models" / f"round_{r}" / "model.pt")
        assert os.path.isfile(tmp_path / "mcof" / f"round_{r}" / "regions" / "dataset.json")
    assert maps.shape == (5, 1, 32, 32) and set(maps.unique().tolist()) <= {0.0, 1.0}  # segmentation masks
    negatives = tags[:, 0] == 0
    assert torch.equal(maps[negatives], torch.zeros_like(maps[negatives]))
    assert mcof.info["mcof_round_seed_miou"] == [first["seeds"]["seed_miou"], second["seeds"]["seed_miou"]]
