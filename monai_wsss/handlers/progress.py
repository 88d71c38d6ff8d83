"""Progress bar over the whole training run for MONAI engines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from ignite.engine import Events
from monai.utils import optional_import

tqdm, _ = optional_import("tqdm", name="tqdm")

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
    A tqdm progress bar over the WHOLE run as a MONAI handler (``attach(engine)``): its total is
    ``max_epochs * epoch_length`` iterations, so the count (``n/total``) and tqdm's time estimate (``<remaining``)
    refer to the end of the run, not to the end of the current epoch (ignite's ``ProgressBar`` restarts at every
    epoch, and its estimate covers one epoch only). A resumed run starts the bar at the restored iteration. The
    description shows the epoch (``Epoch 3/10``), the postfix the scalars ``output_keys`` of ``engine.state.output``
    (e.g. the loss terms).

    Args:
        output_keys: keys of ``engine.state.output`` to display; empty for a bare bar.
        persist: keep the bar on screen when the run ends.
    """

    def __init__(self, output_keys: Sequence[str] = ("loss",), persist: bool = False) -> None:
        self.output_keys = tuple(output_keys)
        self.persist = persist
        self.pbar = None
        self._transform = _scalars(self.output_keys)

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._close)
        engine.add_event_handler(Events.TERMINATE, self._close)

    def _update(self, engine) -> None:
        state = engine.state
        if self.pbar is None:  # opened lazily, after a resume has restored the iteration
            total = int(state.max_epochs) * int(state.epoch_length)
            self.pbar = tqdm(total=total, initial=state.iteration - 1, leave=self.persist, dynamic_ncols=True)
        self.pbar.set_description(f"Epoch {state.epoch}/{state.max_epochs}", refresh=False)
        if self.output_keys:
            self.pbar.set_postfix(self._transform(state.output), refresh=False)
        self.pbar.update(1)

    def _close(self, engine) -> None:
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
