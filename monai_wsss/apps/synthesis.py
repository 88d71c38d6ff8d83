"""Write synthetic (mask, image) pairs and a decathlon-style datalist, so any segmentation bundle trains on them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism
from tqdm import tqdm

from ..data.validation import validate_datalist
from ..handlers.figures import save_image_grid
from ..utils import atomic_write_datalist, atomic_write_image, replace_directory

__all__ = ["GeneratedMasks", "PairSynthesizer"]


def _rescale(image: torch.Tensor, value_range: Sequence[float], output_range: Sequence[float]) -> np.ndarray:
    """Map ``value_range`` linearly onto ``output_range`` and round to uint8 (outputs within 0..255) or uint16."""
    lo, hi = float(value_range[0]), float(value_range[1])
    out_lo, out_hi = float(output_range[0]), float(output_range[1])
    unit = np.clip((image.float().cpu().numpy() - lo) / (hi - lo), 0, 1)
    dtype = np.uint8 if 0 <= out_lo and out_hi <= 255 else np.uint16
    return np.rint(out_lo + unit * (out_hi - out_lo)).astype(dtype)


class PairSynthesizer:
    """
    The synthesis step of Bailo, Ham, Shin (CVPR Workshops 2019): draw ``num_pairs`` masks from ``masks`` (a dataset
    whose random geometric transforms, or a generative mask model, make each draw new), generate an image for each
    with a trained mask-to-image ``generator`` (pix2pix dropout left on, the generator's only noise, as in Isola et
    al., CVPR 2017), and write ``images/``, ``masks/`` and a decathlon-style ``dataset.json`` into ``output_dir``.

    ``dataset.json`` lists the synthetic pairs under ``training``, followed by ``real_items`` (absolute paths) when
    given, and ``test_items`` under ``test``, so a segmentation bundle trains on real + synthetic data with one
    ``--dataset_dir`` override. The folder is assembled in a temporary sibling and renamed into place, so a stopped
    run never leaves a half-written dataset; an existing ``output_dir`` is replaced. The result is checked with the
    data layer's :py:func:`~monai_wsss.data.validate_datalist`. A PNG grid of the first pairs is written to
    ``grid_path``.

    Args:
        generator: mask -> image network.
        masks: indexable source of masks: items are tensors or dictionaries holding ``mask_key`` (channel-first label
            maps); item ``i % len(masks)`` is drawn for pair ``i``.
        num_pairs: pairs to write.
        output_dir: dataset folder to create.
        label_names: ``{"0": "background", ...}`` for ``dataset.json`` (also the allowed mask values).
        image_range: value range of the generator output.
        output_range: intensities written for ``image_range`` (the inverse of the training normalisation; 8-bit
            when within 0..255, else 16-bit).
        mask_key: key of the mask in dictionary items.
        device: where the generator runs.
        batch_size: masks per generator call.
        output_ext: ``".png"`` (2D) or ``".nii.gz"``; default: PNG for 2D masks, NIfTI otherwise.
        real_items: real training pairs to list after the synthetic ones (paths made absolute).
        test_items: real test pairs for the ``test`` list.
        grid_path: PNG grid of masks and generated images; ``None`` skips it.
        grid_samples: rows of the grid.
        seed: seed for the mask draws and the dropout noise.
        keep_dropout: sample with dropout active (pix2pix); ``False`` gives one deterministic image per mask.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        masks: Sequence,
        num_pairs: int,
        output_dir: str,
        label_names: dict[str, str],
        image_range: Sequence[float] = (-1.0, 1.0),
        output_range: Sequence[float] = (0.0, 255.0),
        mask_key: str = "label",
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        output_ext: str | None = None,
        real_items: Sequence[dict] | None = None,
        test_items: Sequence[dict] | None = None,
        grid_path: str | None = None,
        grid_samples: int = 8,
        seed: int = 0,
        keep_dropout: bool = True,
    ) -> None:
        if num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1, got {num_pairs}.")
        if len(masks) == 0:
            raise ValueError("the mask source is empty: no masks to synthesise from.")
        self.generator = generator
        self.masks = masks
        self.num_pairs = int(num_pairs)
        self.output_dir = os.path.abspath(output_dir)
        self.label_names = {str(k): v for k, v in label_names.items()}
        self.image_range = tuple(image_range)
        self.output_range = tuple(output_range)
        self.mask_key = mask_key
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.output_ext = output_ext
        self.real_items = [dict(i) for i in (real_items or [])]
        self.test_items = [dict(i) for i in (test_items or [])]
        self.grid_path = grid_path
        self.grid_samples = grid_samples
        self.seed = seed
        self.keep_dropout = keep_dropout

    def _mask(self, index: int) -> torch.Tensor:
        item = self.masks[index % len(self.masks)]
        if isinstance(item, list):  # a transform that returns several samples: take the first
            item = item[0]
        mask = item[self.mask_key] if isinstance(item, dict) else item
        mask = torch.as_tensor(mask).float()
        if mask.ndim < 3:
            raise ValueError(f"mask {index} has shape {tuple(mask.shape)}: expected channel-first 2D or 3D.")
        return mask

    def _set_mode(self) -> None:
        self.generator.eval()
        if self.keep_dropout:
            for m in self.generator.modules():
                if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                    m.train()

    def __call__(self) -> str:
        return self.run()

    def run(self) -> str:
        """Write the dataset and return its folder."""
        set_determinism(seed=self.seed)
        self._set_mode()
        parent = os.path.dirname(self.output_dir)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.output_dir)}-", dir=parent)
        try:
            items, grid = self._write_pairs(tmp)
            labels = [int(k) for k in self.label_names]
            validate_datalist(
                [{k: os.path.join(tmp, v) for k, v in i.items() if k in ("image", "label")} for i in items],
                label_values=labels,
            )
            meta = {
                "name": "synthetic pairs",
                "description": (
                    f"{self.num_pairs} (mask, image) pairs generated by a pix2pix mask-to-image generator from "
                    f"augmented or generated masks{', followed by the real training pairs' if self.real_items else ''}."
                ),
                "tensorImageSize": f"{grid[0][0].ndim - 1}D" if grid else "2D",
                "labels": self.label_names,
                "numTraining": len(items) + len(self.real_items),
                "numSynthetic": len(items),
                "numTest": len(self.test_items),
                "training": items + [_absolute(i) for i in self.real_items],
                "test": [_absolute(i) for i in self.test_items],
            }
            atomic_write_datalist(os.path.join(tmp, "dataset.json"), meta)
            replace_directory(tmp, self.output_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if self.grid_path and grid:
            masks, images = zip(*grid, strict=True)
            save_image_grid(
                self.grid_path,
                {"mask": list(masks), "generated": list(images)},
                value_ranges={"generated": self.output_range},
                title=f"{len(grid)} of {self.num_pairs} synthetic pairs",
            )
        return self.output_dir

    def _write_pairs(self, root: str) -> tuple[list[dict], list[tuple[np.ndarray, np.ndarray]]]:
        for sub in ("images", "masks"):
            os.makedirs(os.path.join(root, sub))
        items: list[dict] = []
        grid: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.no_grad(), tqdm(total=self.num_pairs, desc="synthesising", unit="pair") as bar:
            for start in range(0, self.num_pairs, self.batch_size):
                idx = range(start, min(start + self.batch_size, self.num_pairs))
                masks = [self._mask(i) for i in idx]
                shapes = {tuple(m.shape) for m in masks}
                fakes = (
                    self.generator(torch.stack(masks).to(self.device))
                    if len(shapes) == 1
                    else torch.cat([self.generator(m[None].to(self.device)) for m in masks])
                )
                for i, mask, fake in zip(idx, masks, fakes, strict=True):
                    ext = self.output_ext or (".png" if mask.ndim == 3 else ".nii.gz")
                    name = f"synthetic_{i:05d}{ext}"
                    image = _rescale(fake, self.image_range, self.output_range)
                    m = mask.detach().cpu().numpy()
                    label = (np.argmax(m, 0)[None] if m.shape[0] > 1 else np.rint(m)).astype(np.uint8)
                    atomic_write_image(os.path.join(root, "images", name), image)
                    atomic_write_image(os.path.join(root, "masks", name), label)
                    items.append({"image": f"images/{name}", "label": f"masks/{name}"})
                    if len(grid) < self.grid_samples:
                        grid.append((label, image))
                bar.update(len(idx))
        return items, grid


class GeneratedMasks:
    """
    ``num_masks`` masks drawn from a trained latent mask generator (e.g.
    :py:class:`monai_wsss.networks.LatentMaskGenerator`), as a sequence of ``{"label": label map}`` items for
    :py:class:`PairSynthesizer`; item ``i`` comes from the latent seeded ``seed + i``, so draws are reproducible.
    """

    def __init__(self, generator: torch.nn.Module, num_masks: int, seed: int = 0, key: str = "label") -> None:
        self.generator = generator
        self.num_masks = int(num_masks)
        self.seed = int(seed)
        self.key = key

    def __len__(self) -> int:
        return self.num_masks

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_masks:
            raise IndexError(index)
        rng = torch.Generator().manual_seed(self.seed + index)
        return {self.key: self.generator.sample(1, generator=rng)[0].float().cpu()}


def _absolute(item: dict[str, Any]) -> dict[str, Any]:
    return {k: os.path.abspath(v) if k in ("image", "label") and isinstance(v, str) else v for k, v in item.items()}
