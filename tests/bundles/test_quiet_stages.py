"""Every bundle config that brings its own ``initialize`` list (it replaces the one of a config merged before it)
quiets the optional GPU decoder notices first, and defines the ``verbose`` switch when it can run on its own."""

from __future__ import annotations

import glob
import json
import os

import pytest

BUNDLES = os.path.join(os.path.dirname(__file__), "..", "..", "bundles")
QUIET = "$monai_wsss.handlers.quiet_optional_decoders(@verbose, @device)"
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(BUNDLES, "*", "configs", "*.json")) if not p.endswith("metadata.json")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, BUNDLES))
def test_initialize_quiets_decoder_notices_first(path):
    with open(path) as f:
        config = json.load(f)
    if "initialize" not in config:
        return
    initialize = [e for e in config["initialize"] if e != "$monai_wsss.settings.check_command_line()"]  # issue 18
    assert initialize[0] == QUIET, f"{path}: `initialize` does not start with {QUIET}"
    if os.path.basename(path) in ("train.json", "train_classifier.json", "inference.json"):  # run standalone
        assert "verbose" in config and config["verbose"] is False, f"{path}: no `verbose` key (default false)"
        assert "$import monai_wsss.handlers" in config.get("imports", []), f"{path}: does not import the handlers"
