"""The multi-GPU config with 2 CPU processes (torchrun, gloo): identical weights on every rank, rank 0 writes."""

from __future__ import annotations

import os

import torch
from conftest import REPO, run_two_cpu_ranks

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")


def test_torchrun_two_cpu_processes(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    args = ["--dataset_dir", tiny_brain_dataset, "--roi_size", "[32,32,32]", "--network_def#features", "8"]
    args += ["--num_epochs", "2", "--epoch_length", "2", "--batch_labeled", "1", "--batch_unlabeled", "1"]
    configs = [f"{CONFIGS}/train.json", f"{CONFIGS}/multi_gpu_train.json"]
    w0, w1 = run_two_cpu_ranks(tmp, configs, f"{CONFIGS}/metadata.json", BUNDLE, args)
    assert w0.keys() == w1.keys()
    # parameters are identical; BatchNorm running statistics are broadcast from rank 0 before every forward
    # (DDP broadcast_buffers), so they differ only by each rank's last update, and model.pt holds rank 0's
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 40
    for k in params:
        torch.testing.assert_close(w0[k], w1[k], msg=f"ranks differ in {k}")
    start = torch.load(os.path.join(tmp, "models_rank0", "model.pt"), weights_only=True)
    torch.testing.assert_close(start["seg_head.weight"], w0["seg_head.weight"])
    assert sorted(os.listdir(os.path.join(tmp, "models_rank0"))) == ["checkpoint_epoch=2.pt", "model.pt"]
    assert not os.path.exists(os.path.join(tmp, "models_rank1"))
    assert not os.path.exists(os.path.join(tmp, "outputs_rank1"))
