"""Datalists, validation, the default data and multi-stream loaders."""

from .datalist import (
    check_duplicates,
    label_values_of,
    list_images,
    load_semisupervised_datalist,
    load_test_datalist,
    partition_labeled,
    split_labeled_unlabeled,
)
from .default_data import (
    DEFAULT_DATASET,
    TISSUE_DATASET,
    TISSUE_SLICES_DATASET,
    build_brain_t1_dataset,
    build_mni152_tissue_dataset,
    build_mni152_tissue_slices_dataset,
    default_cache_dir,
    default_dataset_dir,
)
from .describe import describe_dataset
from .group_sampler import GroupSampler, build_groups, tag_sets
from .loaders import MultiStreamLoader, TwoStreamLoader, subset_loaders
from .microscopy import NUCLEI_DATASET, build_nuclei_tiles_dataset
from .schedule import run_length
from .slice_tags import build_slice_tag_dataset, tag_classes
from .tagging import TAGGED_NUCLEI_DATASET, build_tagged_nuclei_dataset, load_tagged_datalist, parse_class_labels
from .validation import (
    GZIP_MAX_RATIO,
    DatasetError,
    check_dicom_series,
    check_file_integrity,
    validate_case,
    validate_datalist,
    validate_images,
)

__all__ = [
    "GroupSampler",
    "build_groups",
    "tag_sets",
    "DEFAULT_DATASET",
    "DatasetError",
    "GZIP_MAX_RATIO",
    "MultiStreamLoader",
    "NUCLEI_DATASET",
    "TAGGED_NUCLEI_DATASET",
    "TISSUE_DATASET",
    "TISSUE_SLICES_DATASET",
    "TwoStreamLoader",
    "build_brain_t1_dataset",
    "build_mni152_tissue_dataset",
    "build_mni152_tissue_slices_dataset",
    "build_nuclei_tiles_dataset",
    "build_slice_tag_dataset",
    "build_tagged_nuclei_dataset",
    "check_dicom_series",
    "check_duplicates",
    "check_file_integrity",
    "default_cache_dir",
    "default_dataset_dir",
    "describe_dataset",
    "label_values_of",
    "list_images",
    "load_semisupervised_datalist",
    "load_tagged_datalist",
    "load_test_datalist",
    "parse_class_labels",
    "partition_labeled",
    "run_length",
    "tag_classes",
    "split_labeled_unlabeled",
    "subset_loaders",
    "validate_case",
    "validate_datalist",
    "validate_images",
]
