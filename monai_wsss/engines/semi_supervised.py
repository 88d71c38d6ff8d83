"""One trainer for semi-supervised methods: labelled + unlabelled samples in every iteration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.utils import CommonKeys as Keys

from monai_wsss.engines.step import GradScalerMixin, amp_device_type, optimization_step

__all__ = ["PrepareLabeledUnlabeledBatch", "SemiSupervisedTrainer", "UNLABELED_IMAGE"]

UNLABELED_IMAGE = "image_u"


def _to(x: torch.Tensor, device: str | torch.device | None, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, non_blocking=non_blocking, **kwargs)


class PrepareLabeledUnlabeledBatch(PrepareBatch):
    """
    Unpack a two-stream batch (see :py:class:`monai_wsss.data.TwoStreamLoader`) into
    ``(labelled images, targets, unlabelled images)``, moved to ``device``.

    Args:
        image_key: labelled images.
        label_keys: target keys of the labelled samples; one key gives a tensor, several give a tuple in this order
            (e.g. ``("label", "label_sdf")`` for DTC).
        unlabeled_key: unlabelled images. A batch without it gives an empty unlabelled tensor.
    """

    def __init__(
        self,
        image_key: str = Keys.IMAGE,
        label_keys: str | Sequence[str] = Keys.LABEL,
        unlabeled_key: str = UNLABELED_IMAGE,
    ) -> None:
        self.image_key = image_key
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        self.unlabeled_key = unlabeled_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...], torch.Tensor]:
        x = _to(batchdata[self.image_key], device, non_blocking, **kwargs)
        targets = tuple(_to(batchdata[k], device, non_blocking, **kwargs) for k in self.label_keys)
        if self.unlabeled_key in batchdata:
            x_u = _to(batchdata[self.unlabeled_key], device, non_blocking, **kwargs)
        else:
            x_u = x.new_zeros((0, *x.shape[1:]))
        return x, targets[0] if len(targets) == 1 else targets, x_u


class SemiSupervisedTrainer(GradScalerMixin, SupervisedTrainer):
    """
    :py:class:`monai.engines.SupervisedTrainer` for semi-supervised learning. Each iteration:

    1. ``prepare_batch`` gives ``(x_l, targets, x_u)`` (default :py:class:`PrepareLabeledUnlabeledBatch`);
    2. ONE forward pass over ``cat([x_l, x_u])`` (BatchNorm sees labelled and unlabelled images together, as the
       DTC / UA-MT references); the labelled samples come first;
    3. ``loss_function(pred, targets, num_labeled=len(x_l), unsup_weight=engine.state.unsup_weight)`` returns the
       total loss, or a dict of terms whose ``"loss"`` is the total (the trainer loss contract of
       :py:mod:`monai_wsss.engines.step`); every term is stored in ``engine.state.output`` so handlers can log it;
    4. backward and optimiser step.

    Steps 2-4 are :py:func:`monai_wsss.engines.step.optimization_step`, shared by every monai_wsss trainer: the
    standard ``IterationEvents`` fire in the order ``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``,
    ``MODEL_COMPLETED``, so MONAI handlers work unchanged. With ``amp=True`` the forward pass runs under autocast and
    the backward / step through a ``torch.amp.GradScaler``, both for the device type of ``device`` (CPU: bfloat16).

    ``engine.state.unsup_weight`` (initially ``unsup_weight``) is the weight of the unlabelled term; ramp it with
    :py:class:`monai_wsss.handlers.ConsistencyWeightScheduler`. Methods with other forward passes (several networks,
    adversarial examples, teachers) override :py:meth:`forward` and :py:meth:`compute_loss`.

    Training is iteration-based: ``train_data_loader`` is usually a :py:class:`monai_wsss.data.TwoStreamLoader` whose
    streams cycle forever; an epoch is ``epoch_length`` iterations, and ``max_epochs * epoch_length`` is the run.

    Args:
        unsup_weight: initial ``engine.state.unsup_weight``.
        decollate: default False (labelled, unlabelled and joint tensors have different batch sizes).
        other args: as :py:class:`monai.engines.SupervisedTrainer`; ``prepare_batch`` defaults to
            :py:class:`PrepareLabeledUnlabeledBatch`.

    Raises:
        ValueError: ``accumulation_steps`` other than 1; ``amp=True`` on a device type without autocast.
    """

    def __init__(self, *args: Any, unsup_weight: float = 0.0, decollate: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("prepare_batch", PrepareLabeledUnlabeledBatch())
        if kwargs.get("accumulation_steps", 1) != 1:
            raise ValueError("`accumulation_steps` is not supported by SemiSupervisedTrainer.")
        super().__init__(*args, decollate=decollate, **kwargs)
        if self.amp:
            amp_device_type(self)  # fail at construction, not at the first iteration
        self.state.unsup_weight = float(unsup_weight)

    def forward(self, engine: SemiSupervisedTrainer, x: torch.Tensor, x_u: torch.Tensor) -> Any:
        """One pass over the joint batch, labelled samples first."""
        return engine.inferer(torch.cat([x, x_u], dim=0), engine.network)

    def compute_loss(self, engine: SemiSupervisedTrainer, pred: Any, targets: Any, num_labeled: int) -> Any:
        """Call the loss with the trainer's named tensors; return its output (a scalar tensor or a dict of terms,
        the loss contract of :py:mod:`monai_wsss.engines.step`)."""
        return engine.loss_function(pred, targets, num_labeled=num_labeled, unsup_weight=engine.state.unsup_weight)

    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        x, targets, x_u = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        engine.state.output = {Keys.IMAGE: x, Keys.LABEL: targets, UNLABELED_IMAGE: x_u}

        def closure() -> Any:
            engine.state.output[Keys.PRED] = pred = self.forward(engine, x, x_u)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            return self.compute_loss(engine, pred, targets, len(x))

        return optimization_step(engine, closure, engine.network, engine.optimizer, engine.scaler)
