"""Issue 18, item 5: one file mode for everything the project writes. Files renamed from a ``mkstemp`` temporary
file (owner-only 0600) get the mode a plain ``open`` would give, ``0o666 & ~umask``, under every umask."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from monai_wsss.handlers import AtomicCheckpointSaver, OutputFolderLock
from monai_wsss.handlers.lock import INFO_FILE
from monai_wsss.utils import (
    atomic_path,
    atomic_write_csv,
    atomic_write_figure,
    atomic_write_image,
    atomic_write_json,
    atomic_write_nifti,
    atomic_write_torch,
    default_file_mode,
    replace_directory,
)


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=["umask022", "umask002", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_gives_the_mode_of_a_plain_open(tmp_path, umask):
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    expected = _mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~umask == default_file_mode()

    atomic_write_json(str(tmp_path / "a.json"), {"a": 1})
    atomic_write_csv(str(tmp_path / "a.csv"), [{"a": 1}])
    atomic_write_torch(str(tmp_path / "a.pt"), {"w": torch.zeros(2)})
    atomic_write_nifti(str(tmp_path / "a.nii.gz"), np.zeros((3, 3, 3), np.float32))
    atomic_write_image(str(tmp_path / "a.png"), np.zeros((1, 4, 4), np.uint8))
    with atomic_path(str(tmp_path / "b.txt")) as tmp:
        os.remove(tmp)  # a writer that recreates the file
        with open(tmp, "w") as f:
            f.write("y")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    atomic_write_figure(str(tmp_path / "a.svg"), fig)
    plt.close(fig)

    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(
        save_dir=str(tmp_path / "models"),
        save_dict={"model": net},
        save_final=True,
        final_filename="model.pt",
        save_interval=1,
        n_saved=1,
    ).attach(engine)
    lock = OutputFolderLock(str(tmp_path / "models"), hold_until_exit=True)
    lock.attach(engine)
    engine.run([0], max_epochs=2)
    written = ["a.json", "a.csv", "a.pt", "a.nii.gz", "a.png", "b.txt", "a.svg"]
    written += ["models/model.pt", "models/model_epoch=2.pt", f"models/{INFO_FILE}"]
    modes = {name: oct(_mode(tmp_path / name)) for name in written}
    lock.release()
    assert modes == {name: oct(expected) for name in written}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")]


def test_replaced_directory_gets_the_mode_of_makedirs(tmp_path, umask):
    os.makedirs(tmp_path / "plain")
    tmp = tempfile.mkdtemp(dir=str(tmp_path))
    assert _mode(tmp) == 0o700  # mkdtemp's own mode
    replace_directory(tmp, str(tmp_path / "out"))
    assert _mode(tmp_path / "out") == _mode(tmp_path / "plain") == 0o777 & ~umask
