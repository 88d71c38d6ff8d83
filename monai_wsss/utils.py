"""Atomic file and folder writes shared by the library: nothing half-written is ever left under the final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["atomic_path", "replace_directory"]


def _suffix(path: str) -> str:
    name = os.path.basename(path)
    return ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]


@contextmanager
def atomic_path(path: str, suffix: str | None = None) -> Iterator[str]:
    """
    Yield a temporary file name in the folder of ``path`` (created if needed; same extension, so writers that pick
    the format from it work); when the block ends without error the file replaces ``path`` with ``os.replace``,
    otherwise it is removed and ``path`` is left as it was.

    Example::

        with atomic_path("out/curve.csv") as tmp:
            pandas.DataFrame(rows).to_csv(tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=_suffix(path) if suffix is None else suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def replace_directory(tmp: str, dest: str) -> None:
    """
    Move the finished folder ``tmp`` to ``dest`` (on the same file system), replacing an existing ``dest``: the old
    folder is first renamed aside and deleted only once the new one is in place.
    """
    old = None
    if os.path.exists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}-old-", dir=os.path.dirname(os.path.abspath(dest)))
        os.rmdir(old)
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old:
        shutil.rmtree(old, ignore_errors=True)
