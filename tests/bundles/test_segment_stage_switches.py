"""`--head ocr --criterion lall` in the segmenter stage of the weak-supervision and synthesis bundles, run through
`python -m monai.bundle run` exactly as a user would, on real tiles."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

TINY = [
    "--segment::batch_size", "2",
    "--segment::num_epochs", "1",
    "--segment::epoch_length", "2",
    "--segment::backbone_features", "[4,4,8,8,16,4]",
    "--segment::ocr_mid_channels", "8",
    "--segment::ocr_key_channels", "4",
]  # fmt: skip


def _run(bundle: str, configs: list[str], tmp: str, dataset_dir: str, *extra: str) -> subprocess.CompletedProcess:
    root = os.path.join(REPO, "bundles", bundle)
    files = "[" + ",".join(f"'{root}/configs/{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files]
    cmd += ["--meta_file", f"{root}/configs/metadata.json", "--dataset_dir", dataset_dir, *extra, *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp)


@pytest.mark.parametrize(
    "bundle,configs,fixture",
    [
        ("weakly_supervised_seg", ["segment.json"], "small_tagged"),
        ("pix2pix_microscopy_synthesis", ["train.json", "segment.json"], "nuclei_dataset"),
    ],
)
def test_ocr_head_and_locally_adaptive_loss_in_the_segment_stage(tmp_path, request, bundle, configs, fixture):
    dataset_dir = request.getfixturevalue(fixture)
    tmp = str(tmp_path)
    extra = ["--bundle_root", tmp, "--head", "ocr", "--criterion", "lall"]
    if bundle.startswith("pix2pix"):
        extra += ["--ckpt_dir", f"{tmp}/models", "--roi_size", "[32,32]"]
    proc = _run(bundle, configs, tmp, dataset_dir, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [os.path.join(d, f) for d, _, files in os.walk(f"{tmp}/models") for f in files if f == "model.pt"]
    assert len(found) == 1
    state = torch.load(found[0], weights_only=True)
    assert any(k.startswith("head.aux_head") for k in state)  # the OCR segmenter, with its soft-region head
    assert any(k.startswith("backbone.network.upcat_1") for k in state)
