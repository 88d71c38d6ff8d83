"""Semi-supervised datalists from Medical Segmentation Decathlon style ``dataset.json`` files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from monai.data import load_decathlon_datalist, partition_dataset

from monai_wsss.data.validation import DatasetError, read_datalist, validate_datalist, validate_images

__all__ = [
    "check_duplicates",
    "label_values_of",
    "list_images",
    "load_semisupervised_datalist",
    "load_test_datalist",
    "partition_labeled",
    "split_labeled_unlabeled",
]

LABELED, UNLABELED, VALIDATION, TEST = "labeled", "unlabeled", "validation", "test"
SPLIT_ORDERS = ("seeded", "ordered")


def _shuffle_of(split_order: str | None, shuffle: bool) -> bool:
    """``split_order`` ("seeded": a seeded shuffle, "ordered": datalist order) when given, else ``shuffle``."""
    if split_order is None:
        return bool(shuffle)
    if split_order not in SPLIT_ORDERS:
        raise ValueError(f"`split_order` must be one of {list(SPLIT_ORDERS)}, got {split_order!r}.")
    return split_order == "seeded"


def _read_list(path: str, key: str, base_dir: str) -> list[dict]:
    return load_decathlon_datalist(path, is_segmentation=True, data_list_key=key, base_dir=base_dir)


def check_duplicates(
    path: str,
    lists: dict[str, Sequence[dict]],
    image_key: str = "image",
    held_out: str = "test",
    may_share: Sequence[str] = ("validation",),
) -> None:
    """
    Refuse a datalist in which one image (same real path) appears twice in one list, or appears in the
    ``held_out`` list (``test``) and in a training list: a test case that is also trained on makes every test
    score optimistic. The ``may_share`` lists (``validation``) may hold training or test cases: a validation list
    drawn from them only makes the validation curve or the model selection optimistic, and some setups do it on
    purpose.

    Args:
        path: the datalist file, named in the error.
        lists: list name -> items (with absolute ``image_key`` paths).
        image_key: key of the image path in each item.
        held_out: the list that must share no image with the training lists.
        may_share: lists exempt from the overlap check (repeats inside them are still refused).

    Raises:
        DatasetError: one line per repeated image, naming it and the lists that hold it.
    """
    where: dict[str, list[str]] = {}
    for name, items in lists.items():
        for item in items:
            image = item.get(image_key)
            if isinstance(image, str):
                where.setdefault(os.path.realpath(image), []).append(name)
    problems = []
    for image, names in where.items():
        trained = set(names) - {held_out} - set(may_share)
        overlap = held_out in names and bool(trained)
        if len(names) == len(set(names)) and not overlap:
            continue
        both = f": a case in both {', '.join(sorted(trained))} and {held_out}" if overlap else ""
        problems.append(f"{image}: listed {len(names)} times ({', '.join(repr(n) for n in names)})" + both)
    if problems:
        raise DatasetError(
            f"{path}: {len(problems)} repeated case(s):\n  " + "\n  ".join(problems),
            hint=f"list each case once, and keep {held_out} cases out of the training lists.",
        )


def label_values_of(path: str, meta: dict, items: Sequence[dict], label_key: str = "label") -> list[int] | None:
    """
    The label values declared by a datalist's ``labels`` map (``{"0": "background", "1": ...}``), required as soon
    as one item has a label file (label values are checked against it and name the classes); ``None`` when no item
    has a label.

    Raises:
        DatasetError: items have labels but the datalist has no ``labels`` map, or its keys are not integers.
    """
    labels = meta.get("labels")
    if not any(d.get(label_key) for d in items):
        return None if not isinstance(labels, dict) else _int_keys(path, labels)
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(
            f"{path}: cases have label files but the datalist has no 'labels' map.",
            hint='add e.g. "labels": {"0": "background", "1": "tumour"} naming every label value.',
        )
    return _int_keys(path, labels)


def _int_keys(path: str, labels: dict) -> list[int]:
    try:
        return [int(k) for k in labels]
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: 'labels' keys must be integers, got {sorted(labels)}.") from e


def split_labeled_unlabeled(
    items: Sequence[dict],
    num_labeled: int | None = None,
    labeled_fraction: float | None = None,
    seed: int = 0,
    shuffle: bool = True,
    label_key: str = "label",
) -> tuple[list[dict], list[dict]]:
    """
    Keep the labels of ``num_labeled`` cases (or ``labeled_fraction`` of them) and drop the labels of the rest,
    so that a fully labelled set can simulate the semi-supervised setting.

    Args:
        items: labelled cases (dicts with ``label_key``).
        num_labeled: how many cases keep their label. Mutually exclusive with ``labeled_fraction``.
        labeled_fraction: fraction of cases (rounded, at least 1) that keep their label.
        seed: seed of the shuffle, so that a split is reproducible.
        shuffle: when False, the first cases (in datalist order) keep their labels.
        label_key: key of the label in each item.

    Returns:
        ``(labeled, unlabeled)``; the unlabelled items no longer have ``label_key``.
    """
    if num_labeled is not None and labeled_fraction is not None:
        raise ValueError(
            f"Incompatible values: give one of `num_labeled`={num_labeled} and `labeled_fraction`={labeled_fraction}."
        )
    items = list(items)
    if num_labeled is None and labeled_fraction is None:
        return items, []
    if labeled_fraction is not None:
        if not 0.0 < labeled_fraction <= 1.0:
            raise ValueError(f"`labeled_fraction` must be in (0, 1], got {labeled_fraction}.")
        num_labeled = max(1, int(round(labeled_fraction * len(items))))
    if not 1 <= num_labeled <= len(items):  # type: ignore[operator]
        raise ValueError(f"`num_labeled` must be between 1 and the {len(items)} labelled cases, got {num_labeled}.")
    order = np.random.RandomState(seed).permutation(len(items)) if shuffle else np.arange(len(items))
    labeled = [items[i] for i in sorted(order[:num_labeled])]
    unlabeled = [{k: v for k, v in items[i].items() if k != label_key} for i in sorted(order[num_labeled:])]
    return labeled, unlabeled


def partition_labeled(
    items: Sequence[dict],
    num_subsets: int = 2,
    overlap: float = 0.0,
    seed: int = 0,
    shuffle: bool = True,
    split_order: str | None = None,
) -> list[list[dict]]:
    """
    Split labelled cases into ``num_subsets`` training subsets, one per ensemble member (co-training, Peng et al.,
    Pattern Recognition 2020): ``round(overlap * N)`` cases are shared by every subset and the others are dealt to
    the subsets disjointly by :py:func:`monai.data.partition_dataset` (seeded shuffle; sizes differ by at most one).
    ``overlap=0`` gives disjoint subsets, ``overlap=1`` gives every member all labelled cases.

    Args:
        items: labelled cases.
        num_subsets: number of subsets (S >= 2).
        overlap: fraction of the cases shared by all subsets, in [0, 1].
        seed: seed of the shuffle.
        shuffle: when False, the shared cases are the first ones and the rest is dealt in datalist order.
        split_order: ``"seeded"`` (shuffle) or ``"ordered"`` (datalist order); when given, it overrides ``shuffle``
            (the bundles' documented ``split_order`` key).

    Raises:
        ValueError: S < 2, overlap outside [0, 1], too few cases to give every subset at least one, or an unknown
            ``split_order``.
    """
    shuffle = _shuffle_of(split_order, shuffle)
    items = list(items)
    if int(num_subsets) < 2:
        raise ValueError(f"`num_subsets` (the number of ensemble members, num_models) must be >= 2, got {num_subsets}.")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"`overlap` must be in [0, 1], got {overlap}.")
    n_shared = int(round(overlap * len(items)))
    if n_shared == 0 and len(items) < num_subsets:
        raise ValueError(
            f"{len(items)} labelled case(s) cannot give {num_subsets} disjoint non-empty subsets; "
            "label more cases, use fewer members or a positive `overlap`."
        )
    order = np.random.RandomState(seed).permutation(len(items)) if shuffle else np.arange(len(items))
    shared = [items[i] for i in sorted(order[:n_shared])]
    rest = [items[i] for i in sorted(order[n_shared:])]
    if len(rest) < num_subsets:  # fewer leftovers than members: the first members get one each
        parts = [rest[i : i + 1] for i in range(num_subsets)]
    else:
        parts = partition_dataset(rest, num_partitions=num_subsets, shuffle=shuffle, seed=seed, even_divisible=False)
    return [shared + list(p) for p in parts]


def load_semisupervised_datalist(
    dataset_dir: str,
    datalist: str = "dataset.json",
    num_labeled: int | None = None,
    labeled_fraction: float | None = None,
    val_fraction: float = 0.2,
    fully_labeled_fraction: float | None = 0.2,
    seed: int = 0,
    shuffle: bool = True,
    split_order: str | None = None,
    validate: bool = True,
    label_values: Sequence[int] | None = None,
    label_transform: Callable | None = None,
    spatial_dims: int | None = None,
    channels: int | None = None,
    labeled_key: str = "training",
    unlabeled_key: str = "unlabeled",
    validation_key: str = "validation",
    test_key: str = "test",
) -> dict[str, list[dict]]:
    """
    Read a decathlon-style ``dataset.json`` into the four lists a semi-supervised bundle needs.

    - ``labeled``: cases of ``labeled_key`` that have a ``label``;
    - ``unlabeled``: cases of ``labeled_key`` without a ``label``, plus the ``unlabeled_key`` list;
    - ``validation``: the ``validation_key`` list if the file has one; otherwise, for a set with no unlabelled case
      (a fully labelled set such as a decathlon task), a seeded hold-out of ``val_fraction`` of the labelled cases
      (at least one case when there are three or more);
    - ``test``: the ``test_key`` list (cases with or without labels), empty when absent.

    Then ``num_labeled`` / ``labeled_fraction`` keep the labels of a seeded subset of the remaining labelled cases
    and move the others to ``unlabeled``. When neither is given and the set has no unlabelled case,
    ``fully_labeled_fraction`` (default 0.2, the DTC paper's 16 of 80 scans) is used, so any decathlon folder trains
    semi-supervised with one ``dataset_dir`` override. Paths are resolved against ``dataset_dir`` by
    :py:func:`monai.data.load_decathlon_datalist`.

    Args:
        dataset_dir: folder that holds the datalist; relative paths in it are relative to this folder.
        datalist: file name (or absolute path) of the datalist.
        num_labeled: number of cases that keep their label; ``None`` keeps all.
        labeled_fraction: alternative to ``num_labeled``.
        val_fraction: hold-out fraction for fully labelled sets without a validation list; 0 disables it.
        fully_labeled_fraction: labelled fraction used for a fully labelled set when neither ``num_labeled`` nor
            ``labeled_fraction`` is given; ``None`` keeps every label (then there is no unlabelled case).
        seed: seed of the hold-out and the labelled split.
        shuffle: when False, hold-out and labelled subset follow datalist order (validation from the end).
        split_order: the bundles' documented switch, overriding ``shuffle`` when given: ``"seeded"`` (a shuffle
            seeded by ``seed``) or ``"ordered"`` (the first ``num_labeled`` cases of the datalist keep their labels;
            the validation hold-out is taken from the end).
        validate: check every file before training (see :py:func:`monai_wsss.data.validate_datalist`).
        label_values: allowed label values; default: the keys of the datalist's ``labels`` field, which is required
            when a case has a label.
        label_transform: applied to each label before its values are checked (e.g. decoding grey-coded masks).
        spatial_dims: spatial dimensions of the bundle's network input (2 or 3); images of another dimension are
            refused. ``None`` skips the check.
        channels: input channels of the bundle's network; ``None`` skips the check.
        labeled_key, unlabeled_key, validation_key, test_key: list names in the file.

    Raises:
        DatasetError: the folder or datalist is missing, labels without a ``labels`` map, an image listed twice (or
            in both training and test), or a file fails validation; the message names the file.
        ValueError: an unknown ``split_order``, or ``val_fraction`` outside [0, 1).
    """
    shuffle = _shuffle_of(split_order, shuffle)
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"{dataset_dir}: dataset folder does not exist.")
    path, meta = read_datalist(dataset_dir, datalist)
    if labeled_key not in meta:
        raise DatasetError(f"{path}: has no '{labeled_key}' list (found keys: {sorted(meta)}).")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction}.")

    training = _read_list(path, labeled_key, dataset_dir) if meta[labeled_key] else []
    extra_unlabeled = _read_list(path, unlabeled_key, dataset_dir) if meta.get(unlabeled_key) else []
    test = _read_list(path, test_key, dataset_dir) if meta.get(test_key) else []
    listed_validation = _read_list(path, validation_key, dataset_dir) if meta.get(validation_key) else []
    check_duplicates(
        path,
        {labeled_key: training, unlabeled_key: extra_unlabeled, validation_key: listed_validation, test_key: test},
    )
    if label_values is None and validate:
        label_values = label_values_of(path, meta, training + listed_validation + test)
    labeled = [d for d in training if d.get("label")]
    unlabeled = [{k: v for k, v in d.items() if k != "label"} for d in training if not d.get("label")]
    unlabeled += extra_unlabeled
    if listed_validation:
        validation = listed_validation
    elif not unlabeled and val_fraction > 0 and len(labeled) >= 3:
        n_val = max(1, int(round(val_fraction * len(labeled))))
        order = np.random.RandomState(seed).permutation(len(labeled)) if shuffle else np.arange(len(labeled))
        held = set(order[-n_val:].tolist())
        validation = [d for i, d in enumerate(labeled) if i in held]
        labeled = [d for i, d in enumerate(labeled) if i not in held]
    else:
        validation = []
    if not labeled:
        raise DatasetError(f"{path}: no labelled case in '{labeled_key}' (a case is labelled when it has a 'label').")
    if num_labeled is None and labeled_fraction is None and not unlabeled:
        labeled_fraction = fully_labeled_fraction
    labeled, moved = split_labeled_unlabeled(labeled, num_labeled, labeled_fraction, seed=seed, shuffle=shuffle)
    unlabeled = moved + unlabeled

    out = {LABELED: labeled, UNLABELED: unlabeled, VALIDATION: validation, TEST: test}
    if validate:
        validate_datalist(
            labeled + unlabeled + validation + test,
            label_values=label_values,
            label_transform=label_transform,
            spatial_dims=spatial_dims,
            channels=channels,
        )
    return out


IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def list_images(
    dataset_dir: str,
    datalist: str = "dataset.json",
    key: str = "test",
    validate: bool = True,
    spatial_dims: int | None = None,
    channels: int | None = None,
    image_key: str = "image",
) -> list[str]:
    """
    Image paths to run inference on: the ``image_key`` files (default the images; ``"label"`` for a network that
    takes masks, such as a mask-to-image generator) of list ``key`` of ``dataset_dir/datalist`` when that list exists;
    otherwise every image file (NIfTI, NRRD, MHA, DICOM) directly inside ``dataset_dir``, sorted. With
    ``validate`` (default), every image is checked as a training image is (:py:func:`validate_images`: it exists,
    is sound to its last byte, readable, finite, and has ``spatial_dims`` / ``channels`` when given) and a list
    that names one image twice is refused.

    Raises:
        DatasetError: the folder does not exist or holds no image; the datalist is unreadable; an image is listed
            twice or fails validation.
    """
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"{dataset_dir}: dataset folder does not exist.")
    path = datalist if os.path.isabs(datalist) else os.path.join(dataset_dir, datalist)
    files: list[str] = []
    if os.path.isfile(path):
        path, meta = read_datalist(dataset_dir, datalist)
        if meta.get(key):
            items = [d for d in _read_list(path, key, dataset_dir) if d.get(image_key)]
            check_duplicates(path, {key: items}, image_key=image_key)
            files = [d[image_key] for d in items]
    if not files:
        files = sorted(
            os.path.join(dataset_dir, f) for f in os.listdir(dataset_dir) if f.lower().endswith(IMAGE_SUFFIXES)
        )
    if not files:
        raise DatasetError(f"{dataset_dir}: no '{key}' list in {datalist} and no image file in the folder.")
    if validate:
        validate_images(files, spatial_dims=spatial_dims, channels=channels)
    return files


def load_test_datalist(
    dataset_dir: str,
    datalist: str = "dataset.json",
    key: str = "test",
    validate: bool = True,
    label_values: Sequence[int] | None = None,
    label_transform: Callable | None = None,
    spatial_dims: int | None = None,
    channels: int | None = None,
) -> list[dict]:
    """
    The labelled cases of list ``key`` (default ``test``) of a decathlon datalist, validated, for evaluation
    (``spatial_dims`` / ``channels``: what the network takes, see :py:func:`load_semisupervised_datalist`).

    Raises:
        DatasetError: no such list, or none of its cases has a label (evaluation needs ground truth); no ``labels``
            map; a case listed twice; a file fails validation.
    """
    path, meta = read_datalist(dataset_dir, datalist)
    items = [d for d in (_read_list(path, key, dataset_dir) if meta.get(key) else []) if d.get("label")]
    if not items:
        raise DatasetError(
            f"{path}: no labelled case in a '{key}' list, so there is nothing to evaluate against; add a '{key}' list "
            "with image and label, or run the inference config alone to segment images."
        )
    check_duplicates(path, {key: items})
    if validate:
        if label_values is None:
            label_values = label_values_of(path, meta, items)
        validate_datalist(
            items,
            label_values=label_values,
            label_transform=label_transform,
            spatial_dims=spatial_dims,
            channels=channels,
        )
    return items
