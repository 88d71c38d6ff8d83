"""
A weak-supervision benchmark from any labelled decathlon folder: each 2D slice (or each volume) is tagged with the
classes its real mask shows in at least ``min_pixels`` pixels, so slices without the object are real negatives and
the masks remain for scoring seeds and segmenters.

    python -m monai_wsss.data.slice_tags --source ../shared/data/la2018 --output ~/la2018_slice_tags --min_pixels 50

builds the left-atrium slice-tag set (cases 1-32 for training, 33-40 for testing) that ``benchmarks/cam_seeds.py``
uses; the same command turns a user's own labelled scans into a tagged set.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import numpy as np

from ..utils import atomic_write_datalist, atomic_write_nifti
from .validation import DatasetError, read_datalist

__all__ = ["build_slice_tag_dataset", "tag_classes"]


def tag_classes(mask: np.ndarray, num_classes: int, min_pixels: int) -> list[int]:
    """Multi-hot tags of the foreground classes ``1..num_classes-1`` that cover at least ``min_pixels`` of ``mask``."""
    counts = np.bincount(mask.astype(np.int64).ravel(), minlength=num_classes)
    return [int(counts[c] >= min_pixels) for c in range(1, num_classes)]


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def build_slice_tag_dataset(
    source_dir: str,
    out_dir: str,
    min_pixels: int = 50,
    axis: int = 2,
    num_test: int = 8,
    mode: str = "slices",
    datalist: str = "dataset.json",
    key: str = "training",
    slice_step: int = 1,
) -> str:
    """
    Tag a labelled decathlon folder for weak supervision and write it to ``out_dir`` (``images/``, ``masks/``,
    ``dataset.json`` with ``labels``, ``classes`` and per item ``class_labels`` (multi-hot over ``classes``),
    ``label`` (the real mask, for scoring only) and ``case``).

    ``mode="slices"``: every slice of each 3D case along ``axis`` becomes a 2D NIfTI image and mask (its affine keeps
    the in-plane axes; ``slice_step`` = k keeps slices 0, k, 2k, ... of each case, default every slice);
    ``mode="volumes"``: each case is tagged as a whole. A class is tagged present when its mask
    has at least ``min_pixels`` pixels (voxels) there; images tagged with no class are real negatives. The last
    ``num_test`` cases of the ``key`` list (in file order) form the ``test`` list, the others ``training``, so no case
    contributes to both. Files are written atomically and ``dataset.json`` last, so an interrupted build leaves no
    datalist behind.

    Raises:
        DatasetError: the source datalist is missing, has no ``labels`` map with a foreground class, an item without a
            ``label``, a case that is not 3D in ``slices`` mode, or too few cases for ``num_test``.
        ValueError: ``min_pixels`` < 1, ``slice_step`` < 1, ``mode`` not ``slices`` / ``volumes``.
    """
    import nibabel as nib

    if min_pixels < 1:
        raise ValueError(f"`min_pixels` must be >= 1, got {min_pixels}.")
    if slice_step < 1:
        raise ValueError(f"`slice_step` must be >= 1 (keep every k-th slice), got {slice_step}.")
    if mode not in ("slices", "volumes"):
        raise ValueError(f"`mode` must be 'slices' or 'volumes', got {mode!r}.")
    path, meta = read_datalist(source_dir, datalist)
    labels = meta.get("labels") or {}
    names = [labels[k] for k in sorted(labels, key=int) if int(k) > 0] if isinstance(labels, dict) else []
    if not names:
        raise DatasetError(f"{path}: needs a 'labels' map with at least one foreground class to tag images.")
    cases = meta.get(key) or []
    if len(cases) <= num_test:
        raise DatasetError(f"{path}: '{key}' has {len(cases)} cases, too few to hold out {num_test} for testing.")
    base = os.path.dirname(os.path.abspath(path))
    lists: dict[str, list[dict]] = {"training": [], "test": []}
    for n, case in enumerate(cases):
        role = "test" if n >= len(cases) - num_test else "training"
        if not isinstance(case, dict) or "label" not in case:
            raise DatasetError(f"{path} ('{key}' item {n}): every case needs a 'label' to be tagged.")
        image_nii = nib.load(os.path.join(base, case["image"]))
        image = np.asarray(image_nii.dataobj)
        mask = np.asarray(nib.load(os.path.join(base, case["label"])).dataobj)
        stem = _stem(case["image"])
        if mode == "volumes":
            parts = [(stem, image, mask, image_nii.affine)]
        else:
            if image.ndim != 3 or mask.shape != image.shape:
                raise DatasetError(
                    f"{os.path.join(base, case['image'])}: 'slices' mode needs a 3D image and mask of one shape, got "
                    f"{image.shape} and {mask.shape}."
                )
            keep = [a for a in range(3) if a != axis]
            affine = np.eye(4)
            affine[:2, :2] = image_nii.affine[np.ix_(keep, keep)]
            parts = [
                (f"{stem}_s{i:03d}", np.take(image, i, axis=axis), np.take(mask, i, axis=axis), affine)
                for i in range(0, image.shape[axis], slice_step)
            ]
        for name, img, msk, aff in parts:
            item = {"image": f"images/{name}.nii.gz", "label": f"masks/{name}.nii.gz", "case": stem}
            atomic_write_nifti(os.path.join(out_dir, item["image"]), img, aff)
            atomic_write_nifti(os.path.join(out_dir, item["label"]), msk.astype(np.uint8), aff)
            item["class_labels"] = tag_classes(msk, len(names) + 1, min_pixels)
            lists[role].append(item)
    counts = {
        role: {"images": len(items), "positive": sum(1 for i in items if any(i["class_labels"]))}
        for role, items in lists.items()
    }
    out = {
        "name": f"{meta.get('name', os.path.basename(os.path.normpath(source_dir)))}-tags",
        "description": (
            f"Image-level tags derived from the real masks of {os.path.abspath(source_dir)}: each "
            f"{'slice (axis ' + str(axis) + ')' if mode == 'slices' else 'volume'} is tagged with the classes covering "
            f"at least {min_pixels} pixels of its mask; the last {num_test} cases are the test list."
        ),
        "labels": labels,
        "classes": names,
        "tagging": {
            "mode": mode,
            "axis": axis,
            "min_pixels": min_pixels,
            "num_test": num_test,
            "slice_step": slice_step,
            "counts": counts,
        },
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), out)
    return out_dir


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="labelled decathlon folder (dataset.json with labels)")
    parser.add_argument("--output", required=True, help="folder of the tagged set")
    parser.add_argument("--min_pixels", type=int, default=50)
    parser.add_argument("--axis", type=int, default=2)
    parser.add_argument("--num_test", type=int, default=8)
    parser.add_argument("--mode", choices=("slices", "volumes"), default="slices")
    parser.add_argument("--slice_step", type=int, default=1, help="keep every k-th slice of each case (slices mode)")
    args = parser.parse_args(argv)
    out = build_slice_tag_dataset(
        args.source, args.output, args.min_pixels, args.axis, args.num_test, args.mode, slice_step=args.slice_step
    )
    print(out)


if __name__ == "__main__":
    main()
