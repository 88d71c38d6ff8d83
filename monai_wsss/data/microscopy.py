"""
Default 2D microscopy data: a real fluorescence image of nuclei with its instance masks, cut into tiles.

``stardist_nuclei_tiles`` (``NUCLEI_DATASET``): ``img2d.tif`` (512x512, uint16, values 0..235) and ``mask2d.tif``
(instance labels) ship in the PyPI package ``stardist``; the image comes from the 2018 Data Science Bowl (stage 1
training set, CC0). One image only: the tiles are crops of the same field of view, so the set is a demonstration,
not a benchmark. Train and test come from spatially disjoint regions (the right-most columns are held out), so no
test pixel is ever seen in training. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np

from ..utils import atomic_write_datalist

__all__ = ["NUCLEI_DATASET", "build_nuclei_tiles_dataset"]

NUCLEI_DATASET = "stardist_nuclei_tiles"
_STARDIST_IMAGES = ("data", "images")


def _stardist_images_dir() -> str:
    """The folder of stardist's sample images, found without importing stardist (which loads numba)."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "Python package 'stardist' is not installed, so <site-packages>/stardist/data/images/ is missing "
            "(pip install stardist)."
        )
    return os.path.join(os.path.dirname(spec.origin), *_STARDIST_IMAGES)


def _tiles(height: int, col_start: int, col_stop: int, tile: int) -> list[tuple[int, int]]:
    """Top-left (row, col) offsets of the complete, non-overlapping ``tile`` x ``tile`` tiles of a column range."""
    return [(r, c) for r in range(0, height - tile + 1, tile) for c in range(col_start, col_stop - tile + 1, tile)]


def _read_stardist_sample() -> tuple[np.ndarray, np.ndarray]:
    """stardist's real ``img2d.tif`` and its instance labels ``mask2d.tif``, checked to be one 2D pair."""
    import tifffile

    folder = _stardist_images_dir()
    paths = {k: os.path.join(folder, f"{k}2d.tif") for k in ("img", "mask")}
    for path in paths.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"stardist's sample file is missing: {path} (pip install stardist).")
    image = np.asarray(tifffile.imread(paths["img"]))
    labels = np.asarray(tifffile.imread(paths["mask"]))
    if image.ndim != 2 or image.shape != labels.shape:
        raise ValueError(f"Expected one 2D image and mask of the same shape, got {image.shape} and {labels.shape}.")
    return image, labels


def _write_tiles(
    out_dir: str,
    image_u8: np.ndarray,
    mask_u8: np.ndarray,
    tile: int,
    test_columns: int,
    extra: Callable[[np.ndarray], dict] | None = None,
) -> dict[str, list[dict]]:
    """
    Cut ``image_u8`` / ``mask_u8`` into ``tile`` x ``tile`` PNG tiles under ``out_dir/images`` and ``out_dir/masks``:
    the right-most ``test_columns`` columns give the ``test`` list, the rest ``training``; ``extra(mask_tile)`` adds
    keys to each item (e.g. image-level tags).
    """
    from PIL import Image

    height, width = image_u8.shape
    if tile < 1:
        raise ValueError(f"`tile` must be positive, got {tile}.")
    if not tile <= test_columns <= width - tile:
        raise ValueError(
            f"`test_columns` must leave a complete tile in both regions: {tile} <= test_columns <= {width - tile} "
            f"(image width {width}, tile {tile}), got {test_columns}."
        )
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    split = width - test_columns
    regions = {"training": _tiles(height, 0, split, tile), "test": _tiles(height, split, width, tile)}
    lists: dict[str, list[dict]] = {"training": [], "test": []}
    for role, offsets in regions.items():
        for r, c in offsets:
            name = f"nuclei_r{r:03d}_c{c:03d}.png"
            window = (slice(r, r + tile), slice(c, c + tile))
            item = {"image": f"images/{name}", "label": f"masks/{name}"}
            if extra is not None:
                item.update(extra(mask_u8[window]))
            Image.fromarray(np.ascontiguousarray(image_u8[window])).save(os.path.join(out_dir, item["image"]))
            Image.fromarray(np.ascontiguousarray(mask_u8[window])).save(os.path.join(out_dir, item["label"]))
            lists[role].append(item)
    return lists


def build_nuclei_tiles_dataset(out_dir: str, tile: int = 128, test_columns: int = 128) -> str:
    """
    Build the default nuclei set in ``out_dir``: ``images/`` and ``masks/`` (8-bit PNG tiles named
    ``nuclei_r{row:03d}_c{col:03d}.png`` after their pixel offsets) and a decathlon-style ``dataset.json`` with
    ``training`` and ``test`` lists.

    The right-most ``test_columns`` columns of the image are the test region and the rest is the training region;
    each region is cut into non-overlapping ``tile`` x ``tile`` tiles, incomplete tiles are dropped. With the defaults
    (512x512 image) this gives 12 training and 4 test tiles. Images keep their raw grey values when they fit in
    uint8 (they do for stardist's image, max 235), else they are scaled by their maximum to [0, 255] (the
    description says so). Masks are binary: 1 where the instance label is > 0.

    Args:
        out_dir: destination folder (created if needed).
        tile: side of the square tiles, in pixels.
        test_columns: width of the held-out test region, in pixels.

    Raises:
        FileNotFoundError: when stardist (or one of its two sample files) is missing.
        ValueError: when ``tile`` or ``test_columns`` leave a region without a complete tile.
    """
    image, labels = _read_stardist_sample()
    height, width = image.shape
    scaled = bool(image.max() > 255)
    image = np.clip(image.astype(np.float64), 0, None)  # fluorescence counts: never negative in stardist's file
    if scaled:
        image = np.rint(image * (255.0 / float(image.max())))
    image_u8 = image.astype(np.uint8)
    lists = _write_tiles(out_dir, image_u8, (labels > 0).astype(np.uint8), tile, test_columns)

    intensity = (
        "grey values scaled by the image maximum to 0..255"
        if scaled
        else f"raw grey values (0..{int(image_u8.max())}, no scaling)"
    )
    meta = {
        "name": "StarDist-nuclei-tiles",
        "description": (
            f"One real {height}x{width} fluorescence microscopy image of nuclei from the 2018 Data Science Bowl, "
            f"shipped by the stardist package (img2d.tif, mask2d.tif), cut into {tile}x{tile} tiles saved as 8-bit "
            f"PNG ({intensity}); masks are binary (nucleus = instance label > 0). The right-most {test_columns} "
            "columns are the test region and the rest the training region, so train and test tiles are spatially "
            "disjoint; all tiles come from the same single field of view (a demonstration set, not a benchmark)."
        ),
        "sources": {
            "img2d.tif": "PyPI stardist (stardist/data/images/img2d.tif; 2018 Data Science Bowl, CC0)",
            "mask2d.tif": "PyPI stardist (stardist/data/images/mask2d.tif; instance labels)",
        },
        "licence": "CC0 image, via stardist BSD-3",
        "tensorImageSize": "2D",
        "modality": {"0": "fluorescence microscopy"},
        "labels": {"0": "background", "1": "nucleus"},
        "numTraining": len(lists["training"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_datalist(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir
