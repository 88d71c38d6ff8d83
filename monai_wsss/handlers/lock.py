"""A lock on a training run's output folders: a second run in the same folders refuses, naming the running one."""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence

import ignite.distributed as idist
from ignite.engine import Events

from ..utils import atomic_write_json, default_file_mode

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the PID check alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputFolderInUse", "OutputFolderLock"]

LOCK_FILE = ".monai_wsss.lock"
INFO_FILE = ".monai_wsss.lock.json"

_HELD: dict[str, OutputFolderLock] = {}  # lock file (real path) -> the lock of this process that holds it


class OutputFolderInUse(RuntimeError):
    """Another training run holds the lock on an output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_info(path: str) -> dict:
    try:
        with open(path) as f:
            info = json.load(f)
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "a run whose details are unknown"
    return (
        f"PID {info.get('pid')} on host {info.get('host')}, started {info.get('started')} "
        f"({info.get('command') or 'command unknown'})"
    )


class OutputFolderLock:
    """
    Lock the folders a training run writes (checkpoints, outputs) for the duration of the run, so that a second
    training started in the same folders refuses at once, before it writes anything, with a message naming the
    running one (PID, host, start time, command), instead of the two overwriting each other's checkpoints.

    The lock is taken when the handler is attached (when the trainer is built, before the run starts) and released
    when the run completes (or, with ``hold_until_exit``, when the process exits: for a trainer that is run several
    times, e.g. by the active-learning loop). Only global rank 0 of a distributed run takes it.

    Files written in each folder (removed on release; a killed run leaves them, and the next run takes them over):

    - ``.monai_wsss.lock``: the file held with ``fcntl.flock`` (the operating system drops the lock when the holding
      process dies, even with SIGKILL);
    - ``.monai_wsss.lock.json``: ``pid``, ``host``, ``started`` (ISO time) and ``command`` of the holder, written
      atomically.

    A lock left by a run that is no longer running (the flock is free; on this host its PID is gone) is taken over
    with a warning naming that run. On a file system without ``flock``, a holder on this host is still detected by
    its PID.

    Args:
        folders: the folder or folders to lock (created).
        hold_until_exit: keep the lock after the run completes, until the process exits (or :py:meth:`release`).
        enabled: False does nothing.
        name: name of the logger.

    Raises:
        OutputFolderInUse: at attach, when another running process holds the lock on one of ``folders``.
    """

    def __init__(
        self,
        folders: str | Sequence[str],
        hold_until_exit: bool = False,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
        self.folders = list(dict.fromkeys(os.path.abspath(str(f)) for f in folders))
        self.hold_until_exit = bool(hold_until_exit)
        self.enabled = bool(enabled)
        self.logger = logging.getLogger(name or __name__)
        self._fds: dict[str, int] = {}

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def attach(self, engine) -> None:
        """Take the lock now (refusing when another run holds it); release it when the run completes."""
        self.acquire()
        if not self.hold_until_exit:
            engine.add_event_handler(Events.STARTED, self._release_last)

    def _release_last(self, engine) -> None:
        # registered once every handler is attached, so the release follows their COMPLETED writes (model.pt)
        if not engine.has_event_handler(self._release_on_completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._release_on_completed)

    def _release_on_completed(self, engine) -> None:
        self.release()

    def acquire(self) -> None:
        """
        Lock every folder (all or none).

        Raises:
            OutputFolderInUse: another running process holds the lock on one of the folders.
        """
        if not self.enabled or idist.get_rank() != 0 or self.held:
            return
        try:
            for folder in self.folders:
                self._lock_one(folder)
        except BaseException:
            self.release()
            raise
        atexit.register(self.release)

    def _lock_one(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        path = os.path.realpath(os.path.join(folder, LOCK_FILE))
        info_path = os.path.join(folder, INFO_FILE)
        previous = _HELD.get(path)
        if previous is not None and previous is not self:  # an earlier run of this process (e.g. it raised)
            previous.release()
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, default_file_mode())
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise self._in_use(folder, _read_info(info_path)) from None
            try:  # the holder that released may have removed the file we opened: lock the one at `path`
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = _read_info(info_path)
        mine = info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
        if info and not mine:
            if (
                info.get("host") == socket.gethostname()
                and isinstance(info.get("pid"), int)
                and _pid_alive(info["pid"])
            ):
                os.close(fd)  # flock is not enforced here (some network file systems), but the holder runs
                raise self._in_use(folder, info)
            self.logger.warning(
                f"{folder}: taking over the lock of {_describe(info)}, which is no longer running "
                "(it was killed or crashed; its last checkpoint is what a resume continues from)."
            )
        self._fds[folder] = fd
        _HELD[path] = self
        argv = " ".join(sys.argv) if sys.argv and sys.argv[0] else sys.executable
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": argv[:500]}
        atomic_write_json(info_path, record)

    @staticmethod
    def _in_use(folder: str, info: dict) -> OutputFolderInUse:
        return OutputFolderInUse(
            f"{folder} is in use by another training run: {_describe(info)}. Wait for it to finish, stop it, or "
            "give this run other output folders (e.g. another --bundle_root, --ckpt_dir or --output_dir)."
        )

    def release(self) -> None:
        """Remove the lock files and drop the locks (nothing when not held)."""
        for folder, fd in list(self._fds.items()):
            path = os.path.realpath(os.path.join(folder, LOCK_FILE))
            for name in (INFO_FILE, LOCK_FILE):  # removed while still locked, so no other run sees a half state
                try:
                    os.remove(os.path.join(folder, name))
                except FileNotFoundError:
                    pass
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    pass
            os.close(fd)
            if _HELD.get(path) is self:
                del _HELD[path]
            del self._fds[folder]
        atexit.unregister(self.release)
