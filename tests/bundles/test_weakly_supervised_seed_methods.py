"""A new seed method plugged into bundles/weakly_supervised_seg from a config override alone: no library edit.

The toy seed method is defined here; its ``_target_`` is a dotted path into this module (pytest puts this folder on
``sys.path``). Registering it is one component in ``seeds::methods`` plus ``seed_method`` = its key, exactly what a
user types on the command line (``--seeds::methods::tags "{'_target_': 'my_module.MySeeds'}" --seed_method tags``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import REPO, exception_messages
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import LoadImage

from monai_wsss.attribution import AdvCAMSeeds, CAMSeeds, PRMSeeds, SeedMethod

CONFIGS = os.path.join(REPO, "bundles", "weakly_supervised_seg", "configs")
META = os.path.join(CONFIGS, "metadata.json")
FILES = [os.path.join(CONFIGS, f) for f in ("train_classifier.json", "make_seeds.json")]
# the tiny classifier of the end-to-end tests; the input-size key is whichever spelling train_classifier.json uses
SMALL = {"input_size": [32, 32], "roi_size": [32, 32], "model_name": "resnet10", "advcam_steps": 1}
SMALL.update({"advcam_flip": False, "panel_samples": 2})

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


class TagEverywhere:
    """Toy seed method: every pixel of an image gets the maps of its tags (1 for a present class, 0 otherwise)."""

    name = "tags"
    title = "tag only"

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        maps = tags.to(images.dtype).view(*tags.shape, *[1] * (images.ndim - 2))
        return maps.expand(-1, -1, *images.shape[2:]).clone()


def _overrides(parser: ConfigParser, **kw) -> dict:
    over = {k: v for k, v in SMALL.items() if k in parser}
    over.update(kw)
    return over


def _untrained_classifier(tmp: str, small_tagged: str) -> None:
    """models/model.pt of an untrained classifier: the built-in methods of the panel need weights, the toy does not."""
    parser = ConfigParser()
    parser.read_config(FILES[:1])
    parser.update(_overrides(parser, dataset_dir=small_tagged, bundle_root=tmp, device="$torch.device('cpu')"))
    torch.manual_seed(0)
    os.makedirs(f"{tmp}/models")
    torch.save(parser.get_parsed_content("network_def").state_dict(), f"{tmp}/models/model.pt")


def test_the_built_in_seed_methods_are_components():
    parser = ConfigParser()
    parser.read_config(FILES)
    methods = parser.config["seeds"]["methods"]
    targets = {k: v["_target_"] for k, v in methods.items()}
    assert targets == {
        "cam": "monai_wsss.attribution.CAMSeeds",
        "advcam": "monai_wsss.attribution.AdvCAMSeeds",
        "prm": "monai_wsss.attribution.PRMSeeds",
        "groupwise": "monai_wsss.attribution.GroupwiseSeeds",
        "mcof": "monai_wsss.apps.MCOFSeeds",
    }
    assert parser["seed_method"] == "advcam" and parser["advcam_steps"] == 8
    assert {CAMSeeds.title, AdvCAMSeeds.title, PRMSeeds.title} == {"CAM", "AdvCAM", "PRM"}


def test_a_toy_seed_method_registered_from_a_config_override(tmp_path, small_tagged):
    tmp = str(tmp_path)
    _untrained_classifier(tmp, small_tagged)
    toy = {"_target_": f"{__name__}.TagEverywhere"}
    parser = ConfigParser()
    parser.read_config(FILES)
    over = _overrides(parser, dataset_dir=small_tagged, seed_method="tags", **{"seeds::methods::tags": toy})
    wf = ConfigWorkflow(config_file=FILES, meta_file=META, workflow_type="train", bundle_root=tmp, **over)
    wf.initialize()
    method = wf.parser.get_parsed_content("seeds::method")
    assert isinstance(method, TagEverywhere) and isinstance(method, SeedMethod)
    wf.run()
    wf.finalize()

    out = f"{tmp}/outputs/pseudo_labels_tags"
    metrics = json.load(open(f"{out}/seed_metrics.json"))
    meta = json.load(open(f"{out}/dataset.json"))
    assert metrics["seed_method"] == "tags" and meta["seed_method"] == "tags"
    assert metrics["num_images"] == metrics["num_scored"] == 12 and metrics["num_positive"] == 8
    assert metrics["negatives_all_background"] is True

    # the tag-only seed: every pixel of a tagged tile is nucleus (1), every pixel of a negative tile background (0)
    load = LoadImage(image_only=True, ensure_channel_first=True)
    tagged = json.load(open(os.path.join(small_tagged, "dataset.json")))["training"]
    for entry, item in zip(meta["training"], tagged, strict=True):
        pseudo = np.asarray(load(os.path.join(out, entry["label"])))
        assert pseudo.shape == (1, 32, 32) and (pseudo == item["class_labels"][0]).all()

    # IoU by hand: nucleus = nucleus pixels of the positive tiles / (all pixels of the positive tiles + nucleus pixels
    # of the negative tiles); background likewise; mIoU their mean; foreground = nucleus (one class); the seed is
    # binary, so every threshold gives the same foreground IoU
    truth = {True: [], False: []}
    for item in tagged:
        truth[item["class_labels"] == [1]].append(np.asarray(load(item["label"]))[0] > 0)
    pos, neg = np.stack(truth[True]), np.stack(truth[False])
    nucleus = pos.sum() / (pos.size + neg.sum())
    background = (~neg).sum() / (neg.size + (~pos).sum())
    assert 0.1 < nucleus < 0.9 and 0.1 < background < 0.9  # neither trivial
    assert metrics["seed_iou"] == {"nucleus": pytest.approx(nucleus)}
    assert metrics["seed_background_iou"] == pytest.approx(background)
    assert metrics["seed_miou"] == pytest.approx((nucleus + background) / 2)
    assert metrics["seed_fg_iou"] == pytest.approx(nucleus)
    assert list(metrics["fg_iou_by_threshold"].values()) == pytest.approx([nucleus] * 19)

    # the panel shows the toy next to the built-in methods (the `seeds::panel` components and the chosen one)
    panel = wf.parser.get_parsed_content("seeds::panel_methods")
    assert [m.name for m in panel] == ["cam", "advcam", "prm", "tags"]
    assert os.path.getsize(f"{tmp}/outputs/seeds_panel_tags.png") > 0


def test_an_unknown_seed_method_names_the_known_ones(tmp_path, small_tagged):
    parser = ConfigParser()
    parser.read_config(FILES)
    parser.update(_overrides(parser, dataset_dir=small_tagged, bundle_root=str(tmp_path), seed_method="gradcam"))
    _untrained_classifier(str(tmp_path), small_tagged)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("seeds::method")
    chain = exception_messages(info.value)
    assert any("gradcam" in m and "cam" in m and "advcam" in m and "prm" in m for m in chain)
