"""Issue 18, item 1: a training process killed with SIGKILL at many points, including inside the checkpoint write,
always leaves a complete checkpoint to resume from; the rerun resumes from the newest complete one, removes the
temporary file the killed write left, and keeps ``n_saved`` (the checkpoints found at resume are rotated out like
new ones). The final weights equal those of a run that was never killed. Each training runs in a forked child
process, killed by a real SIGKILL."""

from __future__ import annotations

import logging
import os
import re
import runpy
import subprocess
import sys
import textwrap
import traceback

import monai.engines  # noqa: F401  (imported before forking, so that each child starts at once)
import torch

from monai_wsss.handlers import remove_stale_temp_files

# A tiny SupervisedTrainer (2 fixed batches per epoch, 6 epochs, a checkpoint every 2 iterations, n_saved=2, the
# final model.pt). ``MODE`` and ``AT`` choose where the process kills itself with SIGKILL:
#   iteration   at the end of iteration AT, before that iteration's checkpoint;
#   serialise   while the checkpoint of iteration AT is being serialised (its temporary file exists, empty);
#   half        with half of the checkpoint of iteration AT written to its temporary file;
#   renamed     just after the checkpoint of iteration AT is renamed in place, before the old one is removed;
#   final       with half of model.pt written (after the last checkpoint);
#   none        not at all.
CHILD = textwrap.dedent(
    """
    import io, logging, os, signal, sys

    import torch
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    import monai_wsss.handlers.checkpoint as ckpt_module
    from monai_wsss.handlers import AtomicCheckpointSaver, ResumeCheckpointLoader

    BATCHES = [
        {"image": torch.linspace(-1, 1, 12).reshape(3, 4) * (i + 1), "label": torch.full((3, 1), float(i))}
        for i in range(2)
    ]


    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


    class Bomb:
        def __reduce__(self):
            die()


    class Trigger:
        \"\"\"Saved with the checkpoints; pickling it kills the process when armed.\"\"\"

        armed = False

        def state_dict(self):
            return {"bomb": Bomb()} if self.armed else {}

        def load_state_dict(self, state):
            pass


    def train(ckpt_dir, mode="none", at=0):
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        trigger = Trigger()
        state = {"half": False, "renamed": False}
        real_save, real_replace = torch.save, os.replace

        def half_save(obj, f, **kw):  # write half of the bytes, then die (a kill in the middle of the write)
            if not state["half"]:
                return real_save(obj, f, **kw)
            buf = io.BytesIO()
            real_save(obj, buf, **kw)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()

        def replace_then_die(src, dst):
            real_replace(src, dst)
            if state["renamed"]:
                die()

        ckpt_module.torch.save = half_save  # the module's own reference to torch
        ckpt_module.os.replace = replace_then_die

        def arm(engine):
            it = engine.state.iteration
            if mode == "iteration" and it == at:
                die()
            trigger.armed = mode == "serialise" and it == at
            state["half"] = mode == "half" and it == at
            state["renamed"] = mode == "renamed" and it == at

        def arm_final(engine):
            state["half"] = mode == "final"

        handlers = [
            ResumeCheckpointLoader(ckpt_dir, {"model": net, "optimizer": opt}),
            AtomicCheckpointSaver(
                save_dir=ckpt_dir,
                save_dict={"model": net, "optimizer": opt, "trigger": trigger},
                save_engine_as="trainer",
                save_interval=2,
                epoch_level=False,
                n_saved=2,
            ),
            AtomicCheckpointSaver(
                save_dir=ckpt_dir, save_dict={"model": net}, save_final=True, final_filename="model.pt"
            ),
        ]
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=6,
            epoch_length=2,
            train_data_loader=BATCHES,
            network=net,
            optimizer=opt,
            loss_function=torch.nn.MSELoss(),
            train_handlers=handlers,
        )
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: print("ran", e.state.iteration, flush=True))
        # arm a write kill when the iteration starts (its checkpoint is saved when it completes); kill at the end
        # of an iteration after that iteration's save handlers, which were attached first (not a save point here)
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: arm(e) if mode != "iteration" else None)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: arm(e) if mode == "iteration" else None)
        # after the last checkpoint (iteration 12) is saved, before model.pt is written at COMPLETED
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=12), arm_final)
        try:
            trainer.run()
        finally:
            ckpt_module.torch.save, ckpt_module.os.replace = real_save, real_replace
        return net


    """
)

RESUME = re.compile(r"Resuming from (\S+): continues after iteration (\d+)")


def _listing(folder: str) -> tuple[list[str], list[str]]:
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [n for n in names if not n.startswith(".")], [n for n in names if n.startswith(".")]


def _run(script: str, ckpt_dir: str, mode: str, at: int = 0) -> tuple[int, str]:
    """Train in a forked child process (the libraries are already imported, so it starts at once); returns its exit
    code (``-9`` after SIGKILL) and everything it printed and logged."""
    log = os.path.join(os.path.dirname(script), f"log_{mode}_{at}.txt")
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = sys.stdout
            logging.root.handlers = [logging.StreamHandler(sys.stdout)]
            logging.root.setLevel(logging.INFO)
            runpy.run_path(script, run_name="child")["train"](ckpt_dir, mode, at)
            print("finished", flush=True)
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stdout.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    with open(log) as f:
        return code, f.read()


def test_sigkill_at_many_points_always_resumes_from_the_last_complete_checkpoint(tmp_path):
    script = str(tmp_path / "child.py")
    with open(script, "w") as f:
        f.write(CHILD)
    ckpt_dir = str(tmp_path / "models")
    # (mode, at, iteration of the checkpoint the NEXT run must resume from, final names present after the kill)
    plan = [
        ("serialise", 4, 2, ["checkpoint_iteration=2.pt"]),
        ("half", 6, 4, ["checkpoint_iteration=2.pt", "checkpoint_iteration=4.pt"]),
        ("renamed", 8, 8, ["checkpoint_iteration=4.pt", "checkpoint_iteration=6.pt", "checkpoint_iteration=8.pt"]),
        # three checkpoints found at resume with n_saved=2: none is removed before a new one is complete
        ("iteration", 9, 8, ["checkpoint_iteration=4.pt", "checkpoint_iteration=6.pt", "checkpoint_iteration=8.pt"]),
        ("final", 0, 12, ["checkpoint_iteration=10.pt", "checkpoint_iteration=12.pt"]),
    ]
    resumed_from = 0  # the first run finds nothing
    for mode, at, next_resume, names_after in plan:
        code, out = _run(script, ckpt_dir, mode, at)
        assert code == -9, (mode, code, out[-3000:])
        ran = [int(n) for n in re.findall(r"^ran (\d+)$", out, flags=re.M)]
        assert ran and ran[0] == resumed_from + 1, (mode, ran[:3], resumed_from)
        m = RESUME.search(out)
        if resumed_from == 0:
            assert m is None and "training starts from iteration 0" in out
        else:
            assert m is not None and int(m.group(2)) == resumed_from, out[-2000:]
            assert os.path.basename(m.group(1)) == f"checkpoint_iteration={resumed_from}.pt"
        final, hidden = _listing(ckpt_dir)
        assert final == names_after, (mode, final)
        # the killed write left its temporary file (and only a kill inside a write does)
        assert len(hidden) == (0 if mode in ("iteration", "renamed") else 1), (mode, hidden)
        for name in final:  # everything under a final name is complete
            state = torch.load(os.path.join(ckpt_dir, name), weights_only=True)
            assert state["trainer"]["iteration"] == int(name.split("=")[1].split(".")[0])
        resumed_from = next_resume

    code, out = _run(script, ckpt_dir, "none")
    assert code == 0 and "finished" in out, out[-3000:]
    m = RESUME.search(out)
    assert m is not None and int(m.group(2)) == 12
    assert not re.findall(r"^ran ", out, flags=re.M)  # nothing left to train: only model.pt is written
    final, hidden = _listing(ckpt_dir)
    assert final == ["checkpoint_iteration=10.pt", "checkpoint_iteration=12.pt", "model.pt"] and hidden == []

    # the weights equal those of a run that was never killed (same code, in this process)
    reference = runpy.run_path(script, run_name="reference")["train"](str(tmp_path / "uninterrupted"))
    killed = torch.load(os.path.join(ckpt_dir, "model.pt"), weights_only=True)  # one object: its state dict
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(killed[key], value)
    assert _listing(str(tmp_path / "uninterrupted")) == (
        ["checkpoint_iteration=10.pt", "checkpoint_iteration=12.pt", "model.pt"],
        [],
    )


def test_only_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        f".ckpt-{dead_pid}-abc.tmp": False,  # left by a killed save: removed
        f".ckpt-{os.getpid()}-abc.tmp": True,  # this process's own write in progress
        f".ckpt-{os.getppid()}-abc.tmp": True,  # a running process
        f"ckpt-{dead_pid}-abc.tmp": True,  # not our pattern
        "tmpab12cd34": True,  # ignite's own temporary name: not ours to remove
        "checkpoint_iteration=2.pt": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temp_files(str(tmp_path))
    assert removed == [str(tmp_path / f".ckpt-{dead_pid}-abc.tmp")]
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, kept in names.items() if kept)
    assert remove_stale_temp_files(str(tmp_path / "missing")) == []
