"""Helpers shared by the benchmark scripts (run them from the repository root: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import json
import os

from monai_wsss.utils import atomic_path

__all__ = ["atomic_write_json", "read_json"]


def atomic_write_json(obj: dict, path: str) -> None:
    """Write ``obj`` as indented JSON through a temporary file, so an interrupted run never leaves half a file."""
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or ``None`` when the file does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
