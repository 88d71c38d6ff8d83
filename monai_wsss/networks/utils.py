"""Helpers on any torch network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["frozen_norm_statistics"]


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
