"""Issue 18, item 5: a lock on a training run's output folders. A second run refuses with a message naming the
running one (PID, host, start time); a lock left by a killed run is taken over with a warning; the lock is released
when the run completes; the DTC bundle's train config takes it before it writes anything."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys

import pytest
from conftest import REPO, exception_messages
from ignite.engine import Engine, Events
from monai.bundle import ConfigWorkflow

from monai_wsss.handlers import OutputFolderInUse, OutputFolderLock
from monai_wsss.handlers.lock import INFO_FILE, LOCK_FILE


class Holder:
    """Another training process holding the lock: a forked child that takes it with ``OutputFolderLock`` and keeps
    it until :py:meth:`finish` (a normal end: released) or a SIGKILL."""

    def __init__(self, folders: list[str]) -> None:
        ready_r, ready_w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never return into pytest
            code = 1
            try:
                os.close(ready_r)
                lock = OutputFolderLock(folders)
                lock.acquire()
                os.write(ready_w, b"locked")
                os.read(self._stop_r, 1)  # until the test says stop
                lock.release()
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        assert os.read(ready_r, 6) == b"locked"
        os.close(ready_r)
        self.returncode: int | None = None

    def finish(self) -> int:
        os.write(self._stop_w, b"x")
        return self.wait()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return self.returncode


@pytest.fixture
def holder():
    """Start a process that holds the lock on the folders given; yields a function that starts it."""
    started: list[Holder] = []

    def start(*folders: str) -> Holder:
        started.append(Holder(list(folders)))
        return started[-1]

    yield start
    for h in started:
        if h.returncode is None:
            h.kill()


def _engine() -> Engine:
    return Engine(lambda e, b: None)


def test_second_run_refuses_naming_the_running_one(tmp_path, holder):
    folder = str(tmp_path / "models")
    proc = holder(folder)
    info = json.loads((tmp_path / "models" / INFO_FILE).read_text())
    assert info["pid"] == proc.pid and info["host"] == socket.gethostname() and info["command"] == " ".join(sys.argv)
    with pytest.raises(OutputFolderInUse) as err:
        OutputFolderLock(folder).attach(_engine())
    msg = str(err.value)
    assert folder in msg and f"PID {proc.pid}" in msg and f"host {socket.gethostname()}" in msg
    assert f"started {info['started']}" in msg and "other output folders" in msg

    # the holder finishes normally: its lock files are gone and the folder can be locked again, with no warning
    assert proc.finish() == 0
    assert os.listdir(folder) == []
    lock = OutputFolderLock(folder)
    lock.acquire()
    assert lock.held and json.loads((tmp_path / "models" / INFO_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert os.listdir(folder) == []


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    folder = str(tmp_path / "out")
    proc = holder(folder)
    proc.kill()
    assert sorted(os.listdir(folder)) == [LOCK_FILE, INFO_FILE]  # a killed run cannot clean up
    engine = _engine()
    lock = OutputFolderLock(folder)
    with caplog.at_level(logging.WARNING):
        lock.attach(engine)
    held_at_completed = []  # a handler attached after the lock, e.g. the final model.pt saver, still runs locked
    engine.add_event_handler(Events.COMPLETED, lambda e: held_at_completed.append(lock.held))
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"PID {proc.pid}" in warning and "no longer running" in warning and folder in warning
    assert json.loads((tmp_path / "out" / INFO_FILE).read_text())["pid"] == os.getpid()
    engine.run([0, 1], max_epochs=1)  # released when the run completes, after the other COMPLETED handlers
    assert held_at_completed == [True] and not lock.held and os.listdir(folder) == []


def test_live_pid_on_this_host_refuses_even_without_flock(tmp_path):
    """On a file system where flock is not enforced, the PID in the lock's record still names a running holder."""
    folder = tmp_path / "models"
    folder.mkdir()
    record = {"pid": os.getppid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", "command": "x"}
    (folder / INFO_FILE).write_text(json.dumps(record))
    with pytest.raises(OutputFolderInUse, match=f"PID {os.getppid()} on host"):
        OutputFolderLock(str(folder)).acquire()
    assert json.loads((folder / INFO_FILE).read_text()) == record  # left as it was


def test_all_or_none_and_hold_until_exit(tmp_path, holder):
    free, taken = str(tmp_path / "free"), str(tmp_path / "taken")
    proc = holder(taken)
    with pytest.raises(OutputFolderInUse, match=f"PID {proc.pid}"):
        OutputFolderLock([free, taken]).acquire()
    assert os.listdir(free) == []  # the folder locked first is released again
    assert proc.finish() == 0

    lock = OutputFolderLock([free, taken], hold_until_exit=True)
    engine = _engine()
    lock.attach(engine)
    engine.run([0], max_epochs=1)
    assert lock.held and sorted(os.listdir(free)) == [LOCK_FILE, INFO_FILE]  # kept after the run
    lock.release()
    assert not lock.held and os.listdir(free) == [] and os.listdir(taken) == []
    OutputFolderLock(free, enabled=False).attach(_engine())
    assert os.listdir(free) == []


def test_dtc_bundle_refuses_a_second_training_in_the_same_folder(tmp_path, holder, tiny_brain_dataset):
    """The DTC train config: the running training's lock makes the second one fail as its trainer is built, before it
    writes a file (no model.pt, no split.json, no learning curve)."""
    bundle = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
    ckpt_dir, out_dir = str(tmp_path / "models"), str(tmp_path / "outputs")
    proc = holder(out_dir)
    wf = ConfigWorkflow(
        config_file=os.path.join(bundle, "configs", "train.json"),
        meta_file=os.path.join(bundle, "configs", "metadata.json"),
        workflow_type="train",
        bundle_root=bundle,
        dataset_dir=tiny_brain_dataset,
        ckpt_dir=ckpt_dir,
        output_dir=out_dir,
        roi_size=[32, 32, 32],
        num_epochs=1,
        epoch_length=1,
        **{"network_def#features": 8},
    )
    wf.initialize()
    with pytest.raises(Exception) as err:
        wf.run()
    chain = exception_messages(err.value)
    expected = f"{out_dir} is in use by another training run: PID {proc.pid} on host {socket.gethostname()}"
    assert any(expected in m for m in chain), chain
    assert os.listdir(ckpt_dir) == []  # the ckpt folder was locked first and released again; nothing written
    assert sorted(os.listdir(out_dir)) == [LOCK_FILE, INFO_FILE]  # only the holder's lock
