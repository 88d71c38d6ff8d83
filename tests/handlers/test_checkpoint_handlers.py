from __future__ import annotations

import os
import stat
import time

import pytest
import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from monai_wsss.handlers import AtomicCheckpointSaver, DurableDiskSaver, ResumeCheckpointLoader, latest_checkpoint

BATCHES = [torch.linspace(-1, 1, 12).reshape(4, 3) * (i + 1) for i in range(3)]  # fixed data, 3 iterations / epoch


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen: list[int] = []

    def step(engine, batch):
        seen.append(engine.state.iteration)
        opt.zero_grad()
        loss = (model(batch) - 1.0).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    return model, opt, Engine(step), seen


def _touch(path, mtime=None):
    with open(path, "wb") as f:
        f.write(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    assert latest_checkpoint(str(tmp_path / "missing")) is None
    for name in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt", "checkpoint_epoch=9.pt", "model.pt"):
        _touch(tmp_path / name)
    os.mkdir(tmp_path / "checkpoint_epoch=99.pt")  # a folder is not a checkpoint
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint_epoch=10.pt")  # numeric, not lexicographic
    assert latest_checkpoint(str(tmp_path), pattern="model*.pt") == str(tmp_path / "model.pt")
    assert latest_checkpoint(str(tmp_path), pattern="*.nothing") is None


def test_latest_checkpoint_tie_uses_mtime(tmp_path):
    now = time.time()
    _touch(tmp_path / "a_checkpoint_iteration=30.pt", now - 100)
    _touch(tmp_path / "b_checkpoint_iteration=30.pt", now)
    _touch(tmp_path / "c_checkpoint_iteration=7.pt", now + 100)
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "b_checkpoint_iteration=30.pt")


def test_atomic_saver_writes_via_temp_and_rename(tmp_path, monkeypatch):
    model, opt, engine, _ = _setup()
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"model": model, "optimizer": opt, "trainer": engine},
        save_interval=1,
        epoch_level=True,
        n_saved=None,
        save_final=True,
        final_filename="model.pt",
    )
    assert isinstance(saver._interval_checkpoint.save_handler, DurableDiskSaver)
    assert isinstance(saver._final_checkpoint.save_handler, DurableDiskSaver)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((str(src), str(dst), os.path.exists(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    saver.attach(engine)
    engine.run(BATCHES, max_epochs=2)
    names = sorted(os.listdir(tmp_path))
    assert names == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt", "model.pt"]  # no temp file left behind
    assert [os.path.basename(d) for _, d, _ in replaced] == [
        "checkpoint_epoch=1.pt",
        "checkpoint_epoch=2.pt",
        "model.pt",
    ]
    for src, dst, existed in replaced:
        assert os.path.dirname(src) == str(tmp_path) and src != dst and not existed
        assert not os.path.exists(src)
    for name in names:
        assert os.stat(tmp_path / name).st_mode & stat.S_IROTH  # readable by others, unlike a bare temp file
    ckpt = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "trainer"}
    assert ckpt["trainer"]["iteration"] == 6
    torch.testing.assert_close(ckpt["model"]["weight"], model.weight.detach())
    final = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.testing.assert_close(final["model"]["bias"], model.bias.detach())


def test_resume_on_empty_folder_does_nothing(tmp_path):
    model, opt, engine, seen = _setup()
    w0 = model.weight.detach().clone()
    loader = ResumeCheckpointLoader(str(tmp_path), {"model": model, "optimizer": opt, "trainer": engine})
    loader.attach(engine)
    at_start = {}
    engine.add_event_handler(Events.STARTED, lambda e: at_start.update(it=e.state.iteration, w=model.weight.clone()))
    engine.run(BATCHES, max_epochs=1)
    assert loader.path is None
    assert at_start["it"] == 0
    torch.testing.assert_close(at_start["w"].detach(), w0)
    assert seen == [1, 2, 3]


def _first_run(ckpt_dir):
    model, opt, engine, seen = _setup()
    AtomicCheckpointSaver(
        save_dir=str(ckpt_dir),
        save_dict={"model": model, "optimizer": opt, "trainer": engine},
        save_interval=1,
        epoch_level=True,
        n_saved=None,
    ).attach(engine)
    engine.run(BATCHES, max_epochs=2)
    assert seen == [1, 2, 3, 4, 5, 6]
    return model, opt


def test_resume_restores_model_optimizer_and_iteration(tmp_path):
    model1, opt1 = _first_run(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]

    torch.manual_seed(123)
    model2, opt2, engine2, seen2 = _setup()
    with torch.no_grad():
        model2.weight.fill_(5.0)  # differs from the checkpoint
    loader = ResumeCheckpointLoader(str(tmp_path), {"model": model2, "optimizer": opt2, "trainer": engine2})
    loader.attach(engine2)
    at_start = {}

    @engine2.on(Events.STARTED)
    def _record(e):
        at_start["iteration"] = e.state.iteration
        at_start["weight"] = model2.weight.detach().clone()
        at_start["momentum"] = opt2.state[model2.weight]["momentum_buffer"].clone()

    engine2.run(BATCHES, max_epochs=4)
    assert loader.path == str(tmp_path / "checkpoint_epoch=2.pt")
    assert at_start["iteration"] == 6
    torch.testing.assert_close(at_start["weight"], model1.weight.detach())
    torch.testing.assert_close(at_start["momentum"], opt1.state[model1.weight]["momentum_buffer"])
    assert at_start["momentum"].abs().sum() > 0
    assert seen2 == [7, 8, 9, 10, 11, 12]  # exactly the remaining 6 iterations
    assert engine2.state.epoch == 4

    # identical to an uninterrupted 4-epoch run (momentum restored, not restarted)
    model3, _, engine3, _ = _setup()
    engine3.run(BATCHES, max_epochs=4)
    torch.testing.assert_close(model2.weight.detach(), model3.weight.detach())
    torch.testing.assert_close(model2.bias.detach(), model3.bias.detach())


def test_resume_disabled_starts_afresh(tmp_path):
    _first_run(tmp_path)
    model, opt, engine, seen = _setup()
    loader = ResumeCheckpointLoader(str(tmp_path), {"model": model, "trainer": engine}, enabled=False)
    loader.attach(engine)
    engine.run(BATCHES, max_epochs=1)
    assert loader.path is None and seen == [1, 2, 3]


def test_resume_past_max_epochs_raises(tmp_path):
    _first_run(tmp_path)
    _, _, engine, _ = _setup()
    ResumeCheckpointLoader(str(tmp_path), {"trainer": engine}).attach(engine)
    with pytest.raises(ValueError, match="larger than"):
        engine.run(BATCHES, max_epochs=1)  # the checkpoint is at epoch 2


def test_engine_saved_and_restored_by_key(tmp_path):
    """The config path: the saver adds the engine it is attached to, the loader restores into its own engine."""
    model1, opt1, engine1, _ = _setup()
    AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"model": model1, "optimizer": opt1},
        save_interval=1,
        epoch_level=True,
        save_engine_as="trainer",
    ).attach(engine1)
    engine1.run(BATCHES, max_epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)["trainer"]["iteration"] == 6

    model2, opt2, engine2, seen2 = _setup()
    ResumeCheckpointLoader(str(tmp_path), {"model": model2, "optimizer": opt2}).attach(engine2)  # engine by default
    engine2.run(BATCHES, max_epochs=3)
    assert seen2 == [7, 8, 9]

    model3, opt3, engine3, seen3 = _setup()
    ResumeCheckpointLoader(str(tmp_path), {"model": model3, "optimizer": opt3}, load_engine_as=None).attach(engine3)
    engine3.run(BATCHES, max_epochs=1)
    assert seen3 == [1, 2, 3]  # weights restored, iteration count not
