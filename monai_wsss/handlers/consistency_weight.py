"""Ramp of the unlabelled-loss weight."""

from __future__ import annotations

import math

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["ConsistencyWeightScheduler", "sigmoid_rampup"]


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(current / rampup_length, 0, 1)``; 1 when ``rampup_length`` is 0.

    Laine, S., Aila, T. (2017) Temporal Ensembling for Semi-Supervised Learning. ICLR 2017 (the ramp-up function).
    """
    if rampup_length <= 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), rampup_length) / rampup_length
    return float(math.exp(-5.0 * phase * phase))


class ConsistencyWeightScheduler:
    """
    Set ``engine.state.unsup_weight`` before every iteration to

        w = max_weight * exp(-5 (1 - min(s, S) / S)^2),   s = (iteration - 1) // step_iterations,
        S = rampup_iterations / step_iterations,

    the sigmoid ramp of the DTC / UA-MT references, which step it every 150 iterations over 40 steps (6000
    iterations). ``iteration`` is ignite's 1-based counter, so the first iteration uses s = 0 as the references do;
    after a resume the ramp continues from the restored iteration.

        Luo, X., Chen, J., Song, T., Wang, G. (2021) Semi-supervised Medical Image Segmentation through Dual-task
        Consistency. AAAI 2021 (lambda_d, the time-dependent Gaussian warming-up function).

    Args:
        max_weight: final weight (1.0 in DTC).
        rampup_iterations: iterations until the weight reaches ``max_weight``.
        step_iterations: the weight changes every ``step_iterations`` iterations (150 in the reference).
        attribute: ``engine.state`` attribute to set.
    """

    def __init__(
        self,
        max_weight: float = 1.0,
        rampup_iterations: int = 6000,
        step_iterations: int = 150,
        attribute: str = "unsup_weight",
    ) -> None:
        if max_weight < 0 or rampup_iterations < 0 or step_iterations < 1:
            raise ValueError(
                "Incompatible values: need max_weight >= 0, rampup_iterations >= 0 and step_iterations >= 1, got "
                f"{max_weight}, {rampup_iterations}, {step_iterations}."
            )
        self.max_weight = max_weight
        self.rampup_iterations = rampup_iterations
        self.step_iterations = step_iterations
        self.attribute = attribute

    def weight(self, iteration: int) -> float:
        """Weight used in 1-based ``iteration``."""
        step = (iteration - 1) // self.step_iterations
        return self.max_weight * sigmoid_rampup(step, self.rampup_iterations / self.step_iterations)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine) -> None:
        setattr(engine.state, self.attribute, self.weight(engine.state.iteration))
