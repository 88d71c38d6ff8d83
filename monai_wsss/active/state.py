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

__all__ = ["AnnotationState", "SimulatedAnnotator", "FileAnnotator"]

LABELS_FILE = "labels.nii.gz"
QUERIES_FILE = "queries.json"


def _strip_channel(arr: NdarrayOrTensor, ndim: int) -> np.ndarray:
    """Drop a leading channel axis of size 1 when the array has one more axis than ``ndim``."""
    a = convert_to_numpy(arr)
    return a[0] if a.ndim == ndim + 1 and a.shape[0] == 1 else a


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
    """

    def __init__(
        self, root_dir: str, shape: Sequence[int], affine: np.ndarray | None = None, ignore_value: int = -1
    ) -> None:
        self.root_dir = root_dir
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        self.ignore_value = int(ignore_value)
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
    def load(cls, root_dir: str, ignore_value: int = -1) -> AnnotationState:
        """Resume from the files written by :py:meth:`save`."""
        img = nib.load(os.path.join(root_dir, LABELS_FILE))
        labels = np.asarray(img.dataobj).astype(np.int16)
        state = cls(root_dir, labels.shape, img.affine, ignore_value)
        state.labels = labels
        with open(os.path.join(root_dir, QUERIES_FILE)) as f:
            state.queries = list(json.load(f))
        return state

    @classmethod
    def load_or_create(
        cls, root_dir: str, shape: Sequence[int], affine: np.ndarray | None = None, ignore_value: int = -1
    ) -> AnnotationState:
        """:py:meth:`load` when the files exist (checking the shape), otherwise a fresh, saved state."""
        if cls.exists(root_dir):
            state = cls.load(root_dir, ignore_value)
            if state.shape != tuple(shape):
                raise ValueError(
                    f"annotation state in {root_dir} has shape {state.shape}, expected {tuple(int(s) for s in shape)}."
                )
            return state
        state = cls(root_dir, shape, affine, ignore_value)
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
        ``ignore_value``, append the query record, and save both files. Returns the record.
        """
        mask = _strip_channel(query_mask, len(self.shape)).astype(bool)
        lab = _strip_channel(labels, len(self.shape))
        if mask.shape != self.shape or lab.shape != self.shape:
            raise ValueError(f"query mask {mask.shape} and labels {lab.shape} must both have shape {self.shape}.")
        given = mask & (lab != self.ignore_value)
        self.labels[given] = lab[given].astype(np.int16)
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
    it back, checks the shape and keeps the labels inside the query mask (voxels marked ``ignore_value`` in the file
    stay unannotated).

    Args:
        shape: expected spatial shape of the label files.
        ignore_value: value of unlabelled voxels, in the file and in the output.
    """

    def __init__(self, shape: Sequence[int], ignore_value: int = -1) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.ignore_value = int(ignore_value)

    def read(self, path: str) -> np.ndarray:
        """Read a label file; a shape other than ``shape`` raises a ``ValueError`` naming the file and both shapes."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"label file {path} does not exist.")
        arr = np.load(path) if path.endswith(".npy") else np.asarray(nib.load(path).dataobj)
        if arr.ndim == len(self.shape) + 1 and arr.shape[0] == 1:
            arr = arr[0]
        if tuple(arr.shape) != self.shape:
            raise ValueError(
                f"label file {path} has shape {tuple(arr.shape)}, but the volume being annotated has shape "
                f"{self.shape}."
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise ValueError(f"label file {path} holds non-integer values; expected class indices.")
        return arr.astype(np.int16)

    def __call__(self, query_mask: NdarrayOrTensor, path: str) -> np.ndarray:
        labels = self.read(path)
        mask = _strip_channel(query_mask, len(self.shape)).astype(bool)
        if mask.shape != self.shape:
            raise ValueError(f"query mask {mask.shape} does not match the volume shape {self.shape}.")
        return np.where(mask, labels, self.ignore_value).astype(np.int16)
