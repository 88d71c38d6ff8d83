"""Datalists, validation, the default data and two-stream loaders."""

from .datalist import list_images, load_semisupervised_datalist, load_test_datalist, split_labeled_unlabeled
from .default_data import DEFAULT_DATASET, build_brain_t1_dataset, default_cache_dir, default_dataset_dir
from .loaders import TwoStreamLoader
from .validation import DatasetError, validate_case, validate_datalist

__all__ = [
    "DEFAULT_DATASET",
    "DatasetError",
    "TwoStreamLoader",
    "build_brain_t1_dataset",
    "default_cache_dir",
    "default_dataset_dir",
    "list_images",
    "load_semisupervised_datalist",
    "load_test_datalist",
    "split_labeled_unlabeled",
    "validate_case",
    "validate_datalist",
]
