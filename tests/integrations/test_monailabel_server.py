"""The real MONAI Label server with this project's app (``integrations/monailabel``) on 127.0.0.1, a tiny studies
folder and the DTC bundle: ``GET /info/``, ``PUT /datastore/label``, ``POST /infer/<model>``,
``POST /activelearning/<strategy>`` (a monai_wsss strategy, with its plane query) and a short ``POST /train/<model>``,
each bounded in time. Runs when ``make monailabel`` has built ``.venv-monailabel``; skips otherwise."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ML_PYTHON = os.environ.get("MONAILABEL_PYTHON") or os.path.join(REPO, ".venv-monailabel", "bin", "python")
BUNDLE = "dtc_semisupervised_seg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.isfile(ML_PYTHON),
        reason="no .venv-monailabel (run `make monailabel` to install MONAI Label 0.8.5 in its own environment)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_brain_dataset):
    requests = pytest.importorskip("requests")
    tmp = tmp_path_factory.mktemp("monailabel")
    bundles = tmp / "bundles"
    root = bundles / BUNDLE
    for sub in ("configs", "docs"):
        shutil.copytree(os.path.join(REPO, "bundles", BUNDLE, sub), root / sub)
    # untrained weights of the training network, so that MONAI Label serves the bundle before the first training
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    os.makedirs(root / "models")
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    studies = tmp / "studies"
    os.makedirs(studies)
    for name in ("robex", "robex_mirror", "mni152"):
        shutil.copy(os.path.join(tiny_brain_dataset, "imagesTr", f"{name}.nii.gz"), studies / f"{name}.nii.gz")
    port = _free_port()
    app = os.path.join(REPO, "integrations", "monailabel")
    cmd = [ML_PYTHON, "-m", "monailabel.main", "start_server", "--app", app]
    cmd += ["--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--conf", "models", BUNDLE, "--conf", "bundles_dir", str(bundles), "--conf", "n_segments", "40"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MONAI_LABEL_AUTO_UPDATE_SCORING="false", PYTHONPATH=REPO)
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            if requests.get(f"{url}/info/", timeout=5).ok:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"MONAI Label server did not start:\n{open(tmp / 'server.log').read()[-4000:]}")
        time.sleep(1)
    yield {"url": url, "requests": requests, "root": root, "studies": studies, "data": tiny_brain_dataset}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_info_lists_bundle_trainer_and_strategies(server):
    info = server["requests"].get(f"{server['url']}/info/", timeout=30).json()
    assert info["name"] == "monai_wsss"
    assert BUNDLE in info["models"] and info["models"][BUNDLE]["labels"] == {"foreground": 1}
    assert info["models"][BUNDLE]["dimension"] == 3
    assert BUNDLE in info["trainers"]
    assert {"random", "first", "wsss_entropy", "wsss_geometric", "wsss_geometric_plane"} <= set(info["strategies"])
    assert "wsss_regions" in info["scoring"]


def test_save_label_then_infer(server):
    requests, url = server["requests"], server["url"]
    for name in ("robex", "robex_mirror"):
        with open(os.path.join(server["data"], "labelsTr", f"{name}.nii.gz"), "rb") as f:
            r = requests.put(
                f"{url}/datastore/label", params={"image": name, "tag": "final"}, files={"label": f}, timeout=60
            )
        assert r.ok, r.text
    store = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert {"robex", "robex_mirror"} <= {k for k, v in store["objects"].items() if "final" in v.get("labels", {})}
    r = requests.post(f"{url}/infer/{BUNDLE}", params={"image": "mni152", "output": "image"}, timeout=120)
    assert r.ok, r.text
    seg = nib.Nifti1Image.from_bytes(r.content) if r.content[:4] != b"\x1f\x8b\x08\x00" else None
    if seg is None:
        import gzip

        seg = nib.Nifti1Image.from_bytes(gzip.decompress(r.content))
    image = nib.load(os.path.join(server["studies"], "mni152.nii.gz"))
    assert seg.shape[:3] == image.shape[:3]
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}


def test_activelearning_returns_image_and_plane_query(server):
    requests, url = server["requests"], server["url"]
    r = requests.post(f"{url}/activelearning/wsss_geometric_plane", json={}, timeout=180)
    assert r.ok, r.text
    out = r.json()
    assert out["id"] == "mni152"  # the only image without a label
    assert np.isfinite(out["score"]) and out["query"]["voxels"] > 0
    plane = out["query"]["plane"]
    assert plane is not None and out["query"]["strategy"] == "geometric_plane"
    mask = nib.load(out["query_mask"])
    assert mask.shape == nib.load(os.path.join(server["studies"], "mni152.nii.gz")).shape[:3]
    assert int(np.asarray(mask.dataobj).sum()) == out["query"]["voxels"]
    info = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert "wsss_entropy" in info["objects"]["mni152"]["image"]["info"]


def test_short_training_writes_the_model(server):
    requests, url = server["requests"], server["url"]
    model = server["root"] / "models" / "model.pt"
    before = os.path.getmtime(model)
    params = {"max_epochs": 1, "epoch_length": 2, "val_split": -1, "multi_gpu": False, "device": "cpu"}
    r = requests.post(f"{url}/train/{BUNDLE}", params={"run_sync": True}, json=params, timeout=420)
    assert r.ok, r.text
    assert os.path.getmtime(model) > before, "training did not write models/model.pt"
    dataset = json.load(open(server["root"] / "outputs" / "monailabel_dataset" / "dataset.json"))
    assert len(dataset["training"]) == 2 and [os.path.basename(d["image"]) for d in dataset["unlabeled"]] == [
        "mni152.nii.gz"
    ]
    state = torch.load(model, weights_only=True)
    assert any(k.endswith("weight") for k in state)
