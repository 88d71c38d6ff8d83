"""Seed methods behind one protocol: CAMSeeds, AdvCAMSeeds, PRMSeeds against hand cases and today's seed functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from attribution_helpers import tiny_classifier

from monai_wsss.attribution import (
    AdvCAM,
    AdvCAMSeeds,
    CAMSeeds,
    PeakInstanceRetrieval,
    PeakResponseMapping,
    PerSampleCAM,
    PRMSeeds,
    SeedMethod,
    instances_to_maps,
    masked_max_normalise,
    max_normalizer,
    resize_maps,
    superpixel_proposals,
)
from monai_wsss.networks import CAMClassifier

# ---- today's seed functions (monai_wsss/apps/weak_supervision.py before the seed-method protocol), frozen here as
# the reference the classes must reproduce exactly


def _ref_normalise(maps, labels):
    nd = maps.ndim - 2
    maps = maps.clamp_min(0) * (labels > 0).to(maps.dtype).view(*labels.shape, *[1] * nd)
    peak = maps.flatten(2).max(2)[0].view(*maps.shape[:2], *[1] * nd)
    return maps / (peak + 1e-5)


def _ref_cam(cam, images, labels):  # class_activation_maps, called by the writer under no_grad
    with torch.no_grad():
        maps = [cam(images, class_idx=k) for k in range(labels.shape[1])]
        return _ref_normalise(torch.cat(maps, 1).detach(), labels)


def _ref_prm(prm, images, labels, retrieval=None):  # peak_response_seeds
    spatial = tuple(images.shape[2:])
    out = images.new_zeros((images.shape[0], labels.shape[1], *spatial))
    for b, res in enumerate(prm(images, labels)):
        if len(res["peaks"]) == 0:
            continue
        maps = resize_maps(res["maps"][:, None].to(out.dtype), spatial)[:, 0]
        if retrieval is not None:
            inst = retrieval(images[b], {**res, "maps": maps}, res["class_maps"])
            out[b] = instances_to_maps(inst, labels.shape[1], spatial).to(out)
        else:
            out[b].index_add_(0, res["peaks"][:, 0], maps)
    return _ref_normalise(out, labels).detach()


SHAPES = {2: (16, 16), 3: (8, 8, 8)}
TAGS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _batch(nd: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(nd)
    return torch.rand(3, 1, *SHAPES[nd], generator=g), TAGS.clone()


def _check_protocol(maps: torch.Tensor, x: torch.Tensor, tags: torch.Tensor) -> None:
    assert maps.shape == (x.shape[0], tags.shape[1], *x.shape[2:]) and not maps.requires_grad
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    absent = (tags == 0).view(*tags.shape, *[1] * (x.ndim - 2)).expand_as(maps)
    assert (maps[absent] == 0).all()  # zero for absent classes, all zero for the negative image
    assert all(maps[b, k].max() > 0.5 for b, k in torch.nonzero(tags).tolist())  # present classes are not void


@pytest.mark.parametrize("nd", [2, 3])
def test_cam_seeds_equal_todays_function(nd):
    net = tiny_classifier(nd)
    x, tags = _batch(nd)
    seeds = CAMSeeds(net)
    assert isinstance(seeds, SeedMethod) and seeds.name == "cam" and seeds.title == "CAM"
    maps = seeds(x, tags)
    ref = _ref_cam(PerSampleCAM(net, "feature", "classifier", postprocessing=max_normalizer), x, tags)
    assert torch.equal(maps, ref)
    _check_protocol(maps, x, tags)
    # a ready PerSampleCAM is used as given
    cam = PerSampleCAM(net, "feature", "classifier", postprocessing=max_normalizer)
    assert torch.equal(CAMSeeds(cam, name="mycam")(x, tags), ref) and CAMSeeds(cam, name="mycam").name == "mycam"


@pytest.mark.parametrize("nd", [2, 3])
def test_cam_seeds_hand_case(nd):
    """Identity features and class weights (2, -1): class 0's CAM is 2x, so its seed is x / max x; class 1 is 0."""
    net = CAMClassifier(nd, nn.Identity(), 1, num_classes=2)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, *[1] * nd))
    ramp = torch.arange(1, 1 + torch.Size(SHAPES[nd]).numel(), dtype=torch.float32).view(1, 1, *SHAPES[nd])
    x = torch.cat([ramp, ramp.flip(2)])
    maps = CAMSeeds(net)(x, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(maps[0, 0], ramp[0, 0] / ramp.max(), atol=1e-4, rtol=0)
    assert (maps[0, 1] == 0).all() and (maps[1] == 0).all()  # negative class weight; absent class


@pytest.mark.parametrize("nd", [2, 3])
def test_advcam_seeds_equal_todays_call(nd):
    net = tiny_classifier(nd)
    x, tags = _batch(nd)
    seeds = AdvCAMSeeds(AdvCAM(net, steps=2, flip=True))
    assert isinstance(seeds, SeedMethod) and seeds.name == "advcam" and seeds.title == "AdvCAM"
    maps = seeds(x, tags)
    assert torch.equal(maps, AdvCAM(net, steps=2, flip=True)(x, tags).detach())
    _check_protocol(maps, x, tags)


@pytest.mark.parametrize("nd", [2, 3])
def test_prm_seeds_equal_todays_function(nd):
    net = tiny_classifier(nd)
    x, tags = _batch(nd)
    seeds = PRMSeeds(PeakResponseMapping(net))
    assert isinstance(seeds, SeedMethod) and seeds.name == "prm" and seeds.info == {"prm_instances": False}
    maps = seeds(x, tags)
    assert torch.equal(maps, _ref_prm(PeakResponseMapping(net), x, tags))
    _check_protocol(maps, x, tags)


@pytest.mark.parametrize("nd", [2, 3])
def test_prm_instance_seeds_equal_todays_function(nd):
    net = tiny_classifier(nd)
    x, tags = _batch(nd)
    retrieval = PeakInstanceRetrieval(proposals=lambda img: superpixel_proposals(img, n_segments=(8,)))
    seeds = PRMSeeds(PeakResponseMapping(net), retrieval)
    assert seeds.info == {"prm_instances": True}
    maps = seeds(x, tags)
    assert torch.equal(maps, _ref_prm(PeakResponseMapping(net), x, tags, retrieval))
    _check_protocol(maps, x, tags)
    assert all(v == 0 or abs(v - 1) < 1e-4 for v in maps.unique().tolist())  # unions of masks: binary


def test_masked_max_normalise_and_resize_maps():
    maps = torch.tensor([[[[-1.0, 2.0], [4.0, 0.0]], [[3.0, 3.0], [3.0, 3.0]]]])
    out = masked_max_normalise(maps, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 2.0], [4.0, 0.0]]) / (4 + 1e-5))
    assert (out[0, 1] == 0).all()
    m = torch.rand(2, 3, 16, 16)
    assert resize_maps(m, (8, 8)).shape == (2, 3, 8, 8) and resize_maps(m, (32, 32)).shape == (2, 3, 32, 32)
    torch.testing.assert_close(resize_maps(m, (8, 8)), torch.nn.functional.avg_pool2d(m, 2))
    assert resize_maps(m, (16, 16)) is m


def test_bad_tags_raise():
    net = tiny_classifier(2)
    x = torch.rand(2, 1, 16, 16)
    for seeds in (CAMSeeds(net), AdvCAMSeeds(AdvCAM(net, steps=1)), PRMSeeds(PeakResponseMapping(net))):
        with pytest.raises(ValueError, match="`tags` must be"):
            seeds(x, torch.ones(3, 3))
        with pytest.raises(ValueError, match="`images` must be"):
            seeds(x[0, 0], torch.ones(16, 3))
