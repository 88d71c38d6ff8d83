"""Validation that tolerates a dataset without a validation split."""

from __future__ import annotations

from monai.handlers import ValidationHandler

__all__ = ["OptionalValidationHandler"]


class OptionalValidationHandler(ValidationHandler):
    """
    :py:class:`monai.handlers.ValidationHandler` that does nothing when the validator's data loader is empty (e.g.
    a default dataset whose only labelled hold-out is the test subject), logging that once. Arguments are those of
    ``ValidationHandler``.
    """

    _warned = False

    def __call__(self, engine) -> None:
        if self.validator is not None and len(getattr(self.validator, "data_loader", [None])) == 0:
            if not self._warned:
                engine.logger.info("No validation case: validation skipped.")
                self._warned = True
            return
        super().__call__(engine)
