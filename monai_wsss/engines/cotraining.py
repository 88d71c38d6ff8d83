"""Co-training of an ensemble kept diverse by adversarial examples, on the semi-supervised trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.utils import CommonKeys as Keys
from monai.utils import IgniteInfo, min_version, optional_import

from monai_wsss.engines.semi_supervised import UNLABELED_IMAGE, SemiSupervisedTrainer, _to
from monai_wsss.engines.step import optimization_step
from monai_wsss.losses.adversarial import FGSM, VAT, segmentation_cross_entropy
from monai_wsss.losses.cotraining import AdversarialDiversityLoss, JensenShannonDivergenceLoss
from monai_wsss.networks.utils import frozen_norm_statistics

EventEnum, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EventEnum")

__all__ = ["CoTrainingEvents", "CoTrainingTrainer", "PrepareEnsembleBatch"]


class CoTrainingEvents(EventEnum):
    """Fired once per iteration after each phase of :py:class:`CoTrainingTrainer`, with the phase's loss already in
    ``engine.state.output`` (``loss_sup``, ``loss_cot``, ``loss_adv``)."""

    SUPERVISED_COMPLETED = "cotraining_supervised_completed"
    AGREEMENT_COMPLETED = "cotraining_agreement_completed"
    DIVERSITY_COMPLETED = "cotraining_diversity_completed"


class PrepareEnsembleBatch(PrepareBatch):
    """
    Unpack a batch of :py:class:`monai_wsss.data.MultiStreamLoader` with one labelled stream per member
    (``image_0``, ``label_0``, ``image_1``, ...) and one unlabelled stream (``image_u``) into
    ``([x_0, ..., x_{S-1}], [y_0, ..., y_{S-1}], x_u)`` on ``device``.

    Args:
        num_models: S.
        image_key, label_key: base keys of the labelled streams (the member index is appended as ``_{i}``).
        unlabeled_key: unlabelled images; a batch without it gives an empty tensor.
    """

    def __init__(
        self,
        num_models: int = 2,
        image_key: str = Keys.IMAGE,
        label_key: str = Keys.LABEL,
        unlabeled_key: str = UNLABELED_IMAGE,
    ) -> None:
        if int(num_models) < 2:
            raise ValueError(f"A co-training ensemble needs num_models >= 2, got {num_models}.")
        self.num_models = int(num_models)
        self.image_key = image_key
        self.label_key = label_key
        self.unlabeled_key = unlabeled_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        missing = [
            f"{k}_{i}"
            for i in range(self.num_models)
            for k in (self.image_key, self.label_key)
            if f"{k}_{i}" not in batchdata
        ]
        if missing:
            raise KeyError(f"Batch lacks the labelled streams {missing}; found keys {sorted(batchdata)}.")
        xs = [_to(batchdata[f"{self.image_key}_{i}"], device, non_blocking, **kwargs) for i in range(self.num_models)]
        ys = [_to(batchdata[f"{self.label_key}_{i}"], device, non_blocking, **kwargs) for i in range(self.num_models)]
        if self.unlabeled_key in batchdata:
            x_u = _to(batchdata[self.unlabeled_key], device, non_blocking, **kwargs)
        else:
            x_u = xs[0].new_zeros((0, *xs[0].shape[1:]))
        return xs, ys, x_u


class CoTrainingTrainer(SemiSupervisedTrainer):
    """
    Deep co-training of S segmenters (Peng, Estrada, Pedersoli, Desrosiers; Pattern Recognition 2020) as an
    extension of :py:class:`SemiSupervisedTrainer`. ``network`` is a
    :py:class:`monai_wsss.networks.SegmentationEnsemble` (optionally inside ``DistributedDataParallel``) and every
    member is called through it as ``network(x, member=i)``. One iteration:

    1. **supervised** (event ``SUPERVISED_COMPLETED``): ``L_sup = sum_i loss_function(f_i(x_i), y_i)`` where
       ``(x_i, y_i)`` comes from member i's OWN labelled subset (:py:class:`PrepareEnsembleBatch`);
    2. **agreement** (``AGREEMENT_COMPLETED``): ``L_cot = JSD(p_1(x_u), ..., p_S(x_u))`` on the unlabelled batch
       (:py:class:`monai_wsss.losses.JensenShannonDivergenceLoss`);
    3. **diversity** (``DIVERSITY_COMPLETED``): for every member i, adversarial examples against f_i, FGSM on its
       labelled images (with their labels) and VAT on the unlabelled images; for every ordered pair i != j,
       ``KL(p_j(x_adv_i) || p_i(x))`` (:py:class:`monai_wsss.losses.AdversarialDiversityLoss`), averaged over
       pairs (labelled and unlabelled terms summed);
    4. ``loss = L_sup + lambda_cot * L_cot + lambda_adv * L_adv``, one backward, one optimiser step.

    ``lambda_cot`` and ``lambda_adv`` are ``engine.state.cot_weight`` and ``engine.state.adv_weight``; ramp them per
    epoch with two :py:class:`monai_wsss.handlers.ConsistencyWeightScheduler` (``attribute="cot_weight"`` /
    ``"adv_weight"``, ``step_iterations=epoch_length``): the paper's ``lambda_max exp(-5 (1 - e/E)^2)``.
    A phase whose weight is 0 throughout (``use_agreement`` / ``use_diversity`` False) is skipped, which gives the
    paper's ablation variants. The iteration is :py:func:`monai_wsss.engines.step.optimization_step`, shared by every
    monai_wsss trainer: the standard ``IterationEvents`` fire in the order ``FORWARD_COMPLETED`` (after the supervised
    forward passes, before ``SUPERVISED_COMPLETED``), ``LOSS_COMPLETED`` (on the total, after
    ``DIVERSITY_COMPLETED``), ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``; ``amp=True`` autocasts the phases and scales
    the backward / step with a ``torch.amp.GradScaler``, both for the device type of ``device`` (CPU: bfloat16).

    One optimiser over the ensemble's parameters updates each member independently when it is element-wise
    (Adam, SGD without weight coupling): that equals S per-member optimisers with the same settings; use
    ``SegmentationEnsemble.param_groups()`` for per-member settings.

    Args:
        device, max_epochs, train_data_loader, optimizer: as :py:class:`monai.engines.SupervisedTrainer`.
        network: the ensemble (positional, in ``SupervisedTrainer``'s place, or by keyword).
        loss_function: supervised loss ``(logits, label) -> scalar`` (the paper: cross-entropy; default
            :py:func:`monai_wsss.losses.segmentation_cross_entropy`).
        agreement_loss: default ``JensenShannonDivergenceLoss()`` (takes logits).
        diversity_loss: default ``AdversarialDiversityLoss()``.
        fgsm: labelled-image attack, default ``FGSM(eps=0.05)``.
        vat: unlabelled-image attack, default ``VAT(xi=1e-6, eps=0.05, power_iterations=1)``.
        cot_weight, adv_weight: initial ``engine.state.cot_weight`` / ``adv_weight``.
        use_agreement, use_diversity: compute the phase at all.
        adversarial_norm_statistics: let the forward passes of the diversity phase (the attacks and the members'
            predictions on adversarial examples) update the running statistics of batch / instance norm layers.
            Default False (:py:func:`monai_wsss.networks.frozen_norm_statistics`): the statistics used at inference
            are estimated on real images only, as in Miyato et al.'s VAT. With True, FGSM's sign noise (L-inf
            ``eps`` on every voxel) enters them.
        other args: as :py:class:`SemiSupervisedTrainer`; ``prepare_batch`` defaults to
            ``PrepareEnsembleBatch(num_models=S)``.

    Raises:
        ValueError: ``network`` has no ``num_models`` >= 2; and as :py:class:`SemiSupervisedTrainer`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | torch.utils.data.DataLoader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable | None = None,
        *args: Any,
        agreement_loss: Callable | None = None,
        diversity_loss: Callable | None = None,
        fgsm: FGSM | None = None,
        vat: VAT | None = None,
        cot_weight: float = 0.0,
        adv_weight: float = 0.0,
        use_agreement: bool = True,
        use_diversity: bool = True,
        adversarial_norm_statistics: bool = False,
        **kwargs: Any,
    ) -> None:
        ensemble = getattr(network, "module", network)
        num_models = getattr(ensemble, "num_models", None)
        if num_models is None or num_models < 2:
            raise ValueError(
                "CoTrainingTrainer needs a SegmentationEnsemble (or a module with `num_models` >= 2 accepting "
                f"`member=`), got {type(ensemble).__name__}."
            )
        kwargs.setdefault("prepare_batch", PrepareEnsembleBatch(num_models=num_models))
        super().__init__(
            device,
            max_epochs,
            train_data_loader,
            network,
            optimizer,
            loss_function or segmentation_cross_entropy,
            *args,
            **kwargs,
        )
        self.num_models = int(num_models)
        self.agreement_loss = agreement_loss or JensenShannonDivergenceLoss()
        self.diversity_loss = diversity_loss or AdversarialDiversityLoss()
        self.fgsm = fgsm or FGSM()
        self.vat = vat or VAT()
        self.use_agreement = bool(use_agreement)
        self.use_diversity = bool(use_diversity)
        self.adversarial_norm_statistics = bool(adversarial_norm_statistics)
        self.state.cot_weight = float(cot_weight)
        self.state.adv_weight = float(adv_weight)
        self.register_events(*CoTrainingEvents)

    def _member(self, engine: CoTrainingTrainer, i: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: engine.inferer(x, engine.network, member=i)

    def _phases(self, engine: CoTrainingTrainer, xs: list, ys: list, x_u: torch.Tensor) -> torch.Tensor:
        out = engine.state.output
        s_count = self.num_models
        logits_l = [self._member(engine, i)(xs[i]) for i in range(s_count)]
        out[Keys.PRED] = logits_l
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss_sup = sum(engine.loss_function(logits_l[i], ys[i]) for i in range(s_count))
        out["loss_sup"] = loss_sup.detach()
        engine.fire_event(CoTrainingEvents.SUPERVISED_COMPLETED)
        total = loss_sup

        has_u = x_u.shape[0] > 0
        logits_u = [self._member(engine, i)(x_u) for i in range(s_count)] if has_u else None
        if self.use_agreement and has_u:
            loss_cot = self.agreement_loss(logits_u)
            out["loss_cot"] = loss_cot.detach()
            total = total + engine.state.cot_weight * loss_cot
        engine.fire_event(CoTrainingEvents.AGREEMENT_COMPLETED)

        if self.use_diversity:
            terms = []
            frozen = nullcontext() if self.adversarial_norm_statistics else frozen_norm_statistics(engine.network)
            with frozen:
                for i in range(s_count):
                    member_i = self._member(engine, i)
                    x_adv = self.fgsm(member_i, xs[i], ys[i])
                    u_adv = self.vat(member_i, x_u, logits_u[i]) if has_u else None
                    for j in range(s_count):
                        if j == i:
                            continue
                        member_j = self._member(engine, j)
                        term = self.diversity_loss(member_j(x_adv), logits_l[i])
                        if has_u:
                            term = term + self.diversity_loss(member_j(u_adv), logits_u[i])
                        terms.append(term)
            loss_adv = torch.stack(terms).mean()
            out["loss_adv"] = loss_adv.detach()
            total = total + engine.state.adv_weight * loss_adv
        engine.fire_event(CoTrainingEvents.DIVERSITY_COMPLETED)
        return total

    def _iteration(self, engine: CoTrainingTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        xs, ys, x_u = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        engine.state.output = {Keys.IMAGE: xs, Keys.LABEL: ys, UNLABELED_IMAGE: x_u}
        return optimization_step(
            engine, lambda: self._phases(engine, xs, ys, x_u), engine.network, engine.optimizer, engine.scaler
        )
