"""Seed methods of weakly supervised segmentation: one protocol (images + tags -> class maps in [0, 1]) and the CAM,
AdvCAM and PRM seeds behind it.

A seed method is the plug point of weak supervision (``ARCHITECTURE.md``, "Plug points"): an object with a short
``name`` that, called with a batch of images ``(B, C, *spatial)`` and their multi-hot tags ``(B, K)``, returns class
maps ``(B, K, *spatial)`` in [0, 1] at the image size, zero for absent classes. The pseudo-label writer
(:py:class:`monai_wsss.apps.PseudoLabelWriter`) only thresholds, writes and scores what such an object returns, so a
new method (group-wise semantic mining, MCOF, ...) is one class here and one ``_target_`` component in a bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.group_sampler import build_groups
from ..handlers.checkpoint import load_model_weights
from ..handlers.map_accumulator import image_key, load_accumulated_maps
from .advcam import AdvCAM
from .cam import PerSampleCAM, max_normalizer
from .instances import PeakInstanceRetrieval, instances_to_maps
from .prm import PeakResponseMapping

__all__ = [
    "SeedMethod",
    "CAMSeeds",
    "AdvCAMSeeds",
    "PRMSeeds",
    "GroupwiseSeeds",
    "pick_methods",
    "check_tags",
    "masked_max_normalise",
    "resize_maps",
]

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


@runtime_checkable
class SeedMethod(Protocol):
    """
    The seed-method protocol. ``name`` is a short identifier (``"cam"``; recorded in ``seed_metrics.json`` and the
    pseudo-label ``dataset.json``; keep it equal to the method's key in a bundle's ``seeds::methods`` section, which
    names the output folders). ``__call__(images, tags)`` takes images ``(B, C, *spatial)`` and multi-hot tags
    ``(B, K)`` on the same device and returns detached class maps ``(B, K, *spatial)`` in [0, 1] at the image size,
    zero for every class whose tag is 0 (an image without a positive tag gives all zeros).

    Optional members read by the writer: ``title`` (column title of the seed panel, default ``name``) and ``info``
    (a JSON-able mapping of settings copied into ``seed_metrics.json``, e.g. ``{"prm_instances": True}``).
    """

    name: str

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor: ...


def pick_methods(methods: Mapping[str, Any], keys: Sequence[str]) -> list:
    """
    The seed methods of a bundle's menu named by ``keys`` (in order, each once), e.g. the panel's columns
    (``seeds::panel`` plus ``seed_method``), so that methods that need their own training or run rounds (group-wise,
    MCOF) join the panel only when they are the chosen method.

    Raises:
        ValueError: a key that is not in ``methods``.
    """
    unknown = [k for k in keys if k not in methods]
    if unknown:
        raise ValueError(f"seed methods {unknown} are not among the menu's methods {sorted(methods)}.")
    return [methods[k] for k in dict.fromkeys(keys)]


def check_tags(images: torch.Tensor, tags: torch.Tensor) -> None:
    """
    Check a seed method's inputs: ``images`` ``(B, C, *spatial)`` with 1-3 spatial dims, ``tags`` ``(B, K)``.

    Raises:
        ValueError: ``images`` is not ``(B, C, *spatial)`` with 1-3 spatial dims, or ``tags`` is not ``(B, K)`` with
            the images' ``B``.
    """
    if images.ndim not in (3, 4, 5):
        raise ValueError(f"`images` must be (B, C, *spatial) with 1-3 spatial dims, got shape {tuple(images.shape)}.")
    if tags.ndim != 2 or tags.shape[0] != images.shape[0]:
        raise ValueError(f"`tags` must be (B, K) with B = {images.shape[0]}, got shape {tuple(tags.shape)}.")


def masked_max_normalise(maps: torch.Tensor, tags: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """
    ``(B, K, *spatial)`` maps rectified, zeroed for absent classes (``tags == 0``) and divided per (image, class) by
    their maximum plus ``eps``: values in [0, 1), all-zero maps stay zero.
    """
    nd = maps.ndim - 2
    maps = maps.clamp_min(0) * (tags > 0).to(maps.dtype).view(*tags.shape, *[1] * nd)
    peak = maps.flatten(2).max(2)[0].view(*maps.shape[:2], *[1] * nd)
    return maps / (peak + eps)


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(B, K, *s)`` maps to ``size``: area averaging when shrinking, (bi/tri)linear otherwise."""
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    if all(t <= s for t, s in zip(size, maps.shape[2:], strict=True)):
        return F.interpolate(maps, size=tuple(size), mode="area")
    return F.interpolate(maps, size=tuple(size), mode=_INTERP[maps.ndim - 2], align_corners=False)


class CAMSeeds:
    """
    Class activation maps as seeds: for every class, the CAM of the classifier (class weights applied to the feature
    map, one batched :py:class:`~monai_wsss.attribution.PerSampleCAM` call per class), up-sampled to the image size,
    rectified and divided by its maximum; absent classes are zero. N-D (2D and 3D classifiers).

        Zhou, B., Khosla, A., Lapedriza, A., Oliva, A., Torralba, A. (2016) Learning Deep Features for
        Discriminative Localization. CVPR 2016, https://arxiv.org/abs/1512.04150

    Args:
        network: the trained classifier (e.g. :py:class:`~monai_wsss.networks.CAMClassifier`), or a ready
            :py:class:`~monai_wsss.attribution.PerSampleCAM` (then ``target_layers`` / ``fc_layers`` are unused).
        target_layers: the feature layer of ``network``. Defaults to ``"feature"``.
        fc_layers: the classifier layer of ``network``. Defaults to ``"classifier"``.
        name: short name of the method. Defaults to ``"cam"``.

    Example::

        >>> net = resnet_cam_classifier(2, in_channels=1, num_classes=3, model_name="resnet10")
        >>> CAMSeeds(net)(torch.rand(2, 1, 64, 64), torch.tensor([[1, 0, 1], [0, 0, 0]])).shape
        torch.Size([2, 3, 64, 64])
    """

    title = "CAM"

    def __init__(
        self,
        network: nn.Module | PerSampleCAM,
        target_layers: str = "feature",
        fc_layers: str = "classifier",
        name: str = "cam",
    ) -> None:
        if isinstance(network, PerSampleCAM):
            self.cam = network
        else:
            self.cam = PerSampleCAM(network, target_layers, fc_layers, postprocessing=max_normalizer)
        self.name = name

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        Raises:
            ValueError: see :py:func:`check_tags`.
        """
        check_tags(images, tags)
        with torch.no_grad():
            maps = [self.cam(images, class_idx=k) for k in range(tags.shape[1])]
        return masked_max_normalise(torch.cat(maps, 1).detach(), tags)


class AdvCAMSeeds:
    """
    Anti-adversarially manipulated CAMs as seeds: the maps of an :py:class:`~monai_wsss.attribution.AdvCAM` (all
    (image, flip, class) instances attacked in one batched pass; already at the image size, in [0, 1] and zero for
    absent classes), detached. N-D.

        Lee, J., Kim, E., Yoon, S. (2021) Anti-Adversarially Manipulated Attributions for Weakly and
        Semi-Supervised Semantic Segmentation. CVPR 2021, https://arxiv.org/abs/2103.08896

    Args:
        advcam: the :py:class:`~monai_wsss.attribution.AdvCAM` on the trained classifier (its settings: steps, step
            size, regulariser, scales, flips).
        name: short name of the method. Defaults to ``"advcam"``.
    """

    title = "AdvCAM"

    def __init__(self, advcam: AdvCAM, name: str = "advcam") -> None:
        self.advcam = advcam
        self.name = name

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        Raises:
            ValueError: see :py:func:`check_tags`.
        """
        check_tags(images, tags)
        return self.advcam(images, tags).detach()


class PRMSeeds:
    """
    Peak Response Map seeds: for each image and present class, the sum of the response maps of all its peaks (all
    peaks of an image back-propagated in one batched pass by :py:class:`~monai_wsss.attribution.PeakResponseMapping`),
    resized to the image size, rectified and divided by the maximum. With ``retrieval``
    (:py:class:`~monai_wsss.attribution.PeakInstanceRetrieval`, the paper's instance retrieval from proposals), the
    seed of a class is instead the union of the instance masks retrieved for it (binary, then divided by its maximum
    like the summed maps). Absent classes are zero. N-D (instance retrieval in 2D and 3D through the supervoxel
    proposals).

        Zhou, Y., Zhu, Y., Ye, Q., Qiu, Q., Jiao, J. (2018) Weakly Supervised Instance Segmentation using Class Peak
        Response. CVPR 2018, https://arxiv.org/abs/1804.00880

    Args:
        prm: the :py:class:`~monai_wsss.attribution.PeakResponseMapping` on the trained classifier.
        retrieval: optional instance retrieval; ``None`` gives the summed peak response maps.
        name: short name of the method. Defaults to ``"prm"``.
    """

    title = "PRM"

    def __init__(self, prm: PeakResponseMapping, retrieval: PeakInstanceRetrieval | None = None, name: str = "prm"):
        self.prm = prm
        self.retrieval = retrieval
        self.name = name

    @property
    def info(self) -> Mapping[str, Any]:
        """Settings recorded with the metrics: ``prm_instances`` (instance retrieval on)."""
        return {"prm_instances": self.retrieval is not None}

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        Raises:
            ValueError: see :py:func:`check_tags`.
        """
        check_tags(images, tags)
        spatial = tuple(images.shape[2:])
        out = images.new_zeros((images.shape[0], tags.shape[1], *spatial))
        for b, res in enumerate(self.prm(images, tags)):
            if len(res["peaks"]) == 0:
                continue
            maps = resize_maps(res["maps"][:, None].to(out.dtype), spatial)[:, 0]
            if self.retrieval is not None:
                inst = self.retrieval(images[b], {**res, "maps": maps}, res["class_maps"])
                out[b] = instances_to_maps(inst, tags.shape[1], spatial).to(out)
            else:
                out[b].index_add_(0, res["peaks"][:, 0], maps)
        return masked_max_normalise(out, tags).detach()


class GroupwiseSeeds:
    """
    Group-wise semantic mining seeds: the class maps of a trained
    :py:class:`~monai_wsss.networks.GroupwiseClassifier`, ``relu((pre_maps + post_maps) / 2)`` as the reference
    accumulates them. For an image whose maps were accumulated online during training
    (:py:class:`~monai_wsss.handlers.OnlineMapAccumulator`, file ``maps``; found by the image's content,
    :py:func:`~monai_wsss.handlers.image_key`) those maps are used; any other image is put in a group with
    ``group_size - 1`` images of the same call (:py:func:`~monai_wsss.data.build_groups`: same tag set, else a shared
    class, else copies of itself) and the graph's maps are computed in eval mode (no graph dropout). Maps are
    resized to the image size, rectified, zeroed for absent classes and divided by their maximum. N-D.

        Li, X., Zhou, T., Li, J., Zhou, Y., Zhang, Z. (2021) Group-Wise Semantic Mining for Weakly Supervised
        Semantic Segmentation. AAAI 2021, https://arxiv.org/abs/2012.05007

    The reference's pseudo-labels also fuse saliency maps (DSS) and a dense CRF; neither exists here: the seeds are
    the maps alone, thresholded by the pseudo-label writer like every other method.

    Args:
        network: the group-wise network (weights loaded, or loaded from ``checkpoint`` on the first call).
        maps: the accumulated maps file (or the loaded dict of :py:func:`~monai_wsss.handlers.load_accumulated_maps`);
            ``None`` computes every image's maps. A path is read on the first call.
        checkpoint: ``model.pt`` of the group-wise training, loaded into ``network`` on the first call (so a bundle
            can list this method without having trained it); ``None``: ``network`` is ready.
        map_location: where the checkpoint is loaded.
        groups_per_call: groups per forward pass when maps are computed.
        graph_maps: which maps are computed: ``"mean"`` (the reference's ``(pre_maps + post_maps) / 2``), ``"pre"``
            (the backbone's class maps before the graph) or ``"post"`` (after it); the accumulated maps are always
            the mean. For ablations; ``benchmarks/groupwise_maps.py`` measures the three.
        name: short name of the method. Defaults to ``"groupwise"``.

    Raises:
        ValueError: ``graph_maps`` is not one of the three.
    """

    title = "group-wise"

    def __init__(
        self,
        network: nn.Module,
        maps: str | Mapping | None = None,
        checkpoint: str | None = None,
        map_location: str | torch.device = "cpu",
        groups_per_call: int = 8,
        graph_maps: str = "mean",
        name: str = "groupwise",
    ) -> None:
        if graph_maps not in ("mean", "pre", "post"):
            raise ValueError(f"`graph_maps` must be 'mean', 'pre' or 'post', got {graph_maps!r}.")
        self.graph_maps = graph_maps
        self.network = network
        self._maps_source = maps
        self._accumulated: Mapping | None = None
        self.checkpoint, self.map_location = checkpoint, map_location
        self.groups_per_call = int(groups_per_call)
        self.name = name
        self.counts = {"accumulated": 0, "computed": 0}
        self._ready = checkpoint is None

    @property
    def info(self) -> Mapping[str, Any]:
        """How many images were served from the accumulated maps and how many were computed."""
        return {"groupwise_accumulated": self.counts["accumulated"], "groupwise_computed": self.counts["computed"]}

    def _prepare(self) -> None:
        if not self._ready:
            load_model_weights(self.network, self.checkpoint, self.map_location)  # type: ignore[arg-type]
            self._ready = True
        if self._accumulated is None and self._maps_source is not None:
            src = self._maps_source
            self._accumulated = load_accumulated_maps(src) if isinstance(src, str) else dict(src)

    def group_maps(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """``(B, K, *s)`` maps (``graph_maps``) of every image in a group formed within the call (the image first),
        in eval mode."""
        group_size = self.network.group_size
        groups = build_groups(tags.detach().cpu().numpy(), group_size, seed=0, shuffle=False)
        out = []
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                for s in range(0, len(groups), self.groups_per_call):
                    chunk = [i for g in groups[s : s + self.groups_per_call] for i in g]
                    idx = torch.tensor(chunk, device=images.device)
                    pred = self.network(images[idx])
                    if self.graph_maps == "mean":
                        maps = (pred["pre_maps"] + pred["post_maps"]) / 2
                    else:
                        maps = pred[f"{self.graph_maps}_maps"]
                    out.append(maps.view(-1, group_size, *maps.shape[1:])[:, 0])
        finally:
            self.network.train(was_training)
        return torch.cat(out)

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """
        Raises:
            ValueError: see :py:func:`check_tags`.
            FileNotFoundError: ``checkpoint`` or ``maps`` does not exist.
        """
        check_tags(images, tags)
        self._prepare()
        spatial = tuple(images.shape[2:])
        out = images.new_zeros((images.shape[0], tags.shape[1], *spatial))
        todo = []
        acc = self._accumulated or {}
        for b in range(images.shape[0]):
            if not bool((tags[b] > 0).any()):
                continue
            key = image_key(images[b]) if acc else None
            present = acc.get("present", {}).get(key) if key else None
            if present is not None and bool(present[tags[b].cpu() > 0].all()):
                stored = acc["maps"][key][None].to(out)
                out[b] = resize_maps(stored, spatial)[0]
                self.counts["accumulated"] += 1
            else:
                todo.append(b)
        if todo:
            computed = self.group_maps(images, tags)[todo]
            out[todo] = resize_maps(computed.to(out.dtype), spatial)
            self.counts["computed"] += len(todo)
        return masked_max_normalise(out, tags).detach()
