"""Runners on top of the library: they orchestrate rounds and files (active-learning loop, pair synthesis, pseudo-label
writer, the downstream segmenter recipe, MCOF rounds)."""

from .active_learning import STRATEGIES, ActiveLearningLoop, plot_learning_curves
from .mcof import MCOFSeeds
from .segmenter import SegmenterRecipe
from .synthesis import GeneratedMasks, PairSynthesizer
from .weak_supervision import PseudoLabelWriter

__all__ = [
    "MCOFSeeds",
    "ActiveLearningLoop",
    "GeneratedMasks",
    "PairSynthesizer",
    "PseudoLabelWriter",
    "STRATEGIES",
    "SegmenterRecipe",
    "plot_learning_curves",
]
