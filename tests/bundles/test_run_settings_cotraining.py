"""Issue 19 run settings in the co-training bundle: an ordered split deals the first labelled cases to the members
in datalist order, split.json records the member subsets, the best validation model is kept, and the first line
states the run's iteration count."""

from __future__ import annotations

import json
import os
import shutil

import torch
from conftest import REPO
from monai.bundle import ConfigWorkflow

BUNDLE = os.path.join(REPO, "bundles", "cotraining_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
SMALL = {"roi_size": [32, 32], "backbone#channels": [8, 16, 32], "backbone#strides": [2, 2], "num_workers": 0}


def test_ordered_split_subsets_best_model_and_first_line(tmp_path, tiny_tissue_dataset, capsys):
    data = os.path.join(tmp_path, "data")
    shutil.copytree(tiny_tissue_dataset, data)
    with open(os.path.join(data, "dataset.json")) as f:
        meta = json.load(f)
    meta["validation"] = meta["test"][:1]  # a validation list, so the trainer validates
    with open(os.path.join(data, "dataset.json"), "w") as f:
        json.dump(meta, f)
    first_two = [os.path.normpath(d["image"]) for d in meta["training"][:2]]
    over = dict(SMALL, dataset_dir=data, ckpt_dir=os.path.join(tmp_path, "models"))
    over.update(output_dir=os.path.join(tmp_path, "outputs"), num_epochs=2, epoch_length=2, val_interval=1)
    over.update(num_labeled=2, split_order="ordered", device=torch.device("cpu"))
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        workflow_type="train",
        bundle_root=BUNDLE,
        **over,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    out = capsys.readouterr().out  # the bundle's logging.conf logs to stdout
    first = next(line for line in out.splitlines() if " - monai_wsss - INFO - " in line)
    assert "split ordered: 2 labeled" in first and first.endswith("2 epochs x 2 iterations = 4 iterations."), first
    assert wf.parser.get_parsed_content("train::trainer").state.iteration == 4
    with open(os.path.join(tmp_path, "outputs", "split.json")) as f:
        split = json.load(f)
    assert split["split_order"] == "ordered" and split["labeled"] == first_two
    assert split["subsets"] == [[first_two[0]], [first_two[1]]]  # overlap 0: dealt in datalist order
    assert split["validation"] == [os.path.normpath(meta["test"][0]["image"])]
    assert os.path.isfile(os.path.join(tmp_path, "models", "model_best.pt"))
    best = torch.load(os.path.join(tmp_path, "models", "model_best.pt"), weights_only=True)
    final = torch.load(os.path.join(tmp_path, "models", "model.pt"), weights_only=True)
    assert set(best) == set(final)
