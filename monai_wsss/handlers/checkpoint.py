"""Atomic checkpoints and automatic resume."""

from __future__ import annotations

import glob
import logging
import os
import re

import torch
from ignite.engine import Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..compat import make_checkpoint_saver_atomic

__all__ = ["AtomicCheckpointSaver", "ResumeCheckpointLoader", "latest_checkpoint", "load_model_weights"]


class AtomicCheckpointSaver(CheckpointSaver):
    """
    :py:class:`monai.handlers.CheckpointSaver` whose files are written atomically: each checkpoint is serialised to
    a temporary file in the same folder and renamed over the target (ignite's ``DiskSaver(atomic=True)``, readable
    by group and others), so a run killed while saving never leaves a truncated ``model.pt`` or checkpoint.
    Arguments and files written are those of ``CheckpointSaver``, plus:

    Args:
        save_engine_as: also save the state (iteration, epoch) of the engine this handler is attached to under this
            key, e.g. ``"trainer"`` for resumable checkpoints. A config cannot reference the trainer from its own
            handlers (circular reference), hence this option.
    """

    def __init__(self, *args, save_engine_as: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.save_engine_as = save_engine_as
        make_checkpoint_saver_atomic(self)

    def attach(self, engine) -> None:
        if self.save_engine_as:
            self.save_dict[self.save_engine_as] = engine  # the Checkpoint objects hold this same dict
        super().attach(engine)


def latest_checkpoint(ckpt_dir: str, pattern: str = "*checkpoint*.pt") -> str | None:
    """The checkpoint in ``ckpt_dir`` with the largest trailing number (``..._epoch=12.pt``), or None."""

    def key(path: str) -> tuple[int, float]:
        nums = re.findall(r"(\d+)", os.path.basename(path))
        return (int(nums[-1]) if nums else -1, os.path.getmtime(path))

    files = [f for f in glob.glob(os.path.join(ckpt_dir, pattern)) if os.path.isfile(f)]
    return max(files, key=key) if files else None


class ResumeCheckpointLoader:
    """
    Resume an interrupted training: when ``ckpt_dir`` holds a checkpoint written by
    :py:class:`AtomicCheckpointSaver` (or ``CheckpointSaver``), load the newest into ``load_dict`` (model,
    optimiser, lr scheduler, trainer) with :py:class:`monai.handlers.CheckpointLoader` (``weights_only=True``), so
    the iteration count, optimiser and learning-rate state continue. Without a checkpoint, training starts afresh.

    Args:
        ckpt_dir: folder of the interval checkpoints.
        load_dict: objects to restore, e.g. ``{"model": net, "optimizer": opt, "lr_scheduler": sch}``.
        load_engine_as: also restore the engine this handler is attached to from this key (``None``: do not).
        enabled: False always starts afresh.
        pattern: glob of checkpoint names.
        map_location: passed to ``torch.load``.
        name: name of the logger.

    Logs (``INFO``) which checkpoint file the run continues from, after which iteration and epoch, and how many of
    the run's ``max_epochs * epoch_length`` iterations are left; or that training starts from iteration 0. ignite's
    own "Engine run resuming from iteration 0, epoch 0" line, written before the checkpoint is loaded, is dropped.
    """

    def __init__(
        self,
        ckpt_dir: str,
        load_dict: dict,
        load_engine_as: str | None = "trainer",
        enabled: bool = True,
        pattern: str = "*checkpoint*.pt",
        map_location: str | dict | None = "cpu",
        name: str | None = None,
    ) -> None:
        self.ckpt_dir = ckpt_dir
        self.load_dict = dict(load_dict)
        self.load_engine_as = load_engine_as
        self.enabled = enabled
        self.pattern = pattern
        self.map_location = map_location
        self.logger = logging.getLogger(name or __name__)
        self.path: str | None = None

    def attach(self, engine) -> None:
        self.path = latest_checkpoint(self.ckpt_dir, self.pattern) if self.enabled else None
        # ignite logs "Engine run resuming from iteration 0, epoch 0" before any checkpoint is loaded (a MONAI
        # workflow's state is pre-set); that line reads as a restart, so this handler's own lines replace it
        engine.logger.addFilter(_drop_ignite_resume_line)
        if self.path is None:
            self.logger.info(f"No checkpoint in {self.ckpt_dir}: training starts from iteration 0.")
            return
        if self.load_engine_as:
            self.load_dict[self.load_engine_as] = engine
        CheckpointLoader(load_path=self.path, load_dict=self.load_dict, map_location=self.map_location).attach(engine)
        engine.add_event_handler(Events.STARTED, self._log_resumed)  # after the loader's STARTED handler

    def _log_resumed(self, engine) -> None:
        state = engine.state
        if not self.load_engine_as:
            self.logger.info(f"Weights and optimiser restored from {self.path}; the iteration count starts at 0.")
            return
        total = int(state.max_epochs) * int(state.epoch_length)
        self.logger.info(
            f"Resuming from {self.path}: continues after iteration {state.iteration} (epoch {state.epoch} of "
            f"{state.max_epochs}), {max(total - state.iteration, 0)} of {total} iterations left."
        )


def _drop_ignite_resume_line(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Engine run resuming from iteration 0, epoch 0 ")


def load_model_weights(
    network: torch.nn.Module, path: str, map_location: str | torch.device = "cpu"
) -> torch.nn.Module:
    """
    Load a ``model.pt`` state dict (``weights_only=True``) into ``network`` and return it, for steps that run after
    training outside an engine (e.g. synthesis). A dict saved as ``{"model": state_dict}`` is unwrapped.

    Raises:
        FileNotFoundError: ``path`` does not exist; the message says to train first.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: trained weights not found; run the bundle's train config first.")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, dict) and set(state) == {"model"}:
        state = state["model"]
    target = network.module if hasattr(network, "module") else network
    target.load_state_dict(state)
    return network
