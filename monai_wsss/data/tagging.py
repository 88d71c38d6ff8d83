"""
Image-level tags (weak supervision): a default set of real images tagged from real annotations, and the reader that
validates tags in a decathlon-style ``dataset.json``.

``stardist_nuclei_tagged_tiles`` (``TAGGED_NUCLEI_DATASET``): stardist's real fluorescence image of nuclei
(``img2d.tif``, 512x512, 2018 Data Science Bowl, CC0; see :py:mod:`monai_wsss.data.microscopy`) cut into small tiles;
each tile is tagged ``nucleus`` when its instance mask has at least ``min_pixels`` foreground pixels and negative
(no class) otherwise, so the set holds real negatives. The masks are kept only to score seeds and the final
segmenter, never to train. Train and test come from spatially disjoint regions (test: the right-most columns).

Tag format (per item of a list): ``"class_labels"`` is either a multi-hot list with one 0/1 entry per name of the
top-level ``"classes"`` list (``[1]`` = nucleus present, ``[0]`` = negative), or a list of class names taken from
``"classes"`` (``["nucleus"]``, ``[]`` for a negative). ``"labels"`` (``{"0": "background", "1": "nucleus"}``) must
name the same classes after background, in order, when both are given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..utils import atomic_write_datalist
from .microscopy import _read_stardist_sample, _write_tiles
from .validation import DatasetError, read_datalist, validate_datalist

__all__ = ["TAGGED_NUCLEI_DATASET", "build_tagged_nuclei_dataset", "load_tagged_datalist", "parse_class_labels"]

TAGGED_NUCLEI_DATASET = "stardist_nuclei_tagged_tiles"


def build_tagged_nuclei_dataset(out_dir: str, tile: int = 32, test_columns: int = 128, min_pixels: int = 20) -> str:
    """
    Build the default image-level-label set in ``out_dir``: ``images/`` and ``masks/`` (8-bit PNG tiles named
    ``nuclei_r{row:03d}_c{col:03d}.png``) and a ``dataset.json`` with ``labels``, ``classes`` (``["nucleus"]``) and,
    per item, ``"class_labels": [1]`` when the tile's mask has at least ``min_pixels`` nucleus pixels, else ``[0]``.

    Tagging scheme: ``[1]`` means "at least ``min_pixels`` (default 20, about 2% of a 32x32 tile) pixels belong to a
    nucleus"; tiles with fewer (empty, or only a sliver of a nucleus cut by the tile border) are negatives. With the
    defaults the 384 left columns give 192 training tiles (145 tagged nucleus, 47 negatives) and the 128 right-most
    columns 64 test tiles (44 / 20). Grey values are kept raw (stardist's image fits in 8 bits, max 235).

    Raises:
        FileNotFoundError: stardist (or one of its sample files) is missing.
        ValueError: ``tile`` / ``test_columns`` leave a region without a complete tile, or ``min_pixels < 1``.
    """
    if min_pixels < 1:
        raise ValueError(f"`min_pixels` must be >= 1, got {min_pixels}.")
    image, labels = _read_stardist_sample()
    height, width = image.shape
    if image.max() > 255:
        image = np.rint(np.clip(image.astype(np.float64), 0, None) * (255.0 / float(image.max())))
    image_u8 = np.clip(image, 0, 255).astype(np.uint8)
    lists = _write_tiles(
        out_dir,
        image_u8,
        (labels > 0).astype(np.uint8),
        tile,
        test_columns,
        extra=lambda m: {"class_labels": [int(int(m.sum()) >= min_pixels)]},
    )
    counts = {k: sum(i["class_labels"][0] for i in v) for k, v in lists.items()}
    meta = {
        "name": "StarDist-nuclei-tagged-tiles",
        "description": (
            f"Image-level labels from real annotations: stardist's real {height}x{width} fluorescence image of nuclei "
            f"(2018 Data Science Bowl) cut into {tile}x{tile} tiles; a tile is tagged 'nucleus' (class_labels [1]) "
            f"when its instance mask has >= {min_pixels} nucleus pixels, else negative ([0]). The right-most "
            f"{test_columns} columns are the test region (spatially disjoint from training). Masks are for scoring "
            f"only. Positives: {counts['training']}/{len(lists['training'])} training, "
            f"{counts['test']}/{len(lists['test'])} test."
        ),
        "sources": {
            "img2d.tif": "PyPI stardist (stardist/data/images/img2d.tif; 2018 Data Science Bowl, CC0)",
            "mask2d.tif": "PyPI stardist (stardist/data/images/mask2d.tif; instance labels)",
        },
        "licence": "CC0 image, via stardist BSD-3",
        "tensorImageSize": "2D",
        "modality": {"0": "fluorescence microscopy"},
        "labels": {"0": "background", "1": "nucleus"},
        "classes": ["nucleus"],
        "tagging": {"tile": tile, "min_pixels": min_pixels, "test_columns": test_columns},
        "numTraining": len(lists["training"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir


def parse_class_labels(tags: object, classes: Sequence[str], where: str) -> list[float]:
    """
    One item's ``class_labels`` (multi-hot 0/1 list of ``len(classes)`` entries, or a list of class names from
    ``classes``) as a multi-hot float list. ``where`` names the file and item in the error.

    Raises:
        DatasetError: not a list, wrong length, values other than 0/1, or class names outside ``classes``.
    """
    if not isinstance(tags, list):
        raise DatasetError(f"{where}: 'class_labels' must be a list, got {tags!r}.")
    if all(isinstance(t, str) for t in tags) and tags:
        unknown = sorted({t for t in tags if t not in classes})
        if unknown:
            raise DatasetError(f"{where}: class names {unknown} are not among the declared classes {list(classes)}.")
        return [float(c in tags) for c in classes]
    if len(tags) != len(classes):
        raise DatasetError(
            f"{where}: 'class_labels' {tags!r} must have one 0/1 entry per declared class {list(classes)} "
            "(or list class names)."
        )
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t in (0, 1) for t in tags):
        raise DatasetError(f"{where}: 'class_labels' {tags!r} must hold only 0 or 1 (multi-hot).")
    return [float(t) for t in tags]


def _classes(meta: dict, path: str) -> list[str]:
    labels = meta.get("labels")
    from_labels = None
    if isinstance(labels, dict) and labels:
        try:
            keys = sorted(int(k) for k in labels)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{path}: 'labels' keys must be integers, got {sorted(labels)}.") from e
        from_labels = [str(labels[str(k)]) for k in keys if k != 0]
    classes = meta.get("classes", from_labels)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise DatasetError(
            f"{path}: needs a non-empty 'classes' list of names (or a 'labels' field), got {meta.get('classes')!r}."
        )
    if len(set(classes)) != len(classes):
        raise DatasetError(f"{path}: 'classes' {classes} has repeated names.")
    if from_labels is not None and from_labels != classes:
        raise DatasetError(
            f"{path}: 'classes' {classes} does not match the foreground names of 'labels' {from_labels}."
        )
    return classes


def load_tagged_datalist(
    dataset_dir: str,
    datalist: str = "dataset.json",
    keys: Sequence[str] = ("training", "test"),
    validate: bool = True,
    spatial_dims: int | None = None,
    channels: int | None = None,
) -> dict:
    """
    Read a decathlon-style ``dataset.json`` with image-level tags and return ``{"classes": [...], key: items}`` for
    each list in ``keys`` (missing lists are empty). Paths become absolute; each item's ``class_labels`` becomes a
    ``float32`` multi-hot array of ``len(classes)`` entries (all zeros: a negative image); ``label`` (pixel masks,
    used only for scoring) is kept when present. Items with neither tags nor a ``class_labels`` key are rejected.
    With ``validate`` (default), every image and mask is checked as in a training datalist
    (:py:func:`monai_wsss.data.validate_datalist`, with ``spatial_dims`` / ``channels`` when given) and an image
    listed twice, or in two lists, is refused.

    Raises:
        DatasetError: missing or unreadable datalist, no classes, an item without ``class_labels``, a malformed tag
            or a class name outside the declared ``classes``; the message names the file and the item.
    """
    path, meta = read_datalist(dataset_dir, datalist)
    classes = _classes(meta, path)
    base = os.path.dirname(os.path.abspath(path))
    out: dict = {"classes": classes}
    for key in keys:
        items = []
        for n, item in enumerate(meta.get(key) or []):
            where = f"{path} ('{key}' item {n}: {item.get('image') if isinstance(item, dict) else item!r})"
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                raise DatasetError(f"{where}: each item needs an 'image' path.")
            if "class_labels" not in item:
                raise DatasetError(f"{where}: has no 'class_labels' (image-level tags).")
            d = {
                k: os.path.join(base, v) if k in ("image", "label") and isinstance(v, str) else v
                for k, v in item.items()
            }
            d["class_labels"] = np.asarray(parse_class_labels(item["class_labels"], classes, where), dtype=np.float32)
            items.append(d)
        out[key] = items
    if not out.get(keys[0]):
        raise DatasetError(f"{path}: has no non-empty '{keys[0]}' list.")
    if validate:
        from .datalist import check_duplicates, label_values_of

        lists = {key: out[key] for key in keys}
        check_duplicates(path, lists)
        items = [d for key in keys for d in out[key]]
        validate_datalist(items, label_values_of(path, meta, items), spatial_dims=spatial_dims, channels=channels)
    return out
