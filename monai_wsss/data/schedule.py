"""The length of a training run: ``num_epochs`` epochs of ``epoch_length`` iterations, exactly."""

from __future__ import annotations

import numbers

__all__ = ["run_length"]


def run_length(num_epochs: int, epoch_length: int) -> int:
    """
    The number of iterations a bundle trains: exactly ``num_epochs * epoch_length`` (nothing is rounded; the last
    epoch is as long as the others). Every bundle's trainer gets ``max_epochs=num_epochs`` and
    ``epoch_length=epoch_length``, so it ends at this iteration.

    Raises:
        ValueError: ``num_epochs`` or ``epoch_length`` is not a positive integer (zero, negative, a fraction, a bool
            or a string); the message names the key and the value.
    """
    for name, value in (("num_epochs", num_epochs), ("epoch_length", epoch_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"`{name}` must be a positive integer (the run is exactly num_epochs x epoch_length iterations), "
                f"got {value!r}."
            )
    return int(num_epochs) * int(epoch_length)
