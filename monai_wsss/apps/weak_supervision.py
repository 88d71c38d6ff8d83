"""Weak supervision runner: the seeds of one seed method (CAM, AdvCAM, PRM, ...) to pseudo-label files and a datalist,
scored against pixel truth where the items have it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.metrics import ConfusionMatrixMetric
from monai.metrics.confusion_matrix import compute_confusion_matrix_metric
from monai.transforms import LoadImage

from ..attribution import (
    SeedMethod,
    resize_maps,
)
from ..data.validation import validate_datalist
from ..handlers.figures import save_image_grid
from ..transforms import seeds_to_pseudo_label
from ..utils import atomic_write_datalist, atomic_write_image, atomic_write_json, replace_directory

__all__ = ["PseudoLabelWriter"]

IOU_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


class _SeedScores:
    """
    Seed IoU pooled over every scored image through MONAI's ``ConfusionMatrixMetric`` (``"threat score"`` =
    TP / (TP + FP + FN) = IoU): per class (background included), foreground (any class vs background) and foreground
    over ``IOU_THRESHOLDS``. The confusion counts of all images are summed before the ratio is taken (a pooled IoU,
    not a mean of per-image IoUs), in float64; a channel with TP + FP + FN = 0 has no IoU (NaN).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classes = ConfusionMatrixMetric(include_background=True, metric_name="threat score")
        self.foreground = ConfusionMatrixMetric(include_background=True, metric_name="threat score")
        self.thresholds = ConfusionMatrixMetric(include_background=True, metric_name="threat score")
        self.count = 0

    def update(self, pseudo: torch.Tensor, scores: torch.Tensor, truth: torch.Tensor) -> None:
        """``pseudo`` ``(*s)`` label map, ``scores`` ``(*s)`` max seed of the present classes, ``truth`` ``(*s)``."""
        nd = truth.ndim
        ids = torch.arange(self.num_classes + 1, device=truth.device).view(-1, *[1] * nd)
        self.classes(y_pred=(pseudo[None] == ids)[None].float(), y=(truth[None] == ids)[None].float())
        fg_truth = (truth > 0)[None, None].float()
        self.foreground(y_pred=(pseudo > 0)[None, None].float(), y=fg_truth)
        thr = torch.tensor(IOU_THRESHOLDS, dtype=scores.dtype, device=scores.device).view(-1, *[1] * nd)
        above = (scores[None] > thr)[None].float()
        self.thresholds(y_pred=above, y=fg_truth.expand_as(above))
        self.count += 1

    @staticmethod
    def pooled(metric: ConfusionMatrixMetric) -> np.ndarray:
        return compute_confusion_matrix_metric("threat score", metric.get_buffer().double().sum(0)).numpy()

    def metrics(self, classes: Sequence[str]) -> dict:
        iou = self.pooled(self.classes)
        present = ~np.isnan(iou)  # a class absent from both truth and seeds has no IoU: left out of the mean
        fg = float(np.nan_to_num(self.pooled(self.foreground))[0])
        by_thr = np.nan_to_num(self.pooled(self.thresholds))
        best = int(np.argmax(by_thr))
        return {
            "seed_iou": {name: float(iou[c + 1]) if present[c + 1] else None for c, name in enumerate(classes)},
            "seed_background_iou": float(np.nan_to_num(iou[0])),
            "seed_miou": float(iou[present].mean()),
            "seed_fg_iou": fg,
            "fg_iou_by_threshold": {str(t): float(v) for t, v in zip(IOU_THRESHOLDS, by_thr, strict=True)},
            "best_threshold": {"threshold": IOU_THRESHOLDS[best], "fg_iou": float(by_thr[best])},
        }


class PseudoLabelWriter:
    """
    The seed and pseudo-label step of weakly supervised segmentation: for every tagged image, the class maps of one
    ``seed_method`` (any :py:class:`~monai_wsss.attribution.SeedMethod`: :py:class:`~monai_wsss.attribution.CAMSeeds`,
    :py:class:`~monai_wsss.attribution.AdvCAMSeeds`, :py:class:`~monai_wsss.attribution.PRMSeeds`, or a new one) on
    the classifier input, resized to the image's own size, turned into a label map by
    :py:func:`~monai_wsss.transforms.seeds_to_pseudo_label` (background score ``bg_threshold``; an image without any
    positive tag is all background), written as ``labels/<image name>.png`` (or NIfTI for 3D) with a
    decathlon-style ``dataset.json`` into ``output_dir`` (training: original image + pseudo-label + tags; test: the
    ``test_items`` with their real masks), so a segmentation bundle trains on it with one ``--dataset_dir``.
    The folder is assembled in a temporary sibling and renamed into place. The writer only thresholds, writes and
    scores: what the seeds are is the seed method's business.

    When items carry a real ``label`` (pixel truth, never used to make the seeds), the seeds are scored with MONAI's
    ``ConfusionMatrixMetric`` (threat score = IoU), the counts pooled over all scored images: ``seed_iou`` per class
    (``None`` for a class found neither in the truth nor in the pseudo-labels), ``seed_background_iou``,
    ``seed_miou`` (mean over background and the scored classes, the papers' seed mIoU), ``seed_fg_iou`` (any class vs
    background) at ``bg_threshold``, and the foreground IoU of the maximum seed thresholded at 0.05..0.95
    (``fg_iou_by_threshold``, ``best_threshold``). Metrics, with the method's ``name`` and its ``info`` settings, go
    to ``output_dir/seed_metrics.json`` (also returned by :py:meth:`run`). A PNG panel (image | each of
    ``panel_methods`` | pseudo-label | truth) of ``panel_samples`` positive images is written to ``panel_path``.

    Weak supervision from image-level labels as in:

        Lee, J., Kim, E., Yoon, S. (2021) Anti-Adversarially Manipulated Attributions for Weakly and
        Semi-Supervised Semantic Segmentation. CVPR 2021.

    Args:
        items: dicts with ``image`` (path), ``class_labels`` (multi-hot, see
            :py:func:`~monai_wsss.data.load_tagged_datalist`) and optionally ``label`` (path, for scoring only).
        output_dir: pseudo-label dataset folder to create (an existing one is replaced).
        classes: foreground class names (``len(classes) == K``).
        preprocessing: dict transform mapping ``{"image": path}`` to the classifier input ``{"image": (C, *s)}``
            (loading, intensity scaling, resizing); every item of one batch must give the same input size.
        seed_method: the seed method (images ``(B, C, *s)`` + tags ``(B, K)`` -> maps ``(B, K, *s)`` in [0, 1]).
        panel_methods: seed methods shown side by side in the panel (default: ``seed_method`` alone; the seed method
            is added when missing).
        bg_threshold: background score of :py:func:`seeds_to_pseudo_label`.
        device: where the seed method runs (images and tags are moved there).
        batch_size: images per seed-method call.
        test_items: real test items (with masks) for the ``test`` list of ``dataset.json``.
        panel_path: PNG panel path; ``None`` skips it.
        panel_samples: rows of the panel.

    Raises:
        ValueError: no items.
        TypeError: ``seed_method`` or a panel method is not a :py:class:`~monai_wsss.attribution.SeedMethod` (a
            callable with a ``name``).
    """

    def __init__(
        self,
        items: Sequence[dict],
        output_dir: str,
        classes: Sequence[str],
        preprocessing: Callable,
        seed_method: SeedMethod,
        panel_methods: Sequence[SeedMethod] | None = None,
        bg_threshold: float = 0.15,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        test_items: Sequence[dict] | None = None,
        panel_path: str | None = None,
        panel_samples: int = 6,
    ) -> None:
        if not items:
            raise ValueError("PseudoLabelWriter: no tagged image to process.")
        methods = list(panel_methods or [])
        for m in [seed_method, *methods]:
            if not isinstance(m, SeedMethod):
                raise TypeError(
                    f"a seed method must be callable (images, tags) -> maps and have a `name`; got {type(m).__name__}."
                )
        if not any(m is seed_method for m in methods):
            methods.append(seed_method)
        self.seed_method = seed_method
        self.panel_methods = methods
        self.items = [dict(i) for i in items]
        self.output_dir = os.path.abspath(output_dir)
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.bg_threshold = float(bg_threshold)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.test_items = [dict(i) for i in (test_items or [])]
        self.panel_path = panel_path
        self.panel_samples = int(panel_samples)
        self.loader = LoadImage(image_only=True, ensure_channel_first=True)
        self.logger = logging.getLogger(__name__)

    def __call__(self) -> dict:
        return self.run()

    @property
    def name(self) -> str:
        """The seed method's name."""
        return str(self.seed_method.name)

    def maps(self, method: SeedMethod, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        ``(B, K, *spatial)`` seeds of ``method`` at the classifier input size, checked against the protocol.

        Raises:
            ValueError: the method returned another shape or values outside [0, 1].
        """
        maps = method(images, tags)
        expected = (images.shape[0], tags.shape[1], *images.shape[2:])
        if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != expected:
            got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise ValueError(f"seed method {method.name!r} returned {got}, expected maps of shape {expected}.")
        maps = maps.detach()
        if maps.numel() and (float(maps.min()) < 0.0 or float(maps.max()) > 1.0 + 1e-4):
            raise ValueError(
                f"seed method {method.name!r} returned values in [{float(maps.min())}, {float(maps.max())}], "
                "expected [0, 1]."
            )
        return maps

    def _inputs(self, items: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.as_tensor(self.preprocessing({"image": i["image"]})["image"]) for i in items])
        return x.float().to(self.device), torch.stack([self._tags(i) for i in items]).to(self.device)

    def _tags(self, item: dict) -> torch.Tensor:
        tags = torch.as_tensor(np.asarray(item["class_labels"], dtype=np.float32))
        if tags.shape != (len(self.classes),):
            raise ValueError(f"{item['image']}: class_labels {item['class_labels']} do not match {self.classes}.")
        return tags

    def _names(self) -> list[str]:
        stems = [os.path.basename(i["image"]).split(".")[0] for i in self.items]
        ext = [".png" if i["image"].lower().endswith(".png") else ".nii.gz" for i in self.items]
        if len(set(stems)) != len(stems):
            stems = [f"{n:05d}_{s}" for n, s in enumerate(stems)]
        return [s + e for s, e in zip(stems, ext, strict=True)]

    def run(self) -> dict:
        """Write the pseudo-label dataset and return the seed metrics."""
        start = time.perf_counter()
        names = self._names()
        parent = os.path.dirname(self.output_dir)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.output_dir)}-", dir=parent)
        scores = _SeedScores(len(self.classes))
        negatives_background = True
        panel_rows: list[int] = []
        try:
            os.makedirs(os.path.join(tmp, "labels"))
            training = []
            for s in range(0, len(self.items), self.batch_size):
                batch = self.items[s : s + self.batch_size]
                x, tags = self._inputs(batch)
                seeds = self.maps(self.seed_method, x, tags)
                for j, item in enumerate(batch):
                    n = s + j
                    image = self.loader(item["image"])
                    size = tuple(image.shape[1:])
                    fg = resize_maps(seeds[j : j + 1], size)
                    pseudo = seeds_to_pseudo_label(fg, tags[j : j + 1], self.bg_threshold, normalise=True)[0]
                    if tags[j].sum() == 0:
                        negatives_background &= bool((pseudo == 0).all())
                    affine = getattr(image, "affine", None)  # a NIfTI label keeps its image's geometry
                    atomic_write_image(
                        os.path.join(tmp, "labels", names[n]),
                        pseudo.cpu().to(torch.uint8),
                        None if affine is None else np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64),
                    )
                    entry = {"image": os.path.abspath(item["image"]), "label": f"labels/{names[n]}"}
                    entry["class_labels"] = [int(v) for v in tags[j].tolist()]
                    training.append(entry)
                    if item.get("label"):
                        truth = torch.as_tensor(self.loader(item["label"]))[0].round().long().cpu()
                        fgmax = (fg[0] * tags[j].view(-1, *[1] * len(size))).max(0)[0].cpu()
                        scores.update(pseudo[0].cpu(), fgmax, truth)
                    if tags[j].sum() > 0 and len(panel_rows) < self.panel_samples:
                        panel_rows.append(n)
            labels = {"0": "background", **{str(c + 1): name for c, name in enumerate(self.classes)}}
            validate_datalist(
                [{"image": i["image"], "label": os.path.join(tmp, i["label"])} for i in training],
                label_values=[int(v) for v in labels],
            )
            test = [_jsonable(i) for i in self.test_items]
            meta = {
                "name": f"pseudo-labels ({self.name})",
                "description": (
                    f"Pseudo-labels from {self.name.upper()} seeds of a multi-label classifier trained on "
                    f"image-level tags (background score {self.bg_threshold}); test: real images with real masks."
                ),
                "tensorImageSize": f"{len(size)}D",
                "labels": labels,
                "classes": self.classes,
                "seed_method": self.name,
                "numTraining": len(training),
                "numTest": len(test),
                "training": training,
                "test": test,
            }
            atomic_write_datalist(os.path.join(tmp, "dataset.json"), meta)
            seconds = time.perf_counter() - start
            metrics = {
                "seed_method": self.name,
                **dict(getattr(self.seed_method, "info", None) or {}),
                "bg_threshold": self.bg_threshold,
                "num_images": len(self.items),
                "num_positive": int(sum(float(np.asarray(i["class_labels"]).sum() > 0) for i in self.items)),
                "num_scored": scores.count,
                "negatives_all_background": negatives_background,
                "seconds": round(seconds, 2),
                "images_per_second": round(len(self.items) / max(seconds, 1e-9), 3),
            }
            if scores.count:
                metrics.update(scores.metrics(self.classes))
            atomic_write_json(os.path.join(tmp, "seed_metrics.json"), metrics)
            replace_directory(tmp, self.output_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        summary = {m: metrics.get(m) for m in ("seed_miou", "seed_fg_iou", "seconds")}
        self.logger.info(f"seeds ({self.name}): {json.dumps(summary)}")
        if self.panel_path and panel_rows:
            self.write_panel(panel_rows, names)
        return metrics

    def write_panel(self, rows: Sequence[int], names: Sequence[str]) -> None:
        """PNG panel: image | each panel method | pseudo-label | truth (the first present class of each image)."""
        items = [self.items[r] for r in rows]
        x, tags = self._inputs(items)
        cls = [int(t.argmax()) for t in tags]
        columns: dict[str, list] = {"image": [self.loader(i["image"]) for i in items]}
        for method in self.panel_methods:
            maps = self.maps(method, x, tags)
            title = str(getattr(method, "title", None) or method.name)
            title = f"{title} ({method.name})" if title in columns else title
            columns[title] = [
                resize_maps(maps[j : j + 1], columns["image"][j].shape[1:])[0, cls[j] : cls[j] + 1].cpu()
                for j in range(len(items))
            ]
        columns[f"pseudo-label ({self.name})"] = [
            self.loader(os.path.join(self.output_dir, "labels", names[r])) for r in rows
        ]
        if all(i.get("label") for i in items):
            columns["truth"] = [self.loader(i["label"]) for i in items]
        ranges = {name: (0.0, 1.0) for name in columns if name != "image"}
        ranges.update({n: (0.0, float(len(self.classes))) for n in columns if n.startswith("pseudo") or n == "truth"})
        os.makedirs(os.path.dirname(os.path.abspath(self.panel_path)), exist_ok=True)  # type: ignore[arg-type]
        save_image_grid(self.panel_path, columns, value_ranges=ranges, title=f"seeds on {len(items)} tagged images")  # type: ignore[arg-type]


def _jsonable(item: dict) -> dict:
    out = {}
    for key, v in item.items():
        if key in ("image", "label") and isinstance(v, str):
            out[key] = os.path.abspath(v)
        elif isinstance(v, (np.ndarray, torch.Tensor)):
            out[key] = [int(t) for t in np.asarray(v).reshape(-1).tolist()]
        elif isinstance(v, (str, int, float, list, dict)) or v is None:
            out[key] = v
    return out
