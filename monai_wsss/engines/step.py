"""
The one optimisation step of every monai_wsss trainer, and the trainer loss contract.

**Trainer loss contract.** A trainer calls its loss with named tensors (each trainer documents which: e.g.
:py:class:`monai_wsss.engines.SemiSupervisedTrainer` calls ``loss_function(pred, targets, num_labeled=...,
unsup_weight=...)``) and receives either a scalar tensor or a dict of terms. In a dict, the ``"loss"`` entry (the
step's ``loss_key``) is the one optimised; every other entry is only logged. :py:func:`optimization_step` stores all
of them in ``engine.state.output`` under their own keys, the other terms detached (so handlers such as
``StatsHandler`` or :py:class:`monai_wsss.handlers.LearningCurveWriter` read them without keeping a graph alive) and
the optimised entry as returned (as MONAI's ``SupervisedTrainer`` keeps ``engine.state.output["loss"]``). A scalar
tensor is the dict ``{"loss": tensor}``.

**The step.** :py:func:`optimization_step` runs, in this fixed order:

1. ``network.train()`` for each network of the step;
2. ``optimizer.zero_grad(set_to_none=engine.optim_set_to_none)``;
3. the trainer's closure (its forward passes and its loss) under :py:func:`autocast` when ``engine.amp``; the
   closure fires ``IterationEvents.FORWARD_COMPLETED`` after its forward pass (and any events of its own, e.g.
   :py:class:`monai_wsss.engines.CoTrainingEvents`, between its phases);
4. the terms go into ``engine.state.output``; ``LOSS_COMPLETED``;
5. backward of the optimised entry, through ``scaler.scale`` when ``engine.amp``; ``BACKWARD_COMPLETED``;
6. ``scaler.step(optimizer)`` + ``scaler.update()`` when ``engine.amp``, else ``optimizer.step()``;
   ``MODEL_COMPLETED``.

**Mixed precision** is device-agnostic: autocast and ``torch.amp.GradScaler`` use the device type of
``engine.state.device`` (``"cuda"``: float16 by default; ``"cpu"``: bfloat16, torch's CPU default), so the CPU path
runs the same code as the CUDA path. ``engine.amp_kwargs`` go to ``torch.autocast`` (e.g. ``{"dtype":
torch.float16}``). :py:class:`GradScalerMixin` gives a MONAI ``Trainer`` fresh scalers of that device type at every
``run()`` (MONAI's ``Trainer.run`` builds ``torch.cuda.amp.GradScaler``, which is disabled off CUDA).

Mixed precision itself: Micikevicius, P. et al. Mixed Precision Training. ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

__all__ = ["GradScalerMixin", "amp_device_type", "autocast", "loss_terms", "make_grad_scaler", "optimization_step"]

LossOutput = torch.Tensor | Mapping[str, Any]


def amp_device_type(engine: Any) -> str:
    """
    The device type (``"cuda"``, ``"cpu"``, ...) that ``engine``'s autocast and GradScaler use: that of
    ``engine.state.device``.

    Raises:
        ValueError: ``engine.state.device`` is None, or torch has no autocast for its device type.
    """
    device = getattr(engine.state, "device", None)
    if device is None:
        raise ValueError("amp=True needs the engine's `device` (engine.state.device is None).")
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        raise ValueError(
            f"amp=True is not supported on device type '{device_type}' (device {device}): torch has no autocast for "
            "it. Use amp=False, or a device with autocast (cuda, cpu, ...)."
        )
    return device_type


def autocast(engine: Any) -> AbstractContextManager:
    """
    ``torch.autocast(device_type, **engine.amp_kwargs)`` for the device type of ``engine.state.device`` when
    ``engine.amp``; a no-op context otherwise.

    Raises:
        ValueError: as :py:func:`amp_device_type`.
    """
    if not engine.amp:
        return nullcontext()
    return torch.autocast(amp_device_type(engine), **(getattr(engine, "amp_kwargs", None) or {}))


def make_grad_scaler(engine: Any) -> torch.amp.GradScaler | None:
    """
    A fresh ``torch.amp.GradScaler`` for the device type of ``engine.state.device`` when ``engine.amp``, else None.

    Raises:
        ValueError: as :py:func:`amp_device_type`.
    """
    return torch.amp.GradScaler(amp_device_type(engine)) if engine.amp else None


def loss_terms(output: LossOutput, loss_key: str = Keys.LOSS) -> dict[str, Any]:
    """
    The loss contract's dict of terms from a loss output: a scalar tensor becomes ``{loss_key: tensor}``; a mapping
    is copied. The ``loss_key`` entry must be a one-element tensor (the value optimised).

    Raises:
        TypeError: ``output`` is neither a tensor nor a mapping, or its ``loss_key`` entry is not a tensor.
        ValueError: the mapping has no ``loss_key`` entry, or that entry has more than one element.
    """
    if isinstance(output, torch.Tensor):
        terms = {loss_key: output}
    elif isinstance(output, Mapping):
        terms = dict(output)
    else:
        raise TypeError(f"A trainer's loss returns a tensor or a dict of terms, got {type(output).__name__}.")
    if loss_key not in terms:
        raise ValueError(f"The loss returned terms {sorted(terms)} without the optimised entry '{loss_key}'.")
    loss = terms[loss_key]
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"The optimised entry '{loss_key}' must be a tensor, got {type(loss).__name__}.")
    if loss.numel() != 1:
        raise ValueError(
            f"The optimised entry '{loss_key}' must be a scalar, got shape {tuple(loss.shape)} (reduce it in the loss)."
        )
    return terms


def optimization_step(
    engine: Any,
    closure: Callable[[], LossOutput],
    networks: torch.nn.Module | Sequence[torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    loss_key: str = Keys.LOSS,
) -> dict:
    """
    One protected optimisation step, in the fixed order of this module's docstring: train mode, ``zero_grad``,
    ``closure()`` under autocast (it fires ``FORWARD_COMPLETED``), the loss terms into ``engine.state.output``,
    ``LOSS_COMPLETED``, backward (scaled under amp), ``BACKWARD_COMPLETED``, optimiser step (``scaler.step`` +
    ``scaler.update`` under amp), ``MODEL_COMPLETED``.

    Args:
        engine: a MONAI workflow (an ignite ``Engine`` with ``IterationEvents`` registered, ``amp``,
            ``optim_set_to_none`` and a dict ``state.output``).
        closure: runs the forward passes and returns the loss (a scalar tensor or a dict of terms with ``loss_key``).
        networks: the network(s) the closure runs; each is put in train mode.
        optimizer: the optimiser stepped.
        scaler: the ``torch.amp.GradScaler`` of this optimiser (:py:func:`make_grad_scaler`); required when
            ``engine.amp``.
        loss_key: the entry of the terms that is optimised (e.g. ``"loss_d"`` for a discriminator step).

    Returns:
        ``engine.state.output``.

    Raises:
        RuntimeError: ``engine.amp`` is True but ``scaler`` is None.
        TypeError, ValueError: the closure's output breaks the loss contract (:py:func:`loss_terms`).
    """
    if engine.amp and scaler is None:
        raise RuntimeError(
            "amp=True needs a torch.amp.GradScaler for this step (GradScalerMixin.run creates it; outside run() "
            "pass make_grad_scaler(engine))."
        )
    for net in (networks,) if isinstance(networks, torch.nn.Module) else networks:
        net.train()
    optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
    with autocast(engine):
        terms = loss_terms(closure(), loss_key)
    out = engine.state.output
    out.update({k: v if k == loss_key or not isinstance(v, torch.Tensor) else v.detach() for k, v in terms.items()})
    engine.fire_event(IterationEvents.LOSS_COMPLETED)
    loss = terms[loss_key]
    if engine.amp:
        scaler.scale(loss).backward()  # type: ignore[union-attr]
    else:
        loss.backward()
    engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
    if engine.amp:
        scaler.step(optimizer)  # type: ignore[union-attr]
        scaler.update()  # type: ignore[union-attr]
    else:
        optimizer.step()
    engine.fire_event(IterationEvents.MODEL_COMPLETED)
    return out


class GradScalerMixin:
    """
    For a MONAI ``Trainer`` subclass (put it first among the bases): at every ``run()``, the attributes named in
    ``grad_scaler_attributes`` (default ``("scaler",)``, MONAI's name) get a fresh device-agnostic scaler from
    :py:func:`make_grad_scaler` (None without amp), in place of the ``torch.cuda.amp.GradScaler`` that MONAI's
    ``Trainer.run`` builds; then the workflow runs as in MONAI. A trainer with two optimisers names two scalers.

    Raises:
        ValueError: at ``run()``, as :py:func:`amp_device_type`, when amp is on.
    """

    grad_scaler_attributes: tuple[str, ...] = ("scaler",)

    def run(self) -> None:
        if not isinstance(self, Trainer):
            raise TypeError(f"GradScalerMixin is for monai.engines.Trainer subclasses, got {type(self).__name__}.")
        for name in self.grad_scaler_attributes:
            setattr(self, name, make_grad_scaler(self))
        # skip Trainer.run (whose only work is the CUDA-only scaler) and run the Workflow as MONAI does
        super(Trainer, self).run()  # type: ignore[misc]
