"""What a training run is about to do, said first: bundle, data, split, device and schedule; quiet optional decoders."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence

import torch
from ignite.engine import Events

from ..data.schedule import run_length
from ..utils import atomic_write_json

__all__ = ["RunSummary", "quiet_optional_decoders"]

SPLIT_FILE = "split.json"
_LISTS = ("labeled", "unlabeled", "validation", "test")
_DECODER_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"


def _decoder_notice(record: logging.LogRecord) -> bool:
    return "nvImageCodec" not in str(record.msg)


def _as_bool(name: str, value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"`{name}` must be true or false, got {value!r}.")


def quiet_optional_decoders(verbose: bool | str = False, device: str | torch.device | None = None) -> bool:
    """
    Hide MONAI's notices about the optional GPU DICOM decoder (nvImageCodec, ``NvImgCodecPydicomReader``), which
    every ``LoadImage`` prints when the decoder is not installed, on a run whose ``device`` is not a CUDA device
    (the decoder would not be used there anyway), unless ``verbose``. A bundle calls it first in ``initialize``,
    before any transform is built. ``verbose`` may also be the string a command line passes (``"true"`` /
    ``"false"``, any case). Returns whether the notices are hidden.

    Raises:
        ValueError: ``verbose`` is neither a bool nor one of the strings true / false / 1 / 0 / yes / no.
    """
    if _as_bool("verbose", verbose) or torch.device(device if device is not None else "cpu").type == "cuda":
        return False
    logger = logging.getLogger(_DECODER_LOGGER)
    if _decoder_notice not in logger.filters:
        logger.addFilter(_decoder_notice)
    warnings.filterwarnings("ignore", message=r"NvImgCodecPydicomReader")
    return True


def _case_name(item: Mapping, dataset_dir: str) -> str:
    image = item.get("image", "")
    image = image[0] if isinstance(image, (list, tuple)) and image else image
    path = os.path.abspath(str(image))
    root = os.path.abspath(dataset_dir)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else str(image)


def _is_case_list(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _bundle_name(bundle_root: str) -> str:
    meta = os.path.join(bundle_root, "configs", "metadata.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            name = json.load(f).get("name")
        if name:
            return f"{name} ({os.path.basename(os.path.abspath(bundle_root))})"
    return os.path.basename(os.path.abspath(bundle_root))


class RunSummary:
    """
    The project's first line of a training run and the record of its split, as a MONAI handler
    (``attach(engine)``; put it first in ``train::handlers``).

    On ``attach`` it checks the schedule (:py:func:`monai_wsss.data.run_length`: the run is exactly
    ``num_epochs * epoch_length`` iterations) against the trainer's ``max_epochs`` / ``epoch_length``, and logs
    (``INFO``, logger ``monai_wsss``) one line naming the bundle, the data folder, the split (order, seed, the
    number of labelled / unlabelled / validation / test cases), the device and the total iteration count, then one
    line per list with the chosen cases. On ``STARTED`` it writes ``output_dir/split.json`` atomically
    (:py:func:`monai_wsss.utils.atomic_write_json`): ``split_order``, ``seed``, the case names (image paths
    relative to ``dataset_dir``) of every list, and ``subsets`` (one list per ensemble member) when given.

    Args:
        bundle_root: the bundle folder; its ``configs/metadata.json`` gives the bundle's name.
        dataset_dir: the data folder.
        datalist: the lists of the split, ``{"labeled": [...], "unlabeled": [...], "validation": [...],
            "test": [...]}`` (the output of :py:func:`monai_wsss.data.load_semisupervised_datalist`); any other
            list of cases in it (e.g. ``training`` of a tagged datalist) is logged and recorded too.
        device: the training device.
        num_epochs: the bundle's ``num_epochs``.
        epoch_length: the bundle's ``epoch_length``.
        output_dir: where ``split.json`` goes; ``None`` writes nothing.
        split_order: ``"seeded"`` or ``"ordered"`` (recorded as given); ``None`` for lists taken as the datalist
            gives them (no split).
        seed: the seed of a seeded split.
        subsets: the labelled subsets of ensemble members (co-training), recorded in ``split.json``.
        name: name of the logger.

    Raises:
        ValueError: ``num_epochs`` / ``epoch_length`` is not a positive integer, or the trainer was built with
            another schedule than the one given here.
    """

    def __init__(
        self,
        bundle_root: str,
        dataset_dir: str,
        datalist: Mapping[str, Sequence[Mapping]],
        device: str | torch.device,
        num_epochs: int,
        epoch_length: int,
        output_dir: str | None = None,
        split_order: str | None = "seeded",
        seed: int | None = None,
        subsets: Sequence[Sequence[Mapping]] | None = None,
        name: str = "monai_wsss",
    ) -> None:
        self.total = run_length(num_epochs, epoch_length)
        self.num_epochs, self.epoch_length = int(num_epochs), int(epoch_length)
        self.bundle_root = bundle_root
        self.dataset_dir = dataset_dir
        self.device = device
        self.output_dir = output_dir
        self.split_order = split_order
        self.seed = seed
        keys = list(_LISTS) + [k for k in datalist if k not in _LISTS and _is_case_list(datalist[k])]
        self.split: dict = {k: [_case_name(d, dataset_dir) for d in datalist.get(k, [])] for k in keys}
        self.lists = keys
        if subsets is not None:
            self.split["subsets"] = [[_case_name(d, dataset_dir) for d in s] for s in subsets]
        self.logger = logging.getLogger(name)

    def _shown(self) -> list[str]:
        """The lists of the split (all four, even empty, when the bundle splits; otherwise the non-empty ones)."""
        return [k for k in self.lists if self.split[k] or (self.split_order and k in _LISTS)]

    def summary(self) -> str:
        """The first line of the run."""
        counts = ", ".join(f"{len(self.split[k])} {k}" for k in self._shown())
        seed = f", seed {self.seed}" if self.split_order == "seeded" and self.seed is not None else ""
        order = f"split {self.split_order}{seed}" if self.split_order else "lists of the datalist"
        return (
            f"{_bundle_name(self.bundle_root)}: data {os.path.abspath(self.dataset_dir)}; "
            f"{order}: {counts}; device {self.device}; "
            f"{self.num_epochs} epochs x {self.epoch_length} iterations = {self.total} iterations."
        )

    def attach(self, engine) -> None:
        state = engine.state
        if (state.max_epochs, state.epoch_length) != (self.num_epochs, self.epoch_length):
            raise ValueError(
                f"The trainer runs {state.max_epochs} epochs of {state.epoch_length} iterations, but the bundle's "
                f"`num_epochs` x `epoch_length` is {self.num_epochs} x {self.epoch_length}."
            )
        self.logger.info(self.summary())
        for key in self._shown():
            self.logger.info(f"{key} ({len(self.split[key])}): {', '.join(self.split[key]) or '-'}")
        for i, subset in enumerate(self.split.get("subsets", [])):
            self.logger.info(f"member {i} subset ({len(subset)}): {', '.join(subset) or '-'}")
        engine.add_event_handler(Events.STARTED, self._write)

    def _write(self, engine) -> None:
        if self.output_dir is None:
            return
        path = os.path.join(self.output_dir, SPLIT_FILE)
        os.makedirs(self.output_dir, exist_ok=True)
        record = {"split_order": self.split_order, "seed": self.seed, **self.split}
        atomic_write_json(path, record)
        self.logger.info(f"Split written to {path}.")
