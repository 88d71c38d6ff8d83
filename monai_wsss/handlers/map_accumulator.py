"""Online accumulation of class maps across epochs (group-wise semantic mining), kept per image by maximum."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from ..utils import atomic_write_torch

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["OnlineMapAccumulator", "image_key", "load_accumulated_maps"]


def image_key(image: torch.Tensor) -> str:
    """
    Content key of one image ``(C, *spatial)``: sha1 of its shape and float32 bytes. The same file through the same
    deterministic transforms gives the same key, so maps accumulated during training are found again at seed time.
    """
    arr = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha1(str(tuple(arr.shape)).encode())
    h.update(arr.numpy().tobytes())
    return h.hexdigest()


def load_accumulated_maps(path: str) -> dict[str, dict[str, torch.Tensor]]:
    """
    Read the file of :py:class:`OnlineMapAccumulator` (``weights_only=True``): ``{"maps": {key: (K, *s)},
    "present": {key: (K,) bool}}``.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says to run the group-wise training first).
        ValueError: the file is not such a dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: accumulated group-wise maps not found; run the group-wise training first.")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, Mapping) or not {"maps", "present"} <= set(data):
        raise ValueError(f"{path}: not a file of accumulated maps (expected the keys 'maps' and 'present').")
    return {"maps": dict(data["maps"]), "present": dict(data["present"])}


class OnlineMapAccumulator:
    """
    Keep, for every training image, the maximum over the training iterations of its class maps, as group-wise
    semantic mining does (after the online attention accumulation of Jiang et al., ICCV 2019): at every iteration,
    for the anchor of each group (the first image; ``members="all"``: every image) and each tagged class ``c``, the
    map ``relu((pre_maps + post_maps) / 2)[c]`` (``engine.state.output["pred"]`` of
    :py:class:`~monai_wsss.networks.GroupwiseClassifier`) divided by its maximum replaces the stored one where it is
    larger, when the epoch is at least ``start_epoch`` (the reference skips the first epoch) and the class
    probability ``sigmoid(post logit)`` is at least ``prob_threshold``; in the last epoch a class still missing is
    stored whatever its probability. Maps stay at the network's map resolution and on the CPU; the images are keyed
    by content (:py:func:`image_key`), so train without spatial augmentation for the maps to line up with the
    un-augmented image at seed time.

        Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised
        Semantic Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007

    Files: ``save_path`` (``torch.save`` of ``{"maps": {key: (K, *s)}, "present": {key: (K,) bool}}``, written
    atomically after every epoch and at the end; read with :py:func:`load_accumulated_maps`). A resumed run
    (iteration > 0 when its first epoch starts) reads it back first.

    Args:
        save_path: where the maps are written; ``None`` keeps them in memory only (``self.maps``).
        group_size: images per group in a batch.
        prob_threshold: minimum class probability for an update. Defaults to 0.1.
        start_epoch: first (1-based) epoch that updates. Defaults to 2.
        members: ``"anchor"`` (default, the reference) or ``"all"``.

    Raises:
        ValueError: ``members`` is not ``"anchor"`` / ``"all"``, or ``group_size`` < 1.
    """

    def __init__(
        self,
        save_path: str | None = None,
        group_size: int = 3,
        prob_threshold: float = 0.1,
        start_epoch: int = 2,
        members: str = "anchor",
    ) -> None:
        if members not in ("anchor", "all"):
            raise ValueError(f"`members` must be 'anchor' or 'all', got {members!r}.")
        if group_size < 1:
            raise ValueError(f"`group_size` must be positive, got {group_size}.")
        self.save_path = save_path
        self.group_size, self.start_epoch = int(group_size), int(start_epoch)
        self.prob_threshold = float(prob_threshold)
        self.members = members
        self.maps: dict[str, torch.Tensor] = {}
        self.present: dict[str, torch.Tensor] = {}
        self._checked_resume = False
        self.logger = logging.getLogger(__name__)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._maybe_resume)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def _maybe_resume(self, engine) -> None:
        if self._checked_resume:
            return
        self._checked_resume = True
        if engine.state.iteration > 0 and self.save_path and os.path.isfile(self.save_path):
            data = load_accumulated_maps(self.save_path)
            self.maps, self.present = data["maps"], data["present"]
            self.logger.info(f"accumulated maps of {len(self.maps)} images read back from {self.save_path}")

    def update(self, output: Mapping | Sequence[Mapping], epoch: int, last_epoch: bool) -> None:
        """
        Accumulate the maps of one iteration's ``output`` (``image``, ``label`` tags, ``pred`` dict; or the list of
        per-image dicts of a decollating trainer, MONAI's default).
        """
        if isinstance(output, Sequence):
            output = {
                "image": torch.stack([o["image"] for o in output]),
                "label": torch.stack([torch.as_tensor(o["label"]) for o in output]),
                "pred": {k: torch.stack([o["pred"][k] for o in output]) for k in ("pre_maps", "post_maps", "post")},
            }
        pred, images, tags = output["pred"], output["image"], output["label"]
        maps = ((pred["pre_maps"] + pred["post_maps"]) / 2).detach().clamp_min(0).float().cpu()
        probs = torch.sigmoid(pred["post"].detach().float()).cpu()
        tags = tags.detach().view(maps.shape[0], -1).cpu() > 0
        step = self.group_size if self.members == "anchor" else 1
        for b in range(0, maps.shape[0], step):
            if not bool(tags[b].any()):
                continue
            key = image_key(images[b])
            stored = self.maps.get(key)
            if stored is None:
                stored, present = torch.zeros_like(maps[b]), torch.zeros(maps.shape[1], dtype=torch.bool)
            else:
                present = self.present[key]
            changed = False
            for c in torch.nonzero(tags[b]).flatten().tolist():
                update = epoch >= self.start_epoch and float(probs[b, c]) >= self.prob_threshold
                if not (update or (last_epoch and not present[c])):
                    continue
                m = maps[b, c] / (maps[b, c].max() + 1e-8)
                stored[c] = torch.maximum(stored[c], m) if present[c] else m
                present[c] = True
                changed = True
            if changed:
                self.maps[key], self.present[key] = stored, present

    def __call__(self, engine) -> None:
        self.update(engine.state.output, engine.state.epoch, engine.state.epoch >= engine.state.max_epochs)

    def save(self, engine=None) -> None:
        """Write ``save_path`` (atomically) when it is set."""
        if self.save_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.save_path)), exist_ok=True)
            atomic_write_torch(self.save_path, {"maps": self.maps, "present": self.present})
