"""Helpers shared by the benchmark scripts (run them from the repository root: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

__all__ = ["read_json", "run_stage_process"]


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or ``None`` when the file does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_stage_process(script: str, spec_path: str, log_path: str, threads: int, name: str) -> tuple[float, float]:
    """
    Run ``python script --stage spec_path`` in a fresh process with ``threads`` BLAS/OpenMP threads, its output in
    ``log_path``; return its wall seconds and peak RSS in MB (``os.wait4``, Linux). A failed stage stops the
    benchmark with the end of its log; an interrupted benchmark kills the stage.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(script), "--stage", spec_path], env=env, stdout=log, stderr=log
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if code != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-25:])
        raise SystemExit(f"stage {name} failed (exit {code}); end of {log_path}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024.0  # Linux: kilobytes
