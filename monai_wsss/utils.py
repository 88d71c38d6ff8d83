"""Atomic writers shared by the whole project: nothing half-written is ever left under the final name.

Every writer takes ``(path, what)`` in that order, writes to a temporary file in the destination folder (created if
needed) and renames it over ``path`` with ``os.replace`` only once the file is complete, so a run killed while writing
leaves either the old file or the new one. Heavy libraries (nibabel, PIL, matplotlib) are imported on use.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = [
    "to_jsonable",
    "atomic_path",
    "default_dir_mode",
    "default_file_mode",
    "output_root_dir",
    "atomic_write_csv",
    "atomic_write_datalist",
    "atomic_write_figure",
    "atomic_write_image",
    "atomic_write_json",
    "atomic_write_nifti",
    "atomic_write_torch",
    "replace_directory",
]


def _suffix(path: str) -> str:
    name = os.path.basename(path)
    return ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]


def _umask() -> int:
    try:  # Linux >= 4.7: read without changing it (os.umask can only be read by setting it, racing other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """
    The permission bits a plain ``open(path, "w")`` gives a new file: ``0o666 & ~umask`` (e.g. ``0o644`` with the
    usual umask 022). Every file the project writes gets them, including those renamed from a ``mkstemp`` temporary
    file (created ``0o600``).
    """
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The permission bits a plain ``os.makedirs`` gives a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


@contextmanager
def atomic_path(path: str, suffix: str | None = None) -> Iterator[str]:
    """
    Yield a temporary file name in the folder of ``path`` (created if needed; same extension, so writers that pick
    the format from it work); when the block ends without error the file replaces ``path`` with ``os.replace``,
    otherwise it is removed and ``path`` is left as it was. The file gets :py:func:`default_file_mode` (the umask is
    honoured, as by ``open``), not ``mkstemp``'s owner-only ``0o600``.

    Example::

        with atomic_path("out/curve.csv") as tmp:
            pandas.DataFrame(rows).to_csv(tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=_suffix(path) if suffix is None else suffix)
    try:
        os.fchmod(fd, default_file_mode())
    finally:
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())  # a writer may have recreated the file (e.g. unlink + write)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def atomic_write_json(path: str, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON (flushed to disk before the rename)."""
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
        _fsync(f)


def atomic_write_datalist(path: str, datalist: Mapping[str, Any]) -> None:
    """
    Write a decathlon-style ``dataset.json``: a mapping whose lists (``training``, ``test``, ...) hold items with
    paths relative to the file's folder (or absolute).

    Raises:
        TypeError: when ``datalist`` is not a mapping, or one of its ``training`` / ``validation`` / ``test`` /
            ``unlabeled`` entries is not a list of dicts.
    """
    if not isinstance(datalist, Mapping):
        raise TypeError(f"{path}: a datalist must be a mapping, got {type(datalist).__name__}.")
    for key in ("training", "validation", "test", "unlabeled"):
        items = datalist.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise TypeError(f"{path}: datalist entry {key!r} must be a list of dicts.")
    atomic_write_json(path, dict(datalist), indent=2)


def atomic_write_torch(path: str, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` (read it back with ``torch.load(path, weights_only=True)``)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_csv(path: str, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> None:
    """Write ``rows`` as CSV with a header (``fields``; default every key of the rows, in order of appearance)."""
    fields = list(fields) if fields is not None else list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        _fsync(f)


def atomic_write_nifti(path: str, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    """Save ``array`` as it is (no channel handling) as NIfTI with ``affine`` (default identity)."""
    import nibabel as nib

    with atomic_path(path, ".nii.gz" if path.endswith(".nii.gz") else ".nii") as tmp:
        nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else np.asarray(affine)), tmp)


def atomic_write_image(path: str, array: np.ndarray | torch.Tensor, affine: np.ndarray | None = None) -> None:
    """
    Write a channel-first array so that MONAI's ``LoadImage(ensure_channel_first=True)`` reads the same array back:
    ``.png`` (2D, 1 or 3 channels, uint8; MONAI's PNG reader puts x first, so the array is transposed for PIL) or
    NIfTI (``.nii``/``.nii.gz``; one channel is stored without its channel axis, several last).

    Raises:
        ValueError: a ``.png`` path with an array that is not 2D with 1 or 3 channels.
    """
    a = np.asarray(torch.as_tensor(array).detach().cpu().numpy())
    if path.endswith(".png"):
        from PIL import Image

        if a.ndim != 3 or a.shape[0] not in (1, 3):
            raise ValueError(f"{path}: PNG needs a 2D image with 1 or 3 channels, got shape {a.shape}.")
        pil = Image.fromarray(np.ascontiguousarray(a[0].T if a.shape[0] == 1 else np.transpose(a, (2, 1, 0))))
        with atomic_path(path, ".png") as tmp:
            pil.save(tmp, format="PNG")
    else:
        atomic_write_nifti(path, a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1), affine)


def atomic_write_figure(path: str, fig: Any, dpi: int = 100) -> None:
    """Save a matplotlib figure (format from the extension, e.g. ``.png``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".bz2", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return os.path.splitext(name)[0]


def output_root_dir(items: Sequence[Any], key: str = "image") -> str:
    """
    The ``data_root_dir`` for MONAI's ``SaveImaged`` that gives every input its own output name: the deepest folder
    that holds all the inputs. ``SaveImaged`` writes each output under its input's folder relative to it, so inputs
    that share a file name in different folders get different outputs (``a/x.nii.gz`` -> ``<output_dir>/a/x_seg...``,
    ``b/x.nii.gz`` -> ``<output_dir>/b/x_seg...``), while inputs that all sit in one folder keep the flat names
    ``<output_dir>/x_seg...``; no output lands outside ``output_dir``.

    Args:
        items: the inference list: file paths, or dicts holding one under ``key`` (others are skipped).
        key: the key of the input file in dict items.

    Raises:
        ValueError: two inputs would still get the same output name (same folder and same name once the
            extension is dropped, e.g. ``x.nii`` and ``x.nii.gz``); the message names both.
    """
    paths = [i.get(key) if isinstance(i, Mapping) else i for i in items]
    paths = [os.path.abspath(str(p)) for p in paths if isinstance(p, (str, os.PathLike))]
    if not paths:
        return ""
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    seen: dict[tuple[str, str], str] = {}
    for p in paths:
        name = (os.path.relpath(os.path.dirname(p), root), _stem(p))
        if name in seen and seen[name] != p:
            raise ValueError(
                f"{seen[name]} and {p} would be saved under the same output name ({_stem(p)}): rename one of them."
            )
        seen[name] = p
    return root


def replace_directory(tmp: str, dest: str) -> None:
    """
    Move the finished folder ``tmp`` to ``dest`` (on the same file system), replacing an existing ``dest``: the old
    folder is first renamed aside and deleted only once the new one is in place. ``tmp`` itself gets the mode a
    plain ``os.makedirs`` would give (``0o777 & ~umask``; a ``tempfile.mkdtemp`` folder is owner-only ``0o700``).
    """
    os.chmod(tmp, default_dir_mode())
    old = None
    if os.path.exists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}-old-", dir=os.path.dirname(os.path.abspath(dest)))
        os.rmdir(old)
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def to_jsonable(value: Any) -> Any:
    """
    ``value`` with NumPy arrays and scalars and torch tensors (also inside dicts, lists, tuples) turned into plain
    Python for JSON, e.g. an evaluator's metrics, whose per-class entries are tensors.
    """
    if isinstance(value, dict):
        return {k: to_jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(x) for x in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
