"""Helpers shared by the benchmark scripts (run them from the repository root: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

__all__ = ["read_json", "run_stage_process", "thread_env"]


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or ``None`` when the file does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def thread_env(threads: int) -> dict[str, str]:
    """The current environment with ``threads`` OpenMP / MKL / OpenBLAS threads (what a stage process inherits)."""
    return dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads)
    )


def run_stage_process(
    script: str,
    spec_path: str,
    log_path: str,
    threads: int,
    name: str,
    flag: str = "--stage",
    echo: bool = False,
) -> tuple[float, float]:
    """
    The one process launcher of the benchmarks: run ``python script <flag> spec_path`` in a fresh process with
    ``threads`` BLAS/OpenMP threads, its output in ``log_path`` (and also on this process's stdout with
    ``echo=True``, for long stages whose progress should stay visible); return its wall seconds and peak RSS in MB
    (``os.wait4``, Linux). A failed stage stops the benchmark with the end of its log; an interrupted benchmark kills
    the stage.

    Raises:
        SystemExit: the stage exited with a non-zero status (the message holds the end of its log).
    """
    start = time.perf_counter()
    argv = [sys.executable, os.path.abspath(script), flag, spec_path]
    with open(log_path, "w") as log:
        out = subprocess.PIPE if echo else log
        proc = subprocess.Popen(argv, env=thread_env(threads), stdout=out, stderr=subprocess.STDOUT)
        try:
            if echo:
                for line in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
                    text = line.decode(errors="replace")
                    log.write(text)
                    log.flush()
                    sys.stdout.write(text)
                    sys.stdout.flush()
                proc.stdout.close()  # type: ignore[union-attr]
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
