"""MCOF rounds: bottom-up region mining and a top-down segmenter, iterated; the final round's maps as a seed method."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..attribution import SeedMethod, check_tags, resize_maps
from ..attribution.mcof import RegionMining
from ..handlers.map_accumulator import image_key
from ..utils import atomic_write_json
from .segmenter import SegmenterRecipe
from .weak_supervision import PseudoLabelWriter

__all__ = ["MCOFSeeds"]

_SUMMARY_KEYS = ("seed_miou", "seed_fg_iou", "seed_background_iou", "best_threshold", "num_scored")


class _StoredMaps:
    """A seed method serving stored maps by image content (the writer calls it on the same preprocessed images)."""

    def __init__(self, name: str, maps: Mapping[str, torch.Tensor]) -> None:
        self.name, self.maps = name, maps

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.maps[image_key(img)].to(images) for img in images])


class MCOFSeeds:
    """
    Iterative bottom-up / top-down mining of common object features (MCOF) as a seed method. On its first call (or
    :py:meth:`run`) it runs ``num_rounds`` rounds over all ``items``:

    1. the round's seeds (round 1: ``initial_seeds``, e.g. :py:class:`~monai_wsss.attribution.CAMSeeds`; later
       rounds: the previous round's segmenter predictions), written and scored as a pseudo-label folder
       ``output_dir/round_<r>/seeds`` (:py:class:`~monai_wsss.apps.PseudoLabelWriter`: ``seed_metrics.json``,
       seed IoU against the real masks where items have them);
    2. bottom-up: :py:class:`~monai_wsss.attribution.mcof.RegionMining` (superpixels, region classifier on the
       seed-labelled regions, relabelled regions; the objectness prior in the first ``saliency_rounds`` rounds when
       ``mining.saliency`` is not ``"none"``), written and scored as ``output_dir/round_<r>/regions``;
    3. top-down: a fresh segmenter (``network_def()``) trained on that folder by
       :py:class:`~monai_wsss.apps.SegmenterRecipe` (``segmenter`` holds its other arguments; checkpoints in
       ``ckpt_dir/round_<r>``, learning curve and test metrics in ``output_dir/round_<r>/segmenter``; scored on
       ``test_items``, or on its own training folder when there is none), whose prediction on every training image
       (``predict_preprocessing``, the image at its own size; softmax resized to the seed size; by default its
       segmentation mask, see ``prediction_maps``) gives the next seeds.

    ``output_dir/rounds.json`` (atomic, after every round) records per round the seed and region metrics, the
    region counts, the segmenter's test metrics and the seconds; ``final`` scores the last predictions. Called with
    images and tags, the object returns the last round's predictions (tagged classes only) for images of ``items``
    (found by content: the images must come from ``preprocessing``, as in the pseudo-label writer); other images
    get the last segmenter's prediction on the given image. N-D as the parts are.

        Wang, X., You, S., Li, X., Ma, H. (2018) Weakly-Supervised Semantic Segmentation by Iteratively Mining
        Common Object Features. CVPR 2018, https://arxiv.org/abs/1806.04659

    The paper's saliency model (and its dense CRF) do not exist here: ``mining.saliency`` = ``"none"`` or an
    unsupervised objectness prior (:py:func:`~monai_wsss.attribution.mcof.objectness_prior`); no CRF.

    Args:
        items: tagged training items (``image`` path, ``class_labels``, optional ``label`` for scoring).
        classes: foreground class names.
        preprocessing: ``{"image": path}`` -> the seed-method input (the pseudo-label writer's preprocessing).
        initial_seeds: the seed method of round 1.
        mining: the bottom-up step.
        network_def: returns a fresh segmenter network (e.g. a config component with ``"_mode_": "callable"``).
        segmenter: keyword arguments of :py:class:`SegmenterRecipe` besides network, data, folders and device
            (``preprocessing``, ``augment``, ``roi_size``, ``num_epochs``, ...).
        predict_preprocessing: ``{"image": path}`` -> the segmenter's input for prediction (its ``preprocessing``
            for the image alone).
        output_dir: folder of the rounds.
        ckpt_dir: folder of the segmenters' checkpoints.
        num_rounds: rounds. Defaults to 2.
        saliency_rounds: rounds that use the objectness prior. Defaults to 1 (the paper's first round).
        bg_threshold: background score of the pseudo-labels.
        test_items: real test items (with masks) for the segmenters' scores.
        device: where everything runs.
        batch_size: images per seed-method / prediction call.
        prediction_maps: how a segmenter's prediction becomes seeds: ``"mask"`` (default; the paper's segmentation
            masks: one-hot of the argmax over background and the tagged classes) or ``"softmax"`` (the tagged
            classes' probabilities; the pseudo-label writer divides each by its maximum, which widens them).
        name: short name of the method. Defaults to ``"mcof"``.

    Raises:
        ValueError: no items or ``num_rounds`` < 1.
    """

    title = "MCOF"

    def __init__(
        self,
        items: Sequence[Mapping],
        classes: Sequence[str],
        preprocessing: Callable,
        initial_seeds: SeedMethod,
        mining: RegionMining,
        network_def: Callable[[], nn.Module],
        segmenter: Mapping[str, Any],
        predict_preprocessing: Callable,
        output_dir: str,
        ckpt_dir: str,
        num_rounds: int = 2,
        saliency_rounds: int = 1,
        bg_threshold: float = 0.15,
        test_items: Sequence[Mapping] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        prediction_maps: str = "mask",
        name: str = "mcof",
    ) -> None:
        if not items:
            raise ValueError("MCOFSeeds: no tagged image to mine.")
        if num_rounds < 1:
            raise ValueError(f"`num_rounds` must be >= 1, got {num_rounds}.")
        if prediction_maps not in ("mask", "softmax"):
            raise ValueError(f"`prediction_maps` must be 'mask' or 'softmax', got {prediction_maps!r}.")
        self.prediction_maps = prediction_maps
        self.items = [dict(i) for i in items]
        self.classes = list(classes)
        self.preprocessing, self.predict_preprocessing = preprocessing, predict_preprocessing
        self.initial_seeds, self.mining = initial_seeds, mining
        self.network_def, self.segmenter = network_def, dict(segmenter)
        self.output_dir, self.ckpt_dir = output_dir, ckpt_dir
        self.num_rounds, self.saliency_rounds = int(num_rounds), int(saliency_rounds)
        self.bg_threshold = float(bg_threshold)
        self.test_items = [dict(i) for i in (test_items or [])]
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.name = name
        self.rounds: list[dict] = []
        self._final: dict[str, torch.Tensor] | None = None
        self._last_network: nn.Module | None = None
        self._last_recipe: SegmenterRecipe | None = None
        self.logger = logging.getLogger(__name__)

    @property
    def info(self) -> Mapping[str, Any]:
        """Settings and per-round seed mIoU recorded with the metrics."""
        return {
            "mcof_rounds": self.num_rounds,
            "mcof_saliency": self.mining.saliency,
            "mcof_round_seed_miou": [r.get("seeds", {}).get("seed_miou") for r in self.rounds],
            "mcof_round_region_miou": [r.get("regions", {}).get("seed_miou") for r in self.rounds],
        }

    # ------------------------------------------------------------------------------------------------ helpers
    def _inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.as_tensor(self.preprocessing({"image": i["image"]})["image"]) for i in self.items])
        tags = torch.stack([torch.as_tensor(np.asarray(i["class_labels"], dtype=np.float32)) for i in self.items])
        if tags.shape[1] != len(self.classes):
            raise ValueError(f"class_labels have {tags.shape[1]} entries for the {len(self.classes)} classes.")
        return x.float(), tags

    def _batched(self, method: Callable, x: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, x.shape[0], self.batch_size):
            sl = slice(s, s + self.batch_size)
            out.append(method(x[sl].to(self.device), tags[sl].to(self.device)))
        return torch.cat(out).detach().float().cpu()

    def _write(self, folder: str, maps: Mapping[str, torch.Tensor], what: str) -> dict:
        writer = PseudoLabelWriter(
            self.items,
            folder,
            self.classes,
            self.preprocessing,
            _StoredMaps(f"{self.name}_{what}", maps),
            bg_threshold=self.bg_threshold,
            device="cpu",
            batch_size=self.batch_size,
            test_items=self.test_items,
        )
        return writer.run()

    def _segment(self, folder: str, r: int) -> tuple[dict, SegmenterRecipe]:
        with open(os.path.join(folder, "dataset.json")) as f:
            meta = json.load(f)
        train = [{"image": i["image"], "label": os.path.join(folder, i["label"])} for i in meta["training"]]
        test = [{"image": i["image"], "label": i["label"]} for i in self.test_items if i.get("label")]
        if not test:
            self.logger.info(f"MCOF round {r}: no test item with a mask; the segmenter is scored on its own labels.")
            test = train
        network = self.network_def().to(self.device)
        recipe = SegmenterRecipe(
            network=network,
            train_data=train,
            test_data=test,
            num_classes=len(self.classes) + 1,
            ckpt_dir=os.path.join(self.ckpt_dir, f"round_{r}"),
            output_dir=os.path.join(self.output_dir, f"round_{r}", "segmenter"),
            device=self.device,
            **self.segmenter,
        )
        metrics = recipe.run()
        return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}, recipe

    def _predict(self, network: nn.Module, recipe: SegmenterRecipe, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax ``(K, *s)`` of the foreground classes for each image ``(C, *s)``."""
        network.eval()
        inferer = recipe.inferer()
        out = []
        with torch.no_grad():
            for img in images:
                prob = inferer(img[None].float().to(self.device), network).softmax(1)[0, 1:]
                out.append(prob.cpu())
        return out

    def _predictions(self, network: nn.Module, recipe: SegmenterRecipe, x: torch.Tensor, tags: torch.Tensor):
        images = [torch.as_tensor(self.predict_preprocessing({"image": i["image"]})["image"]) for i in self.items]
        probs = self._predict(network, recipe, images)
        spatial = tuple(x.shape[2:])
        maps = torch.stack([resize_maps(p[None], spatial)[0] for p in probs])
        return self._as_seeds(maps, tags)

    def _as_seeds(self, maps: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Foreground softmax ``(B, K, *s)`` -> seeds: tagged classes only; ``"mask"``: one-hot of the argmax."""
        mask = (tags > 0).to(maps.dtype).view(*tags.shape, *[1] * (maps.ndim - 2))
        maps = (maps * mask).clamp(0, 1)
        if self.prediction_maps == "softmax":
            return maps
        full = torch.cat([(1 - maps.sum(1, keepdim=True)).clamp_min(0), maps], 1)
        label = full.argmax(1)
        return torch.stack([(label == k + 1) for k in range(maps.shape[1])], 1).to(maps.dtype) * mask

    # ---------------------------------------------------------------------------------------------------- run
    def run(self) -> list[dict]:
        """Run every round (once; later calls return the recorded rounds)."""
        if self._final is not None:
            return self.rounds
        x, tags = self._inputs()
        keys = [image_key(img) for img in x]
        seeds = self._batched(self.initial_seeds, x, tags)
        self.rounds = []
        for r in range(1, self.num_rounds + 1):
            start = time.perf_counter()
            rdir = os.path.join(self.output_dir, f"round_{r}")
            record: dict[str, Any] = {"round": r, "seeds_from": "initial" if r == 1 else f"segmenter of round {r - 1}"}
            seed_metrics = self._write(os.path.join(rdir, "seeds"), dict(zip(keys, seeds, strict=True)), "seeds")
            record["seeds"] = {k: seed_metrics[k] for k in _SUMMARY_KEYS if k in seed_metrics}
            use_prior = r <= self.saliency_rounds
            refined = self.mining(x.to(self.device), tags.to(self.device), seeds.to(self.device), use_prior).cpu()
            record["saliency"] = self.mining.saliency if use_prior else "none"
            record["region_counts"] = dict(self.mining.last_info)
            region_dir = os.path.join(rdir, "regions")
            region_metrics = self._write(region_dir, dict(zip(keys, refined, strict=True)), "regions")
            record["regions"] = {k: region_metrics[k] for k in _SUMMARY_KEYS if k in region_metrics}
            record["segmenter"], recipe = self._segment(region_dir, r)
            network = recipe.network
            seeds = self._predictions(network, recipe, x, tags)
            record["seconds"] = round(time.perf_counter() - start, 2)
            self.rounds.append(record)
            self.logger.info(
                f"MCOF round {r}: seed mIoU {record['seeds'].get('seed_miou')}, regions "
                f"{record['regions'].get('seed_miou')}, segmenter {record['segmenter'].get('miou')}"
            )
            self._save()
        final = self._write(os.path.join(self.output_dir, "final"), dict(zip(keys, seeds, strict=True)), "final")
        self.final_metrics = {k: final[k] for k in _SUMMARY_KEYS if k in final}
        self._final = dict(zip(keys, seeds, strict=True))
        self._last_network, self._last_recipe = network, recipe
        self._save()
        return self.rounds

    def _save(self) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        summary = {"method": "mcof", "num_rounds": self.num_rounds, "saliency": self.mining.saliency,
                   "saliency_rounds": self.saliency_rounds, "rounds": self.rounds}  # fmt: skip
        if getattr(self, "final_metrics", None) is not None:
            summary["final"] = self.final_metrics
        atomic_write_json(os.path.join(self.output_dir, "rounds.json"), summary)

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        Raises:
            ValueError: see :py:func:`~monai_wsss.attribution.check_tags`.
        """
        check_tags(images, tags)
        self.run()
        out = []
        missing = []
        for b, img in enumerate(images):
            stored = self._final.get(image_key(img))  # type: ignore[union-attr]
            out.append(stored.to(images) if stored is not None else None)
            if stored is None:
                missing.append(b)
        if missing:
            net, recipe = self._last_network, self._last_recipe
            probs = self._predict(net, recipe, [images[b] for b in missing])  # type: ignore[arg-type]
            for b, p in zip(missing, probs, strict=True):
                soft = resize_maps(p[None], tuple(images.shape[2:])).to(images)
                out[b] = self._as_seeds(soft, tags[b : b + 1].to(images))[0]
        maps = torch.stack(out) * (tags > 0).to(images.dtype).view(*tags.shape, *[1] * (images.ndim - 2))
        return maps.clamp(0, 1).detach()
