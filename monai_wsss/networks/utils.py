"""Helpers on any torch network."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..errors import SettingsError
from ..utils import atomic_write_torch

__all__ = [
    "export_encoder",
    "frozen_norm_statistics",
    "load_pretrained_weights",
    "read_state_dict",
]


@contextmanager
def frozen_norm_statistics(network: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """
    Forward passes inside the block leave the running statistics of every batch / instance norm layer of
    ``network`` untouched; in training mode the layers still normalise with the statistics of the current batch,
    so the output (and its gradient) is the same as without the block; in eval mode nothing changes.

    For inputs that are not samples of the data, e.g. adversarial examples: their statistics should not leak into
    the estimates used at inference. The VAT authors' implementation (Miyato et al., Virtual Adversarial Training,
    IEEE TPAMI 2019) likewise runs its perturbed forward passes without updating the batch statistics.

    Example::

        with frozen_norm_statistics(net):
            adv_logits = net(x_adv)
    """
    batch = [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    instance = [m for m in network.modules() if isinstance(m, _InstanceNorm) and m.track_running_stats]
    momenta = [m.momentum for m in instance]
    for m in batch:
        m.track_running_stats = False  # train mode: batch statistics, buffers neither read nor written
    for m in instance:
        m.momentum = 0.0  # instance norm writes its buffers whatever the flag; a zero step leaves them as they are
    try:
        yield network
    finally:
        for m in batch:
            m.track_running_stats = True
        for m, momentum in zip(instance, momenta, strict=True):
            m.momentum = momentum


_HINT = (
    "pass the encoder.pt (or model.pt) written by a run of the same network, e.g. the export of "
    "bundles/mix_and_match_pretraining, or set `pretrained_weights` to null"
)


def read_state_dict(path: str, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """
    Read a state dict of tensors from ``path`` with ``torch.load(..., weights_only=True)``; a checkpoint dict
    ``{"model": state_dict, ...}`` or ``{"state_dict": ...}`` is unwrapped.

    Raises:
        SettingsError: the file does not exist, cannot be read by ``torch.load``, or holds no tensors by name.
    """
    if not os.path.isfile(path):
        raise SettingsError("pretrained weights file not found", file=str(path), hint=_HINT)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle / zip / weights-only errors all mean "not a weights file"
        raise SettingsError(
            f"cannot be read as torch weights ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            file=str(path),
            hint=_HINT,
        ) from e
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SettingsError("holds no state dict (a mapping of tensor names to tensors)", file=str(path), hint=_HINT)
    return {str(k): v for k, v in state.items()}


def load_pretrained_weights(
    network: torch.nn.Module,
    path: str | None,
    prefix: str | Sequence[str] = "",
    strip_prefix: str = "",
    map_location: str | torch.device = "cpu",
    logger: logging.Logger | None = None,
) -> dict[str, list[str]] | None:
    """
    Initialise ``network`` from the tensors of ``path`` whose names match its own (the ``pretrained_weights`` key of
    every segmentation bundle): the file's name ``strip_prefix + k`` goes to the network's ``p + k`` for each ``p``
    in ``prefix`` (several prefixes load the same weights into several members, e.g. ``["members.0.",
    "members.1."]`` of a :py:class:`~monai_wsss.networks.SegmentationEnsemble`). Tensors of the network without a
    match keep their values (e.g. a segmentation head after an encoder export). Logs (``INFO``) how many tensors were
    loaded, and which were missing (in the network, not in the file) and unexpected (in the file, not in the network).
    A ``DistributedDataParallel`` wrapper is unwrapped.

    Args:
        network: the network to initialise (in place).
        path: a ``.pt`` state dict; ``None`` or ``""``: nothing to do.
        prefix: prepended to the file's names (after ``strip_prefix`` is removed); one or several.
        strip_prefix: removed from the start of the file's names; names without it are unexpected.
        map_location: passed to ``torch.load``.
        logger: where the report goes (default: this module's logger).

    Returns:
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}`` (network names for the first two, file names for
        the last), or ``None`` when ``path`` is empty.

    Raises:
        SettingsError: the file is missing or not a state dict (see :py:func:`read_state_dict`); a matched tensor has
            another shape than the network's (the message names the file, the tensor and both shapes); no name
            matches at all (a file of another network, or a wrong ``prefix``).
    """
    if path is None or str(path) == "":
        return None
    log = logger or logging.getLogger(__name__)
    state = read_state_dict(str(path), map_location)
    target = network.module if hasattr(network, "module") and isinstance(network.module, torch.nn.Module) else network
    own = target.state_dict()
    prefixes = [prefix] if isinstance(prefix, str) else list(prefix)
    matched: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, tensor in state.items():
        if not name.startswith(strip_prefix):
            unexpected.append(name)
            continue
        hit = False
        for p in prefixes:
            dest = p + name[len(strip_prefix) :]
            if dest not in own:
                continue
            hit = True
            if tuple(own[dest].shape) != tuple(tensor.shape):
                raise SettingsError(
                    f"tensor `{name}` has shape {tuple(tensor.shape)} but the network's `{dest}` has shape "
                    f"{tuple(own[dest].shape)}: the weights come from a differently configured network",
                    file=str(path),
                    hint="pre-train with the same network settings (spatial_dims, in_channels, features) or "
                    "set `pretrained_weights` to null",
                )
            matched[dest] = tensor
        if not hit:
            unexpected.append(name)
    if not matched:
        raise SettingsError(
            f"none of its {len(state)} tensor names matches the network (e.g. file `{next(iter(state))}` vs network "
            f"`{next(iter(own), '')}`; prefix={prefixes!r}, strip_prefix={strip_prefix!r})",
            file=str(path),
            hint=_HINT,
        )
    target.load_state_dict(matched, strict=False)
    missing = [k for k in own if k not in matched]
    report = {"loaded": sorted(matched), "missing": missing, "unexpected": unexpected}

    def few(names: list[str]) -> str:
        return (": " + ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")) if names else ""

    log.info(
        f"Pretrained weights from {path}: {len(matched)} of the network's {len(own)} tensors loaded; "
        f"{len(missing)} missing (kept as initialised){few(missing)}; {len(unexpected)} unexpected (ignored)"
        f"{few(unexpected)}."
    )
    return report


def export_encoder(
    source: str | Sequence[str],
    destination: str,
    keep_prefix: str = "backbone.",
    logger: logging.Logger | None = None,
) -> str:
    """
    Write the encoder of a trained network as a plain state dict (``destination``, atomically): the tensors of
    ``source`` whose names start with ``keep_prefix``, names unchanged, so :py:func:`load_pretrained_weights` loads
    them by name into a network of the same family (e.g. ``backbone.*`` of a
    :py:class:`~monai_wsss.networks.DualTaskVNet`, leaving its heads as initialised).

    Args:
        source: the trained weights, or several candidates of which the first existing file is used (e.g. the
            mix-and-match weights, else the proxy-task weights).
        destination: the ``encoder.pt`` to write.
        keep_prefix: the names to keep (``""``: all).
        logger: where the one-line report goes.

    Returns:
        the source file used.

    Raises:
        SettingsError: no source file exists or it is not a state dict; no tensor name starts with ``keep_prefix``.
    """
    candidates = [source] if isinstance(source, str) else list(source)
    found = next((c for c in candidates if c and os.path.isfile(c)), None)
    if found is None:
        raise SettingsError(
            "no trained weights to export (looked for " + ", ".join(map(str, candidates)) + ")",
            file=str(candidates[0]) if candidates else "source",
            hint="run the bundle's train config (and mix_and_match.json) first",
        )
    state = read_state_dict(found)
    kept = {k: v for k, v in state.items() if k.startswith(keep_prefix)}
    if not kept:
        raise SettingsError(
            f"no tensor name starts with {keep_prefix!r} (e.g. `{next(iter(state))}`)", file=found, hint=_HINT
        )
    atomic_write_torch(destination, kept)
    (logger or logging.getLogger(__name__)).info(
        f"Encoder exported: {len(kept)} of {len(state)} tensors of {found} ({keep_prefix!r}*) written to {destination}."
    )
    return found
