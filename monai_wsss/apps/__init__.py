"""Runners on top of the library: synthesis (and, later, Slicer and the active-learning loop)."""

from .synthesis import GeneratedMasks, PairSynthesizer, write_image

__all__ = ["GeneratedMasks", "PairSynthesizer", "write_image"]
