"""Ignite handlers (``attach(engine)``) for MONAI engines."""

from .checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader, latest_checkpoint
from .consistency_weight import ConsistencyWeightScheduler, sigmoid_rampup
from .figures import LearningCurveWriter, OverlayPNGSaver, SynthesisGridSaver, save_image_grid, save_overlay_png
from .metrics import SpacingAwareMetricHandler, member_dice_metrics
from .progress import ProgressBar
from .validation import OptionalValidationHandler

__all__ = [
    "AtomicCheckpointSaver",
    "ConsistencyWeightScheduler",
    "LearningCurveWriter",
    "OptionalValidationHandler",
    "OverlayPNGSaver",
    "ProgressBar",
    "ResumeCheckpointLoader",
    "SpacingAwareMetricHandler",
    "SynthesisGridSaver",
    "latest_checkpoint",
    "member_dice_metrics",
    "save_image_grid",
    "save_overlay_png",
    "sigmoid_rampup",
]
