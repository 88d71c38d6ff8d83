"""Datalists, validation, the default data and multi-stream loaders."""

from .datalist import (
    list_images,
    load_semisupervised_datalist,
    load_test_datalist,
    partition_labeled,
    split_labeled_unlabeled,
)
from .default_data import (
    DEFAULT_DATASET,
    TISSUE_DATASET,
    build_brain_t1_dataset,
    build_mni152_tissue_dataset,
    default_cache_dir,
    default_dataset_dir,
)
from .describe import describe_dataset
from .loaders import MultiStreamLoader, TwoStreamLoader, subset_loaders
from .microscopy import NUCLEI_DATASET, build_nuclei_tiles_dataset
from .schedule import run_length
from .tagging import TAGGED_NUCLEI_DATASET, build_tagged_nuclei_dataset, load_tagged_datalist, parse_class_labels
from .validation import DatasetError, validate_case, validate_datalist

__all__ = [
    "DEFAULT_DATASET",
    "DatasetError",
    "MultiStreamLoader",
    "NUCLEI_DATASET",
    "TAGGED_NUCLEI_DATASET",
    "TISSUE_DATASET",
    "TwoStreamLoader",
    "build_brain_t1_dataset",
    "build_mni152_tissue_dataset",
    "build_nuclei_tiles_dataset",
    "build_tagged_nuclei_dataset",
    "default_cache_dir",
    "default_dataset_dir",
    "describe_dataset",
    "list_images",
    "load_semisupervised_datalist",
    "load_tagged_datalist",
    "load_test_datalist",
    "parse_class_labels",
    "partition_labeled",
    "run_length",
    "split_labeled_unlabeled",
    "subset_loaders",
    "validate_case",
    "validate_datalist",
]
