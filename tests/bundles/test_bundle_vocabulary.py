"""Every bundle spells a shared concept one way: the table "One vocabulary for bundle keys" of the top-level README.

A bundle key is a top-level key of a config file, each ``::`` / ``#`` part of an override path (``train::loader``),
or a key of a section (a dict without ``_target_``, e.g. ``segment: {...}``). The arguments of a component (the keys
of a dict with ``_target_``, such as ``max_epochs`` of ``SupervisedTrainer`` or ``lr`` of ``Adam``) are the callee's
own names and are not checked.
"""

from __future__ import annotations

import glob
import json
import os
import re

import pytest
from conftest import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, "bundles", "*", "configs", "*.json")))
NOT_CONFIGS = {"metadata.json"}  # the model zoo's metadata schema, not config keys

# "not" column of the README table -> the key to use
ELSEWHERE = {
    "patch_size": "roi_size",
    "image_size": "roi_size",
    "input_size": "roi_size",
    "crop_size": "roi_size",
    "num_iterations": "num_epochs x epoch_length",
    "max_epochs": "num_epochs",
    "epochs": "num_epochs",
    "divisor": "divisible_by",
    "k_divisible": "divisible_by",
    "eval_dir": "output_dir",
    "out_dir": "output_dir",
    "seg_output_dir": "output_dir",
    "lr": "learning_rate",
    "seg_batch_size": "batch_size",
    "pretrained_path": "pretrained_weights",
    "weights_path": "pretrained_weights",
}
STAGE_PREFIXES = {"seg_": "segment::", "mask_": "masks::"}


def _parts(key: str) -> list[str]:
    return [p for p in re.split(r"::|#", key) if p]


def violations(config: dict) -> list[str]:
    """The keys of one parsed config file that break the vocabulary, each with the spelling to use."""
    found: list[str] = []

    def check_name(path: str, name: str) -> None:
        if name in ELSEWHERE:
            found.append(f"{path}: `{name}` is spelt `{ELSEWHERE[name]}` in every bundle")

    def walk(value, path: str) -> None:
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, dict):
            if "_target_" in value:  # a component: its keys are the callee's arguments
                for k, v in value.items():
                    walk(v, f"{path}::{k}")
                return
            for k, v in value.items():
                if not k.startswith("_"):
                    for part in _parts(k):
                        check_name(f"{path}::{k}", part)
                walk(v, f"{path}::{k}")

    for key, value in config.items():
        if key.startswith("_"):
            continue
        parts = _parts(key)
        for prefix, section in STAGE_PREFIXES.items():
            if parts and parts[0].startswith(prefix):
                found.append(f"{key}: stage keys sit in a section (`{section}...`), not behind the prefix `{prefix}`")
        for part in parts:
            check_name(key, part)
        walk(value, key)
    return found


def test_the_checker_flags_other_spellings_and_leaves_component_arguments_alone():
    config = {
        "seg_batch_size": 4,
        "mask_latent_size": 8,
        "image_size": [32, 32],
        "train::loader::lr": 1,
        "segment": {"patch_size": [8, 8], "roi_size": [8, 8], "checkpoint_dict": {"mask_generator": "@g"}},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": "@learning_rate", "params": "$@network.parameters()"},
        "trainer": {"_target_": "SupervisedTrainer", "max_epochs": "@num_epochs", "handlers": [{"epochs": 1}]},
        "_comment": "epochs",
    }
    found = violations(config)
    assert any(v.startswith("seg_batch_size: stage keys sit in a section (`segment::...`)") for v in found)
    assert any(v.startswith("seg_batch_size: `seg_batch_size` is spelt `batch_size`") for v in found)
    assert any(v.startswith("mask_latent_size: stage keys sit in a section (`masks::...`)") for v in found)
    assert "image_size: `image_size` is spelt `roi_size` in every bundle" in found
    assert "train::loader::lr: `lr` is spelt `learning_rate` in every bundle" in found
    assert "segment::patch_size: `patch_size` is spelt `roi_size` in every bundle" in found
    assert "trainer::handlers[0]::epochs: `epochs` is spelt `num_epochs` in every bundle" in found
    assert len(found) == 7, found  # Adam's `lr`, the trainer's `max_epochs`, `_comment`, nested names: not flagged


def test_every_bundle_config_follows_the_vocabulary():
    assert len({os.path.basename(os.path.dirname(os.path.dirname(c))) for c in CONFIGS}) >= 5  # all the bundles
    problems = []
    for path in CONFIGS:
        if os.path.basename(path) in NOT_CONFIGS:
            continue
        with open(path) as f:
            config = json.load(f)
        rel = os.path.relpath(path, REPO)
        problems += [f"{rel}: {v}" for v in violations(config)]
    assert not problems, "keys outside the README vocabulary:\n" + "\n".join(problems)


SEGMENT_CONFIGS = [
    os.path.join(REPO, "bundles", b, "configs", "segment.json")
    for b in ("weakly_supervised_seg", "pix2pix_microscopy_synthesis")
]


@pytest.mark.parametrize("path", SEGMENT_CONFIGS)
def test_segment_configs_share_one_section(path):
    """Both downstream segmenters are the same `segment` section over the one library recipe."""
    with open(SEGMENT_CONFIGS[0]) as f:
        reference = json.load(f)["segment"]
    with open(path) as f:
        section = json.load(f)["segment"]
    assert set(section) == set(reference)
    assert section["recipe"]["_target_"] == "monai_wsss.apps.segmenter.SegmenterRecipe"
    assert {k: v for k, v in section["recipe"].items() if k != "stream_name"} == {
        k: v for k, v in reference["recipe"].items() if k != "stream_name"
    }
    for key in ("trainer", "evaluator", "network", "loss", "optimizer"):
        assert section[key] == reference[key], key
