"""Progress bar for MONAI engines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.utils import IgniteInfo, min_version, optional_import

IgniteProgressBar, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "ProgressBar")

__all__ = ["ProgressBar"]


def _scalars(keys: Sequence[str]) -> Callable:
    def transform(output) -> dict[str, float]:
        out = output[0] if isinstance(output, list) and output else output
        if not isinstance(out, dict):
            return {}
        return {k: float(torch.as_tensor(out[k]).detach()) for k in keys if k in out}

    return transform


class ProgressBar:
    """
    ignite's tqdm progress bar as a MONAI handler (``attach(engine)``), showing the scalars ``output_keys`` of
    ``engine.state.output`` (e.g. the loss terms) and the epoch / iteration position.

    Args:
        output_keys: keys of ``engine.state.output`` to display; empty for a bare bar.
        persist: keep each epoch's bar on screen.
    """

    def __init__(self, output_keys: Sequence[str] = ("loss",), persist: bool = False) -> None:
        self.output_keys = tuple(output_keys)
        self.persist = persist

    def attach(self, engine) -> None:
        bar = IgniteProgressBar(persist=self.persist)
        bar.attach(engine, output_transform=_scalars(self.output_keys) if self.output_keys else None)
