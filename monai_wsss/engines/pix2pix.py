"""A conditional (mask-to-image) GAN trainer on MONAI's engine: pix2pix."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.networks.utils import one_hot
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer

from ..losses.pix2pix import ConditionalGANLoss
from ..networks.nets.pix2pix import discriminator_logits
from .step import GradScalerMixin, amp_device_type, optimization_step

__all__ = ["Pix2PixTrainer", "PrepareMaskImageBatch", "PrepareOneHotMasks"]


def _halves(logits: torch.Tensor | list[torch.Tensor], n: int) -> tuple:
    """Split batched discriminator logits (one tensor or one per scale) into the first ``n`` samples and the rest."""
    if isinstance(logits, list):
        return [t[:n] for t in logits], [t[n:] for t in logits]
    return logits[:n], logits[n:]


class PrepareMaskImageBatch:
    """Return ``(mask, image)`` from a dictionary batch, moved to ``device``."""

    def __init__(self, mask_key: str = Keys.LABEL, image_key: str = Keys.IMAGE) -> None:
        self.mask_key = mask_key
        self.image_key = image_key

    def __call__(
        self, batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [k for k in (self.mask_key, self.image_key) if k not in batchdata]
        if missing:
            raise KeyError(f"batch has no {missing}; keys are {sorted(batchdata)}.")
        return tuple(  # type: ignore[return-value]
            torch.as_tensor(batchdata[k]).to(device=device, non_blocking=non_blocking, **kwargs)
            for k in (self.mask_key, self.image_key)
        )


class PrepareOneHotMasks:
    """The real samples of a mask GAN (MONAI ``GanTrainer``'s ``d_prepare_batch``): the label maps under ``key`` as
    ``num_classes``-channel one-hot tensors on ``device``."""

    def __init__(self, num_classes: int, key: str = Keys.LABEL) -> None:
        self.num_classes = int(num_classes)
        self.key = key

    def __call__(
        self, batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> torch.Tensor:
        mask = torch.as_tensor(batchdata[self.key]).to(device=device, non_blocking=non_blocking)
        return one_hot(mask.long(), num_classes=self.num_classes).float()


class Pix2PixTrainer(GradScalerMixin, Trainer):
    """
    pix2pix training (Isola et al., "Image-to-image translation with conditional adversarial networks", CVPR 2017),
    as used by Bailo, Ham, Shin (CVPR Workshops 2019) to synthesise smear images from masks. Each iteration:

    1. ``fake = G(mask)``;
    2. one discriminator step on ``loss.discriminator(D(cat(mask, real)), D(cat(mask, fake.detach())))`` (the halved
       real/fake loss), real and fake pairs batched into one discriminator pass (use instance, not batch,
       normalisation in D, as the default config does, so the two halves do not share statistics);
    3. one generator step on ``loss.generator(D(cat(mask, fake)), fake, real)`` (adversarial + lambda * L1), with the
       discriminator's parameters frozen.

    MONAI's ``GanTrainer`` feeds G random latents and ``AdversarialTrainer`` judges images alone; neither conditions
    the discriminator on the mask, hence this trainer. It is a MONAI ``Trainer`` (an ignite ``Engine``), so MONAI
    handlers (checkpoints, lr schedules, stats) work as usual. The output of an iteration holds ``label`` (the mask,
    one-hot as G sees it), ``image`` (real), ``pred`` (fake) and the scalar tensors ``loss`` (generator total),
    ``loss_g_adv``, ``loss_l1`` and ``loss_d`` (no host sync per iteration; handlers convert them when they log).

    Steps 2 and 3 are each one :py:func:`monai_wsss.engines.step.optimization_step`, the step shared by every
    monai_wsss trainer, so the standard ``IterationEvents`` fire TWICE per iteration, in the same order each time:
    ``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED`` for the discriminator step
    (``loss_d`` is its optimised entry, ``pred`` is set from its ``FORWARD_COMPLETED`` on), then the same four for the
    generator step (``loss``, ``loss_g_adv``, ``loss_l1``). A handler that should act once per iteration listens to
    ``ITERATION_COMPLETED``. With ``amp=True`` the forward passes run under autocast and each step goes through its
    own ``torch.amp.GradScaler`` (``engine.d_scaler`` for the discriminator, ``engine.scaler`` for the generator, as
    MONAI's ``AdversarialTrainer`` keeps one per optimiser), both for the device type of ``device`` (CPU: bfloat16).

    Args:
        device: device for the networks and batches.
        max_epochs: epochs to run.
        train_data_loader: loader of dictionaries with a mask and an image.
        generator: mask -> image network (e.g. :py:class:`monai_wsss.networks.MaskToImageGenerator`); when it has
            ``encode_mask``, the discriminator sees the mask in that (one-hot) form.
        discriminator: MONAI ``PatchDiscriminator`` / ``MultiScalePatchDiscriminator`` with
            ``in_channels = mask channels + image channels``.
        g_optimizer: optimizer of the generator.
        d_optimizer: optimizer of the discriminator.
        loss_function: a :py:class:`monai_wsss.losses.ConditionalGANLoss`.
        epoch_length: iterations per epoch (default: length of the loader).
        prepare_batch: returns ``(mask, image)``; default :py:class:`PrepareMaskImageBatch`.
        train_handlers: MONAI / ignite handlers.
        amp: mixed precision: autocast the forward passes and scale each step's loss (any device with autocast).
        amp_kwargs: arguments of ``torch.autocast`` (e.g. ``{"dtype": torch.float16}``).

    Raises:
        ValueError: ``amp=True`` on a device type without autocast.
    """

    grad_scaler_attributes = ("scaler", "d_scaler")

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | torch.utils.data.DataLoader,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        loss_function: ConditionalGANLoss | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable | None = None,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = False,
        optim_set_to_none: bool = False,
        amp_kwargs: dict | None = None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch or PrepareMaskImageBatch(),
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            decollate=decollate,
            amp_kwargs=amp_kwargs,
        )
        if self.amp:
            amp_device_type(self)  # fail at construction, not at the first iteration
        self.d_scaler: torch.amp.GradScaler | None = None  # set with ``self.scaler`` at every run()
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.loss_function = loss_function or ConditionalGANLoss()
        self.optim_set_to_none = optim_set_to_none
        # MONAI handlers that look for ``engine.network`` / ``engine.optimizer`` find the generator's
        self.network = generator
        self.optimizer = g_optimizer

    def _iteration(self, engine: Pix2PixTrainer, batchdata: dict) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        mask, real = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        g, d, loss = engine.generator, engine.discriminator, engine.loss_function
        g_module = getattr(g, "module", g)  # DistributedDataParallel keeps the network in .module
        cond = g_module.encode_mask(mask) if hasattr(g_module, "encode_mask") else mask.float()
        engine.state.output = out = {Keys.IMAGE: real, Keys.LABEL: cond}
        fake_holder: list[torch.Tensor] = []

        def discriminator_closure() -> dict[str, torch.Tensor]:
            fake = g(mask)
            fake_holder.append(fake)
            out[Keys.PRED] = fake.detach()
            # real and fake pairs in ONE discriminator pass (DistributedDataParallel expects one forward per backward)
            both = d(torch.cat([torch.cat([cond, real], 1), torch.cat([cond, fake.detach()], 1)], 0))
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            return {"loss_d": loss.discriminator(*_halves(discriminator_logits(both), real.shape[0]))}

        def generator_closure() -> dict[str, torch.Tensor]:
            fake = fake_holder[0]
            logits = d(torch.cat([cond, fake], 1))
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss_g, adv, l1 = loss.generator(logits, fake, real)
            return {Keys.LOSS: loss_g, "loss_g_adv": adv, "loss_l1": l1}

        optimization_step(engine, discriminator_closure, (g, d), engine.d_optimizer, engine.d_scaler, "loss_d")
        # freezing D for the generator step saves its weight gradients; under DDP its reducer expects them, so there
        # they are computed and then cleared by the next discriminator step instead
        freeze_d = not isinstance(d, torch.nn.parallel.DistributedDataParallel)
        if freeze_d:
            d.requires_grad_(False)
        try:
            return optimization_step(engine, generator_closure, (g, d), engine.g_optimizer, engine.scaler)
        finally:
            if freeze_d:
                d.requires_grad_(True)
