"""The multi-GPU config with 2 CPU processes (torchrun, gloo): identical weights on every rank, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from conftest import REPO

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")


def test_torchrun_two_cpu_processes(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    extra = {
        "ckpt_dir": f"$os.path.join('{tmp}', 'models_rank' + os.environ['RANK'])",
        "output_dir": f"$os.path.join('{tmp}', 'outputs_rank' + os.environ['RANK'])",
        "finalize": [
            f"$torch.save(@network_def.state_dict(), os.path.join('{tmp}', 'final_rank' + os.environ['RANK'] + '.pt'))",
            "$dist.is_initialized() and dist.destroy_process_group()",
        ],
    }
    extra_file = os.path.join(tmp, "extra.json")
    with open(extra_file, "w") as f:
        json.dump(extra, f)
    files = f"['{CONFIGS}/train.json','{CONFIGS}/multi_gpu_train.json','{extra_file}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "--config_file", files, "--meta_file", f"{CONFIGS}/metadata.json"]
    cmd += ["--bundle_root", BUNDLE, "--dataset_dir", tiny_brain_dataset, "--patch_size", "[32,32,32]"]
    cmd += ["--network_def#features", "8", "--num_iterations", "4", "--epoch_length", "2", "--batch_labeled", "1"]
    cmd += ["--batch_unlabeled", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(os.path.join(tmp, "final_rank0.pt"), weights_only=True)
    w1 = torch.load(os.path.join(tmp, "final_rank1.pt"), weights_only=True)
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
