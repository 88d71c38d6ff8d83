"""Weak supervision runner: seeds (CAM / AdvCAM / PRM) of a trained classifier to pseudo-label files and a datalist."""

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
import torch.nn.functional as F
from monai.transforms import LoadImage
from monai.utils import look_up_option

from ..attribution import (
    AdvCAM,
    PeakInstanceRetrieval,
    PeakResponseMapping,
    PerSampleCAM,
    instances_to_maps,
    max_normalizer,
)
from ..data.validation import validate_datalist
from ..handlers.figures import save_image_grid
from ..transforms import seeds_to_pseudo_label
from ..utils import atomic_write_datalist, atomic_write_image, atomic_write_json, replace_directory

__all__ = ["SEED_METHODS", "PseudoLabelWriter", "class_activation_maps", "peak_response_seeds", "resize_maps"]

SEED_METHODS = ("cam", "advcam", "prm")
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}
IOU_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(B, K, *s)`` maps to ``size``: area averaging when shrinking, (bi/tri)linear otherwise."""
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    if all(t <= s for t, s in zip(size, maps.shape[2:], strict=True)):
        return F.interpolate(maps, size=tuple(size), mode="area")
    return F.interpolate(maps, size=tuple(size), mode=_INTERP[maps.ndim - 2], align_corners=False)


def _masked_max_normalise(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    nd = maps.ndim - 2
    maps = maps.clamp_min(0) * (labels > 0).to(maps.dtype).view(*labels.shape, *[1] * nd)
    peak = maps.flatten(2).max(2)[0].view(*maps.shape[:2], *[1] * nd)
    return maps / (peak + 1e-5)


def class_activation_maps(cam: PerSampleCAM, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    Plain CAMs ``(B, K, *spatial)`` in [0, 1] at the input size (ReLU, divided by the maximum) for every class
    (one batched call per class); absent classes are zero, so a negative image has all-zero maps.
    """
    maps = [cam(images, class_idx=k) for k in range(labels.shape[1])]
    return _masked_max_normalise(torch.cat(maps, 1).detach(), labels)


def peak_response_seeds(
    prm: PeakResponseMapping,
    images: torch.Tensor,
    labels: torch.Tensor,
    retrieval: PeakInstanceRetrieval | None = None,
) -> torch.Tensor:
    """
    Semantic seeds from Peak Response Maps: for each image and present class, the sum of the response maps of all
    its peaks (all peaks of an image back-propagated in one batched pass), resized to the input size and divided by
    its maximum. With ``retrieval``, the seeds are instead the union of the instance masks it retrieves for each
    class (binary). ``(B, K, *spatial)``; absent classes are zero.
    """
    spatial = tuple(images.shape[2:])
    out = images.new_zeros((images.shape[0], labels.shape[1], *spatial))
    for b, res in enumerate(prm(images, labels)):
        if len(res["peaks"]) == 0:
            continue
        maps = resize_maps(res["maps"][:, None].to(out.dtype), spatial)[:, 0]
        if retrieval is not None:
            inst = retrieval(images[b], {**res, "maps": maps}, res["class_maps"])
            out[b] = instances_to_maps(inst, labels.shape[1], spatial).to(out)
        else:
            out[b].index_add_(0, res["peaks"][:, 0], maps)
    return _masked_max_normalise(out, labels)


class PseudoLabelWriter:
    """
    The seed and pseudo-label step of weakly supervised segmentation: for every tagged image, localisation maps of
    its present classes from a trained multi-label classifier (``seed_method``: ``"cam"``, ``"advcam"`` or
    ``"prm"``), resized to the image's own size, turned into a label map by
    :py:func:`~monai_wsss.transforms.seeds_to_pseudo_label` (background score ``bg_threshold``; an image without any
    positive tag is all background), written as ``labels/<image name>.png`` (or NIfTI for 3D) with a
    decathlon-style ``dataset.json`` into ``output_dir`` (training: original image + pseudo-label + tags; test: the
    ``test_items`` with their real masks), so a segmentation bundle trains on it with one ``--dataset_dir``.
    The folder is assembled in a temporary sibling and renamed into place.

    When items carry a real ``label`` (pixel truth, never used to make the seeds), the seeds are scored:
    ``seed_iou`` per class (``None`` for a class found neither in the truth nor in the seeds), ``seed_fg_iou`` (any
    class vs background), ``seed_miou`` (mean over background and the scored classes, the papers' seed mIoU) at
    ``bg_threshold``, and the foreground IoU over a range of thresholds
    (``fg_iou_by_threshold``). Metrics go to ``output_dir/seed_metrics.json`` (also returned by :py:meth:`run`).
    A PNG panel (image | CAM | AdvCAM | PRM | pseudo-label | truth) of ``panel_samples`` positive images is written to
    ``panel_path``.

    Args:
        network: trained classifier (e.g. :py:class:`~monai_wsss.networks.CAMClassifier`).
        items: dicts with ``image`` (path), ``class_labels`` (multi-hot, see
            :py:func:`~monai_wsss.data.load_tagged_datalist`) and optionally ``label`` (path, for scoring only).
        output_dir: pseudo-label dataset folder to create (an existing one is replaced).
        classes: foreground class names (``len(classes) == K``).
        preprocessing: dict transform mapping ``{"image": path}`` to the classifier input ``{"image": (C, *s)}``
            (loading, intensity scaling, resizing); every item must give the same input size.
        seed_method: ``"cam"``, ``"advcam"`` or ``"prm"``.
        advcam: an :py:class:`~monai_wsss.attribution.AdvCAM` on ``network`` (needed for ``"advcam"`` and the panel).
        prm: a :py:class:`~monai_wsss.attribution.PeakResponseMapping` on ``network`` (``"prm"`` and the panel).
        prm_retrieval: a :py:class:`~monai_wsss.attribution.PeakInstanceRetrieval`; when given, ``"prm"`` seeds are
            the retrieved instance masks instead of the summed peak response maps.
        target_layers, fc_layers: CAM layers of ``network``.
        bg_threshold: background score of :py:func:`seeds_to_pseudo_label`.
        device: where the classifier runs.
        batch_size: images per batched call.
        test_items: real test items (with masks) for the ``test`` list of ``dataset.json``.
        panel_path: PNG panel path; ``None`` skips it.
        panel_samples: rows of the panel.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        items: Sequence[dict],
        output_dir: str,
        classes: Sequence[str],
        preprocessing: Callable,
        seed_method: str = "advcam",
        advcam: AdvCAM | None = None,
        prm: PeakResponseMapping | None = None,
        prm_retrieval: PeakInstanceRetrieval | None = None,
        target_layers: str = "feature",
        fc_layers: str = "classifier",
        bg_threshold: float = 0.15,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        test_items: Sequence[dict] | None = None,
        panel_path: str | None = None,
        panel_samples: int = 6,
    ) -> None:
        self.seed_method = look_up_option(seed_method, SEED_METHODS)
        if not items:
            raise ValueError("PseudoLabelWriter: no tagged image to process.")
        if self.seed_method == "advcam" and advcam is None:
            raise ValueError("seed_method='advcam' needs an `advcam` (AdvCAM on the classifier).")
        if self.seed_method == "prm" and prm is None:
            raise ValueError("seed_method='prm' needs a `prm` (PeakResponseMapping on the classifier).")
        self.network = network
        self.items = [dict(i) for i in items]
        self.output_dir = os.path.abspath(output_dir)
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.advcam = advcam
        self.prm = prm
        self.prm_retrieval = prm_retrieval
        self.cam = PerSampleCAM(network, target_layers, fc_layers, postprocessing=max_normalizer)
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

    def maps(self, method: str, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, K, *spatial)`` seeds in [0, 1] of ``method`` at the classifier input size."""
        if method == "cam":
            with torch.no_grad():
                return class_activation_maps(self.cam, images, labels)
        if method == "advcam":
            return self.advcam(images, labels).detach()  # type: ignore[misc]
        return peak_response_seeds(self.prm, images, labels, self.prm_retrieval).detach()  # type: ignore[arg-type]

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
        self.network.eval()
        k = len(self.classes)
        names = self._names()
        parent = os.path.dirname(self.output_dir)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.output_dir)}-", dir=parent)
        inter = np.zeros(k + 1)
        union = np.zeros(k + 1)
        thr_inter = np.zeros(len(IOU_THRESHOLDS))
        thr_union = np.zeros(len(IOU_THRESHOLDS))
        scored = 0
        negatives_background = True
        panel_rows: list[int] = []
        try:
            os.makedirs(os.path.join(tmp, "labels"))
            training = []
            for s in range(0, len(self.items), self.batch_size):
                batch = self.items[s : s + self.batch_size]
                x = torch.stack([torch.as_tensor(self.preprocessing({"image": i["image"]})["image"]) for i in batch])
                x = x.float().to(self.device)
                tags = torch.stack([self._tags(i) for i in batch]).to(self.device)
                seeds = self.maps(self.seed_method, x, tags)
                for j, item in enumerate(batch):
                    n = s + j
                    size = tuple(self.loader(item["image"]).shape[1:])
                    fg = resize_maps(seeds[j : j + 1], size)
                    pseudo = seeds_to_pseudo_label(fg, tags[j : j + 1], self.bg_threshold, normalise=True)[0]
                    if tags[j].sum() == 0:
                        negatives_background &= bool((pseudo == 0).all())
                    atomic_write_image(os.path.join(tmp, "labels", names[n]), pseudo.cpu().to(torch.uint8))
                    entry = {"image": os.path.abspath(item["image"]), "label": f"labels/{names[n]}"}
                    entry["class_labels"] = [int(v) for v in tags[j].tolist()]
                    training.append(entry)
                    if item.get("label"):
                        truth = torch.as_tensor(self.loader(item["label"]))[0].round().long().cpu()
                        p = pseudo[0].cpu()
                        for c in range(k + 1):
                            inter[c] += float(((p == c) & (truth == c)).sum())
                            union[c] += float(((p == c) | (truth == c)).sum())
                        fgmax = (fg[0] * tags[j].view(-1, *[1] * len(size))).max(0)[0].cpu()
                        for t, thr in enumerate(IOU_THRESHOLDS):
                            pred = fgmax > thr
                            thr_inter[t] += float((pred & (truth > 0)).sum())
                            thr_union[t] += float((pred | (truth > 0)).sum())
                        scored += 1
                    if tags[j].sum() > 0 and len(panel_rows) < self.panel_samples:
                        panel_rows.append(n)
            labels = {"0": "background", **{str(c + 1): name for c, name in enumerate(self.classes)}}
            validate_datalist(
                [{"image": i["image"], "label": os.path.join(tmp, i["label"])} for i in training],
                label_values=[int(v) for v in labels],
            )
            test = [_jsonable(i) for i in self.test_items]
            meta = {
                "name": f"pseudo-labels ({self.seed_method})",
                "description": (
                    f"Pseudo-labels from {self.seed_method.upper()} seeds of a multi-label classifier trained on "
                    f"image-level tags (background score {self.bg_threshold}); test: real images with real masks."
                ),
                "tensorImageSize": f"{len(size)}D",
                "labels": labels,
                "classes": self.classes,
                "seed_method": self.seed_method,
                "numTraining": len(training),
                "numTest": len(test),
                "training": training,
                "test": test,
            }
            atomic_write_datalist(os.path.join(tmp, "dataset.json"), meta)
            seconds = time.perf_counter() - start
            metrics = {
                "seed_method": self.seed_method,
                "prm_instances": self.seed_method == "prm" and self.prm_retrieval is not None,
                "bg_threshold": self.bg_threshold,
                "num_images": len(self.items),
                "num_positive": int(sum(float(np.asarray(i["class_labels"]).sum() > 0) for i in self.items)),
                "num_scored": scored,
                "negatives_all_background": negatives_background,
                "seconds": round(seconds, 2),
                "images_per_second": round(len(self.items) / max(seconds, 1e-9), 3),
            }
            if scored:
                present = union > 0  # a class absent from both truth and seeds has no IoU: left out of the mean
                iou = inter / np.maximum(union, 1)
                metrics["seed_iou"] = {
                    name: float(iou[c + 1]) if present[c + 1] else None for c, name in enumerate(self.classes)
                }
                metrics["seed_background_iou"] = float(iou[0])
                metrics["seed_miou"] = float(iou[present].mean())
                metrics["seed_fg_iou"] = float(inter[1:].sum() / max(union[1:].sum(), 1))
                by_thr = thr_inter / np.maximum(thr_union, 1)
                metrics["fg_iou_by_threshold"] = {str(t): float(v) for t, v in zip(IOU_THRESHOLDS, by_thr, strict=True)}
                best = int(np.argmax(by_thr))
                metrics["best_threshold"] = {"threshold": IOU_THRESHOLDS[best], "fg_iou": float(by_thr[best])}
            atomic_write_json(os.path.join(tmp, "seed_metrics.json"), metrics)
            replace_directory(tmp, self.output_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        summary = {m: metrics.get(m) for m in ("seed_miou", "seed_fg_iou", "seconds")}
        self.logger.info(f"seeds ({self.seed_method}): {json.dumps(summary)}")
        if self.panel_path and panel_rows:
            self.write_panel(panel_rows, names)
        return metrics

    def write_panel(self, rows: Sequence[int], names: Sequence[str]) -> None:
        """PNG panel: image | CAM | AdvCAM | PRM | pseudo-label | truth (the first present class of each image)."""
        items = [self.items[r] for r in rows]
        x = torch.stack([torch.as_tensor(self.preprocessing({"image": i["image"]})["image"]) for i in items])
        x = x.float().to(self.device)
        tags = torch.stack([self._tags(i) for i in items]).to(self.device)
        columns: dict[str, list] = {"image": [self.loader(i["image"]) for i in items]}
        for method in SEED_METHODS:
            if method == "advcam" and self.advcam is None or method == "prm" and self.prm is None:
                continue
            maps = self.maps(method, x, tags)
            cls = [int(t.argmax()) for t in tags]
            columns[{"cam": "CAM", "advcam": "AdvCAM", "prm": "PRM"}[method]] = [
                resize_maps(maps[j : j + 1], columns["image"][j].shape[1:])[0, cls[j] : cls[j] + 1].cpu()
                for j in range(len(items))
            ]
        columns[f"pseudo-label ({self.seed_method})"] = [
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
