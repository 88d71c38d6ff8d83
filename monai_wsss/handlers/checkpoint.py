"""Durable checkpoints and automatic resume."""

from __future__ import annotations

import glob
import inspect
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping

import ignite.distributed as idist
import torch
from ignite.engine import Events
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..compat import (
    checkpoint_filename_regex,
    checkpoint_objects,
    make_checkpoint_saver_atomic,
    saved_checkpoints,
    set_saved_checkpoints,
)
from ..utils import atomic_write_json, default_file_mode

__all__ = [
    "AtomicCheckpointSaver",
    "DurableDiskSaver",
    "ResumeCheckpointLoader",
    "latest_checkpoint",
    "load_model_weights",
    "read_best_record",
    "remove_stale_temp_files",
]

TEMP_PREFIX = ".ckpt-"
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[^/]*" + re.escape(TEMP_SUFFIX) + "$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(folder: str, logger: logging.Logger | None = None) -> list[str]:
    """
    Remove the temporary files that a :py:class:`DurableDiskSaver` of a killed process left in ``folder``: names
    ``.ckpt-<pid>-*.tmp`` whose ``<pid>`` is not a running process (files of this process and of running ones, and
    every other file, are left alone). Returns the removed paths.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        m = _TEMP_RE.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
        if logger is not None:
            logger.info(f"Removed {path}: a checkpoint write interrupted when process {m.group(1)} was killed.")
    return removed


class DurableDiskSaver(BaseSaveHandler):
    """
    ignite save handler that never leaves a moment without a complete checkpoint: each checkpoint is written to a
    temporary file ``.ckpt-<pid>-*.tmp`` in ``dirname``, flushed to disk (``fsync``), given the mode of a plain
    ``open`` (:py:func:`monai_wsss.utils.default_file_mode`) and renamed over its name; the files that ignite asks
    to remove (``n_saved`` rotation, or the previous file of a fixed name) are removed only after that rename. A
    process killed at any point leaves the previous checkpoint (and at worst one temporary file, which
    :py:func:`remove_stale_temp_files` removes at the next start).

    Args:
        dirname: folder of the checkpoints (created).
        filename: a fixed name to use instead of ignite's (MONAI's ``final_filename`` / ``key_metric_filename``).
        save_on_rank: the rank that writes in a distributed run.
    """

    def __init__(self, dirname: str, filename: str | None = None, save_on_rank: int = 0) -> None:
        self.dirname = str(dirname)
        self.filename = filename
        self.save_on_rank = save_on_rank
        self.pending_removal: list[str] = []
        if idist.get_rank() == save_on_rank:
            os.makedirs(self.dirname, exist_ok=True)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() != self.save_on_rank:
            return
        filename = self.filename or filename
        path = os.path.join(self.dirname, filename)
        fd, tmp = tempfile.mkstemp(dir=self.dirname, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), default_file_mode())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        _fsync_dir(self.dirname)
        for old in self.pending_removal:
            if old != filename:
                try:
                    os.remove(os.path.join(self.dirname, old))
                except FileNotFoundError:
                    pass
        self.pending_removal = []

    def remove(self, filename: str) -> None:
        """Remove ``filename`` once the next checkpoint is complete (ignite calls this just before saving it)."""
        if idist.get_rank() == self.save_on_rank:
            self.pending_removal.append(self.filename or filename)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointSaver(CheckpointSaver):
    """
    :py:class:`monai.handlers.CheckpointSaver` whose checkpoints are durable (:py:class:`DurableDiskSaver`): each
    file is written completely under a temporary name, renamed, and only then is the file it replaces removed, so
    at every moment at least one complete checkpoint exists and a run killed while saving never leaves a truncated
    ``model.pt`` or checkpoint. At attach (the start of a run) the temporary files of killed runs are removed
    (:py:func:`remove_stale_temp_files`); when a run resumes, the interval checkpoints already in ``save_dir`` from
    before its resumed position count among the ``n_saved`` kept ones and are rotated out like the new ones.
    Arguments and files written are those of ``CheckpointSaver``, plus:

    With ``save_key_metric`` and a fixed ``key_metric_filename`` (``model_best.pt``), each time that file is
    replaced its score is written next to it (``model_best.json``: key metric, value, epoch, iteration), so a user
    can see which evaluation the weights come from, and a resumed training can go on comparing against it
    (``resume_best``) instead of replacing the best weights of the interrupted run at its first evaluation.

    Args:
        save_engine_as: also save the state (iteration, epoch) of the engine this handler is attached to under this
            key, e.g. ``"trainer"`` for resumable checkpoints. A config cannot reference the trainer from its own
            handlers (circular reference), hence this option.
        resume_best: whether a run that resumes keeps comparing against the key-metric file and its score record
            left by the run it continues (so the weights are replaced only by a better score): ``True`` does when
            ``save_dir`` holds an interval checkpoint (``*checkpoint*.pt``, what
            :py:class:`ResumeCheckpointLoader` resumes from) when this handler is attached, before the run; set it
            to the training's ``resume`` switch. A callable is asked at the first save decision instead (e.g.
            :py:meth:`ResumeCheckpointLoader.resumed`). ``False`` (a fresh training) replaces the file at its first
            evaluation, as ``CheckpointSaver`` does.
    """

    def __init__(
        self,
        *args,
        save_engine_as: str | None = None,
        resume_best: bool | Callable[[], bool] = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.save_engine_as = save_engine_as
        self.resume_best = resume_best
        make_checkpoint_saver_atomic(self, DurableDiskSaver)
        self._adopted = False
        self._best_checked = False
        self._last_best = None
        bound = inspect.signature(CheckpointSaver.__init__).bind(self, *args, **kwargs)
        self._key_metric_name = bound.arguments.get("key_metric_name")

    @property
    def best_record_path(self) -> str | None:
        """``<save_dir>/<key_metric_filename stem>.json``, the score of the key-metric file (None: no fixed name)."""
        ckpt = checkpoint_objects(self).get("key_metric")
        filename = getattr(getattr(ckpt, "save_handler", None), "filename", None)
        if not filename:
            return None
        return os.path.join(self.save_dir, os.path.splitext(filename)[0] + ".json")

    def attach(self, engine) -> None:
        if self.save_engine_as:
            self.save_dict[self.save_engine_as] = engine  # the Checkpoint objects hold this same dict
        record = self.best_record_path
        if record is not None:
            if not callable(self.resume_best):  # decided now, before this run writes any checkpoint
                resuming = bool(self.resume_best) and latest_checkpoint(self.save_dir) is not None
                self.resume_best = bool(resuming)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._before_key_metric_save)
        super().attach(engine)
        if record is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._after_key_metric_save)
        if idist.get_rank() == 0:
            remove_stale_temp_files(self.save_dir, self.logger)
        if self._interval_checkpoint is not None:
            engine.add_event_handler(Events.ITERATION_STARTED, self._adopt_existing)

    def _adopt_existing(self, engine) -> None:
        """Once, at the first iteration of a run (after any resume): count the interval checkpoints on disk from
        before this point as saved by this run; files from beyond it (a run that went further) are left alone."""
        if self._adopted:
            return
        self._adopted = True
        ckpt = checkpoint_objects(self)["interval"]
        name = "checkpoint" if len(self.save_dict) > 1 else next(iter(self.save_dict))
        regex = checkpoint_filename_regex(ckpt, name)
        now = engine.state.epoch if self.epoch_level else engine.state.iteration  # the step being run
        before, beyond = [], []
        for f in os.listdir(self.save_dir) if os.path.isdir(self.save_dir) else []:
            m = regex.fullmatch(f)
            if m is not None and os.path.isfile(os.path.join(self.save_dir, f)):
                (before if int(m.group(1)) < now else beyond).append((int(m.group(1)), f))
        if beyond:
            self.logger.warning(
                f"{self.save_dir} holds checkpoints from beyond this run's start ({sorted(f for _, f in beyond)}); "
                "they are left in place, and a later resume would continue from the newest of them."
            )
        before.sort()
        n_saved = ckpt.n_saved
        if n_saved is not None and len(before) > n_saved:
            extra, before = before[: len(before) - n_saved], before[len(before) - n_saved :]
            ckpt.save_handler.pending_removal.extend(f for _, f in extra)  # removed once the next one is written
        set_saved_checkpoints(ckpt, before)  # no save has happened yet in this run

    def _before_key_metric_save(self, engine) -> None:
        """Before each key-metric decision; the first time, with ``resume_best``, count the earlier best as saved."""
        ckpt = checkpoint_objects(self)["key_metric"]
        if not self._best_checked:
            self._best_checked = True
            resume = self.resume_best() if callable(self.resume_best) else bool(self.resume_best)
            weights = os.path.join(self.save_dir, ckpt.save_handler.filename)
            record = read_best_record(self.best_record_path)
            if resume and record is None and os.path.isfile(str(self.best_record_path)):
                self.logger.warning(
                    f"{self.best_record_path}: not a score record (unreadable, or no numeric priority / value / "
                    f"epoch); {weights} is replaced at this run's first evaluation."
                )
            if resume and record is not None and os.path.isfile(weights):
                set_saved_checkpoints(ckpt, [(record["priority"], ckpt.save_handler.filename)])
                self.logger.info(
                    f"{weights} holds the best {record['key_metric']} so far ({record['value']:.4f}, epoch "
                    f"{record['epoch']}) of the training this run resumes: only a better score replaces it."
                )
        saved = saved_checkpoints(ckpt)
        self._last_best = saved[-1] if saved else None

    def _after_key_metric_save(self, engine) -> None:
        """After each key-metric decision: when it replaced the file, write the file's score record."""
        ckpt = checkpoint_objects(self)["key_metric"]
        saved = saved_checkpoints(ckpt)
        if not saved or saved[-1] is self._last_best or idist.get_rank() != 0:
            return
        name = self._key_metric_name or getattr(engine.state, "key_metric_name", None)
        priority = float(saved[-1].priority)
        value = engine.state.metrics.get(name, priority) if name else priority
        atomic_write_json(
            self.best_record_path,
            {
                "file": ckpt.save_handler.filename,
                "key_metric": name,
                "value": float(value),
                "priority": priority,
                "epoch": int(engine.state.epoch),
                "iteration": int(engine.state.iteration),
            },
        )


def read_best_record(path: str | None) -> dict | None:
    """The score record of a key-metric file (:py:class:`AtomicCheckpointSaver`), or None when absent, unreadable or
    without a numeric ``priority`` / ``value`` / ``epoch`` (then nothing is adopted and the next score replaces it)."""
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        float(record["priority"]), float(record["value"]), int(record["epoch"])
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


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

    def resumed(self) -> bool:
        """Whether this run continues from a checkpoint (known once attached), e.g. for ``resume_best``."""
        return self.path is not None

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
