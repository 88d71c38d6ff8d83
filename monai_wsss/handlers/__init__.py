"""Ignite handlers (``attach(engine)``) for MONAI engines."""

from .checkpoint import (
    AtomicCheckpointSaver,
    DurableDiskSaver,
    ResumeCheckpointLoader,
    latest_checkpoint,
    load_model_weights,
    read_best_record,
    remove_stale_temp_files,
)
from .consistency_weight import ConsistencyWeightScheduler, sigmoid_rampup
from .figures import LearningCurveWriter, OverlayPNGSaver, SynthesisGridSaver, save_image_grid, save_overlay_png
from .lock import OutputFolderInUse, OutputFolderLock
from .map_accumulator import OnlineMapAccumulator, image_key, load_accumulated_maps
from .metrics import FeatureDistance, SpacingAwareMetricHandler, member_dice_metrics
from .pretrained import PretrainedWeightsLoader
from .progress import ProgressBar
from .run_info import RunSummary, quiet_optional_decoders
from .validation import OptionalValidationHandler

__all__ = [
    "OnlineMapAccumulator",
    "image_key",
    "load_accumulated_maps",
    "AtomicCheckpointSaver",
    "ConsistencyWeightScheduler",
    "DurableDiskSaver",
    "FeatureDistance",
    "LearningCurveWriter",
    "OptionalValidationHandler",
    "OutputFolderInUse",
    "OutputFolderLock",
    "OverlayPNGSaver",
    "PretrainedWeightsLoader",
    "ProgressBar",
    "ResumeCheckpointLoader",
    "RunSummary",
    "SpacingAwareMetricHandler",
    "SynthesisGridSaver",
    "latest_checkpoint",
    "load_model_weights",
    "member_dice_metrics",
    "quiet_optional_decoders",
    "read_best_record",
    "remove_stale_temp_files",
    "save_image_grid",
    "save_overlay_png",
    "sigmoid_rampup",
]
