"""Issue 18, item 8: the DTC bundle trains with ``torchrun --nnodes=2 --nproc_per_node=1`` as two local "nodes" on
127.0.0.1 (two torchrun processes, ``--node_rank 0`` and ``1``, gloo on CPU), each picking its device from
``LOCAL_RANK``: both ranks finish with identical parameters and only rank 0 writes the model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch
from conftest import REPO
from monai.bundle import ConfigParser

BUNDLE = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_device_comes_from_local_rank(monkeypatch):
    parser = ConfigParser()
    parser.read_config([f"{CONFIGS}/train.json", f"{CONFIGS}/multi_gpu_train.json"])
    assert "os.environ['LOCAL_RANK']" in parser["device"]  # cuda:<LOCAL_RANK> on GPUs, the same code on CPU
    monkeypatch.setenv("LOCAL_RANK", "3")
    device = parser.get_parsed_content("device")
    assert device == (torch.device("cuda:3") if torch.cuda.is_available() else torch.device("cpu"))


def test_two_nodes_on_localhost(tmp_path, tiny_brain_dataset):
    tmp = str(tmp_path)
    extra = {  # per-rank folders (to check that only rank 0 writes) and each rank's final weights and device
        "ckpt_dir": f"$os.path.join('{tmp}', 'models_rank' + os.environ['RANK'])",
        "output_dir": f"$os.path.join('{tmp}', 'outputs_rank' + os.environ['RANK'])",
        "finalize": [
            f"$torch.save(@network_def.state_dict(), os.path.join('{tmp}', 'final_rank' + os.environ['RANK'] + '.pt'))",
            f"$open(os.path.join('{tmp}', 'device_rank' + os.environ['RANK']), 'w').write("
            "os.environ['LOCAL_RANK'] + ' ' + str(@device) + ' ' + str(torch.distributed.get_world_size()))",
            "$dist.is_initialized() and dist.destroy_process_group()",
        ],
    }
    extra_file = os.path.join(tmp, "extra.json")
    with open(extra_file, "w") as f:
        json.dump(extra, f)
    files = f"['{CONFIGS}/train.json','{CONFIGS}/multi_gpu_train.json','{extra_file}']"
    args = ["--dataset_dir", tiny_brain_dataset, "--roi_size", "[32,32,32]", "--network_def#features", "8"]
    args += ["--num_epochs", "2", "--epoch_length", "2", "--batch_labeled", "1", "--batch_unlabeled", "1"]
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = []
    for node_rank in (0, 1):  # the multi-node command of the README, once per "node"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
        cmd += [f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        cmd += ["-m", "monai.bundle", "run", "--config_file", files, "--meta_file", f"{CONFIGS}/metadata.json"]
        cmd += ["--bundle_root", BUNDLE, *args]
        log = open(os.path.join(tmp, f"node{node_rank}.log"), "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=300))
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    logs = [open(os.path.join(tmp, f"node{r}.log")).read()[-3000:] for r in (0, 1)]
    assert codes == [0, 0], logs

    for rank in (0, 1):  # each node's single process: LOCAL_RANK 0, the CPU, a world of 2
        with open(os.path.join(tmp, f"device_rank{rank}")) as f:
            assert f.read() == ("0 cuda:0 2" if torch.cuda.is_available() else "0 cpu 2")
    w0, w1 = (torch.load(os.path.join(tmp, f"final_rank{r}.pt"), weights_only=True) for r in (0, 1))
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 40
    for k in params:  # gradients were averaged across the two nodes
        torch.testing.assert_close(w0[k], w1[k], msg=f"nodes differ in {k}")
    assert sorted(os.listdir(os.path.join(tmp, "models_rank0"))) == ["checkpoint_epoch=2.pt", "model.pt"]
    model = torch.load(os.path.join(tmp, "models_rank0", "model.pt"), weights_only=True)
    torch.testing.assert_close(model["seg_head.weight"], w0["seg_head.weight"])
    assert not os.path.exists(os.path.join(tmp, "models_rank1"))
    assert not os.path.exists(os.path.join(tmp, "outputs_rank1"))
