"""How the project's MONAI Label app turns MONAI Label's training overrides into ones a monai_wsss bundle reads."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .contract import contract_report

__all__ = ["bundle_train_overrides", "trains_from_dataset_dir"]


def trains_from_dataset_dir(bundle_dir: str) -> bool:
    """Whether MONAI Label's ``train#dataset#data`` cannot reach the bundle's training data: the bundle's
    ``train::dataset`` takes no ``data`` (two streams: labelled + unlabelled), or its ``run`` is not the trainer's
    (the active-learning loop sets the dataset's ``data`` itself every round from ``dataset_dir``)."""
    if contract_report(bundle_dir)["train#dataset#data"] is not None:
        return True
    with open(os.path.join(bundle_dir, "configs", "train.json")) as f:
        run = json.load(f).get("run")
    return run not in (["$@train::trainer.run()"], ["$@train#trainer.run()"])


def bundle_train_overrides(
    overrides: Mapping[str, Any], bundle_dir: str, dataset_dir: str | None, request: Mapping
) -> dict[str, Any]:
    """Rewrite MONAI Label's training overrides for a monai_wsss bundle.

    - ``train#trainer#max_epochs`` becomes ``num_epochs`` (every bundle's trainer reads ``@num_epochs``, and so do
      its schedule summary and lr schedules); a request's ``epoch_length`` / ``val_interval`` are passed on.
    - Where MONAI Label's data lists cannot reach the training data (:py:func:`trains_from_dataset_dir`), the
      ``train#dataset#data`` / ``validate#dataset#data`` overrides are dropped and ``dataset_dir`` (the datastore
      written by :py:func:`write_dataset_folder`) is passed instead; the bundle then splits it as usual.

    Args:
        overrides: MONAI Label's overrides (see :py:func:`train_overrides`).
        bundle_dir: the bundle folder.
        dataset_dir: the datastore as a decathlon folder; required where the data overrides are dropped.
        request: the training request.

    Raises:
        ValueError: the bundle trains from ``dataset_dir`` but it is None.
    """
    out = dict(overrides)
    if "train#trainer#max_epochs" in out:
        out["num_epochs"] = int(out.pop("train#trainer#max_epochs"))
    for key in ("epoch_length", "val_interval"):
        if request.get(key) is not None:
            out[key] = int(request[key])
    if trains_from_dataset_dir(bundle_dir):
        if dataset_dir is None:
            raise ValueError(f"{bundle_dir} trains from `dataset_dir`: write the datastore as a folder first.")
        out.pop("train#dataset#data", None)
        out.pop("validate#dataset#data", None)
        out["dataset_dir"] = dataset_dir
    elif contract_report(bundle_dir)["validate#dataset#data"] is not None:
        out.pop("validate#dataset#data", None)
    return out
