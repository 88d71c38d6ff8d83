"""Runners on top of the library: synthesis (and, later, Slicer and the active-learning loop)."""

from .active_learning import STRATEGIES, ActiveLearningLoop, plot_learning_curves
from .synthesis import GeneratedMasks, PairSynthesizer
from .weak_supervision import SEED_METHODS, PseudoLabelWriter, class_activation_maps, peak_response_seeds, resize_maps

__all__ = [
    "ActiveLearningLoop",
    "STRATEGIES",
    "plot_learning_curves",
    "GeneratedMasks",
    "PairSynthesizer",
    "SEED_METHODS",
    "PseudoLabelWriter",
    "class_activation_maps",
    "peak_response_seeds",
    "resize_maps",
]
