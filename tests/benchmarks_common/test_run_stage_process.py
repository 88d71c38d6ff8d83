"""The benchmarks' one process launcher (benchmarks/_common.run_stage_process), on tiny real child processes."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from _common import run_stage_process, thread_env  # noqa: E402

CHILD = """
import json, os, sys
flag, spec = sys.argv[1], sys.argv[2]
with open(spec) as f:
    cfg = json.load(f)
print("flag", flag, "threads", os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"])
print("to stderr", file=sys.stderr)
block = bytearray(cfg["mb"] * 1024 * 1024)  # touch the memory so that it counts in the peak RSS
block[::4096] = b"x" * len(block[::4096])
print("done")
sys.exit(cfg["code"])
"""


def _child(tmp_path, code: int = 0, mb: int = 64) -> tuple[str, str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    spec = tmp_path / "spec.json"
    spec.write_text(f'{{"code": {code}, "mb": {mb}}}')
    return str(script), str(spec)


def test_positional_call_runs_stage_logs_and_measures(tmp_path, capsys):
    """The signature cam_seeds.py and pix2pix_augmentation.py use: --stage, threads, output only in the log."""
    script, spec = _child(tmp_path, mb=64)
    log = str(tmp_path / "stage.log")
    seconds, rss = run_stage_process(script, spec, log, 3, "tiny")
    with open(log) as f:
        text = f.read()
    assert "flag --stage threads 3 3" in text and "to stderr" in text and "done" in text
    assert seconds > 0
    assert rss > 64  # the child's own peak (64 MB block + the interpreter), not this process's
    assert "done" not in capsys.readouterr().out


def test_echo_and_flag(tmp_path, capsys):
    script, spec = _child(tmp_path, mb=1)
    log = str(tmp_path / "stage.log")
    run_stage_process(script, spec, log, 1, "tiny", flag="--run", echo=True)
    out = capsys.readouterr().out
    assert "flag --run threads 1 1" in out and "done" in out
    with open(log) as f:
        assert f.read().splitlines() == out.splitlines()


@pytest.mark.parametrize("echo", [False, True])
def test_failed_stage_stops_with_the_end_of_its_log(tmp_path, echo):
    script, spec = _child(tmp_path, code=3, mb=1)
    log = str(tmp_path / "stage.log")
    with pytest.raises(SystemExit) as info:
        run_stage_process(script, spec, log, 1, "broken", echo=echo)
    message = str(info.value)
    assert "stage broken failed (exit 3)" in message and log in message and "done" in message


def test_thread_env_sets_every_blas_variable():
    env = thread_env(5)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "5"
    assert env["PATH"] == os.environ["PATH"]
