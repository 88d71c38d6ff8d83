"""Runners on top of the library: synthesis (and, later, Slicer and the active-learning loop)."""

from .synthesis import PairSynthesizer, write_image

__all__ = ["PairSynthesizer", "write_image"]
