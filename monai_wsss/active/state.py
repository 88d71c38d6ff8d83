"""Annotation state of an active-learning loop (atomic, resumable) and the annotators that fill it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

from ..utils import atomic_write_json, atomic_write_nifti

__all__ = ["AnnotationState", "SimulatedAnnotator", "FileAnnotator", "check_label_values"]

LABELS_FILE = "labels.nii.gz"
QUERIES_FILE = "queries.json"


def _strip_channel(arr: NdarrayOrTensor, ndim: int) -> np.ndarray:
    """Drop a leading channel axis of size 1 when the array has one more axis than ``ndim``."""
    a = convert_to_numpy(arr)
    return a[0] if a.ndim == ndim + 1 and a.shape[0] == 1 else a


_INT16 = np.iinfo(np.int16)


def check_label_values(
    arr: np.ndarray, source: str, num_classes: int | None = None, ignore_value: int | None = -1
) -> np.ndarray:
    """
    Check a label array BEFORE it is cast to the ``int16`` of an annotation state, and return it as ``int16``: the
    dtype must be boolean, integer, or floating with only finite, integral values; every value must be a class
    ``0 .. num_classes - 1`` or ``ignore_value`` (without ``num_classes``: any value ``int16`` holds). A cast
    alone would turn 65535 into -1 (an unlabelled voxel) and 65537 into 1 (a class) without a word.

    Args:
        arr: the labels.
        source: what the labels are (a file name), for the message.
        num_classes: number of classes; None checks only that the values fit ``int16``.
        ignore_value: the value of unlabelled voxels, allowed besides the classes; None allows none.

    Raises:
        ValueError: a dtype that is not a label dtype, non-integral or non-finite values, or values outside the
            classes (the message names ``source`` and up to 10 of the bad values with their voxel counts).
    """
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.int16)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(f"{source}: {int((~finite).sum())} voxels are NaN or infinite; expected class indices.")
        fractional = arr != np.round(arr)
        if fractional.any():
            bad = np.unique(arr[fractional])
            raise ValueError(
                f"{source}: non-integer label values {_list(bad)} ({int(fractional.sum())} voxels, dtype "
                f"{arr.dtype}); expected class indices."
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{source}: dtype {arr.dtype} is not a label dtype (integer, or float with integer values).")
    values, counts = np.unique(arr, return_counts=True)
    if num_classes is not None:
        allowed = set(range(int(num_classes))) | (set() if ignore_value is None else {int(ignore_value)})
        what = f"the classes 0..{int(num_classes) - 1}" + (
            "" if ignore_value is None else f" and the ignore value {int(ignore_value)}"
        )
    else:
        allowed, what = None, f"the range of int16 ({_INT16.min}..{_INT16.max})"
    bad = [
        (v, c)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True)
        if (allowed is not None and v not in allowed) or not _INT16.min <= v <= _INT16.max
    ]
    if bad:
        shown = ", ".join(f"{_num(v)} ({c} voxels)" for v, c in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise ValueError(f"{source}: label values outside {what}: {shown}. Fix the file and rerun.")
    return arr.astype(np.int16)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _list(values: np.ndarray) -> str:
    return "[" + ", ".join(_num(v) for v in values[:10].tolist()) + (" ..." if len(values) > 10 else "") + "]"


class AnnotationState:
    """
    Everything the annotator has given so far, kept on disk so that a crashed or stopped active-learning loop
    resumes with nothing lost. Files in ``root_dir``:

    - ``labels.nii.gz``: the accumulated partial label volume (int16), ``ignore_value`` (default -1) where no label
      has been given yet; :py:attr:`annotated` is the mask of labelled voxels.
    - ``queries.json``: a JSON list with one record per query: ``round``, ``region_ids`` and/or ``plane`` parameters,
      ``voxels`` (number of voxels labelled by it), ``timestamp`` (Unix seconds) and any extra fields given.

    Both files are rewritten atomically (temporary file + ``os.replace``) after every :py:meth:`update`; the labels
    are written first, so the queries file never records an annotation that is missing from the labels.

    Args:
        root_dir: folder of the state files (created).
        shape: spatial shape of the label volume (2D or 3D).
        affine: NIfTI affine of the volume (identity if None).
        ignore_value: value of unannotated voxels.
        num_classes: number of classes; when given, :py:meth:`update` and :py:meth:`load` refuse labels outside
            ``0 .. num_classes - 1`` (and ``ignore_value``) instead of recording them.
    """

    def __init__(
        self,
        root_dir: str,
        shape: Sequence[int],
        affine: np.ndarray | None = None,
        ignore_value: int = -1,
        num_classes: int | None = None,
    ) -> None:
        self.root_dir = root_dir
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        self.ignore_value = int(ignore_value)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.labels = np.full(self.shape, self.ignore_value, dtype=np.int16)
        self.queries: list[dict] = []
        os.makedirs(root_dir, exist_ok=True)

    @property
    def labels_path(self) -> str:
        return os.path.join(self.root_dir, LABELS_FILE)

    @property
    def queries_path(self) -> str:
        return os.path.join(self.root_dir, QUERIES_FILE)

    @property
    def annotated(self) -> np.ndarray:
        """Boolean mask of the voxels that carry a label."""
        return self.labels != self.ignore_value

    @property
    def n_annotated(self) -> int:
        return int(self.annotated.sum())

    @property
    def next_round(self) -> int:
        return 1 + max((int(q["round"]) for q in self.queries), default=-1)

    @classmethod
    def exists(cls, root_dir: str) -> bool:
        return os.path.isfile(os.path.join(root_dir, LABELS_FILE)) and os.path.isfile(
            os.path.join(root_dir, QUERIES_FILE)
        )

    @classmethod
    def load(cls, root_dir: str, ignore_value: int = -1, num_classes: int | None = None) -> AnnotationState:
        """
        Resume from the files written by :py:meth:`save`.

        Raises:
            ValueError: the labels file holds values outside the classes (see :py:func:`check_label_values`).
        """
        path = os.path.join(root_dir, LABELS_FILE)
        img = nib.load(path)
        labels = check_label_values(np.asarray(img.dataobj), f"annotation state {path}", num_classes, ignore_value)
        state = cls(root_dir, labels.shape, img.affine, ignore_value, num_classes)
        state.labels = labels
        with open(os.path.join(root_dir, QUERIES_FILE)) as f:
            state.queries = list(json.load(f))
        return state

    @classmethod
    def load_or_create(
        cls,
        root_dir: str,
        shape: Sequence[int],
        affine: np.ndarray | None = None,
        ignore_value: int = -1,
        num_classes: int | None = None,
    ) -> AnnotationState:
        """:py:meth:`load` when the files exist (checking the shape), otherwise a fresh, saved state."""
        if cls.exists(root_dir):
            state = cls.load(root_dir, ignore_value, num_classes)
            if state.shape != tuple(shape):
                raise ValueError(
                    f"annotation state in {root_dir} has shape {state.shape}, expected {tuple(int(s) for s in shape)}."
                )
            return state
        state = cls(root_dir, shape, affine, ignore_value, num_classes)
        state.save()
        return state

    def save(self) -> None:
        atomic_write_nifti(self.labels_path, self.labels, self.affine)
        atomic_write_json(self.queries_path, self.queries, indent=1)

    def update(
        self,
        round_index: int,
        query_mask: NdarrayOrTensor,
        labels: NdarrayOrTensor,
        region_ids: Sequence[int] | None = None,
        plane: dict | None = None,
        **extra,
    ) -> dict:
        """
        Record one answered query: copy ``labels`` into the volume where ``query_mask`` is set and the answer is not
        ``ignore_value``, append the query record, and save both files. Returns the record. Nothing is recorded
        unless the answer is valid.

        Raises:
            ValueError: shapes differ, or the answer inside the query holds values that are not labels (see
                :py:func:`check_label_values`; ``num_classes`` when the state has it).
        """
        mask = _strip_channel(query_mask, len(self.shape)).astype(bool)
        lab = _strip_channel(labels, len(self.shape))
        if mask.shape != self.shape or lab.shape != self.shape:
            raise ValueError(f"query mask {mask.shape} and labels {lab.shape} must both have shape {self.shape}.")
        answer = check_label_values(
            lab[mask], f"answer to round {int(round_index)} in {self.root_dir}", self.num_classes, self.ignore_value
        )
        given = mask.copy()
        given[mask] = answer != self.ignore_value
        self.labels[given] = answer[answer != self.ignore_value]
        record = {
            "round": int(round_index),
            "region_ids": None if region_ids is None else [int(r) for r in region_ids],
            "plane": plane,
            "voxels": int(given.sum()),
            "timestamp": time.time(),
            **extra,
        }
        self.queries.append(record)
        self.save()
        return record


class SimulatedAnnotator:
    """
    Simulated oracle for experiments: reveals the ground truth inside the query mask and returns ``ignore_value``
    elsewhere.

    Args:
        ground_truth: integer label volume (2D or 3D spatial; a 4D array with a leading channel of 1 is squeezed).
        ignore_value: value returned outside the query.
    """

    def __init__(self, ground_truth: NdarrayOrTensor, ignore_value: int = -1) -> None:
        gt = convert_to_numpy(ground_truth)
        self.ground_truth = gt[0] if gt.ndim == 4 and gt.shape[0] == 1 else gt
        self.ignore_value = int(ignore_value)

    def __call__(self, query_mask: NdarrayOrTensor) -> np.ndarray:
        mask = _strip_channel(query_mask, self.ground_truth.ndim).astype(bool)
        if mask.shape != self.ground_truth.shape:
            raise ValueError(f"query mask {mask.shape} does not match the ground truth {self.ground_truth.shape}.")
        return np.where(mask, self.ground_truth, self.ignore_value).astype(np.int16)


class FileAnnotator:
    """
    A person annotates the queried patch in an external tool and saves a label file (NIfTI, or ``.npy``); this reads
    it back, checks its shape, dtype and values (before any cast: :py:func:`check_label_values`) and keeps the
    labels inside the query mask (voxels marked ``ignore_value`` in the file stay unannotated).

    Args:
        shape: expected spatial shape of the label files.
        ignore_value: value of unlabelled voxels, in the file and in the output.
        num_classes: number of classes; the file may hold only ``0 .. num_classes - 1`` and ``ignore_value``.
            None checks only that the values fit ``int16``.
    """

    def __init__(self, shape: Sequence[int], ignore_value: int = -1, num_classes: int | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.ignore_value = int(ignore_value)
        self.num_classes = None if num_classes is None else int(num_classes)

    def read(self, path: str) -> np.ndarray:
        """
        Read a label file and return it as ``int16``.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file cannot be read, its shape is not ``shape`` (the message names the file and both
                shapes), or its dtype or values are not labels of the classes (the message names the file and the
                bad values).
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"label file {path} does not exist.")
        try:
            arr = np.load(path, allow_pickle=False) if path.endswith(".npy") else np.asarray(nib.load(path).dataobj)
        except Exception as e:
            raise ValueError(f"label file {path} cannot be read as a label array ({type(e).__name__}: {e}).") from e
        if arr.ndim == len(self.shape) + 1 and arr.shape[0] == 1:
            arr = arr[0]
        if tuple(arr.shape) != self.shape:
            raise ValueError(
                f"label file {path} has shape {tuple(arr.shape)}, but the volume being annotated has shape "
                f"{self.shape}."
            )
        return check_label_values(arr, f"label file {path}", self.num_classes, self.ignore_value)

    def __call__(self, query_mask: NdarrayOrTensor, path: str) -> np.ndarray:
        labels = self.read(path)
        mask = _strip_channel(query_mask, len(self.shape)).astype(bool)
        if mask.shape != self.shape:
            raise ValueError(f"query mask {mask.shape} does not match the volume shape {self.shape}.")
        return np.where(mask, labels, self.ignore_value).astype(np.int16)
