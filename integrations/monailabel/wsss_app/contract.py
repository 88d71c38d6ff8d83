"""MONAI Label's bundle contract, checked on a bundle folder without ``monailabel``.

MONAI Label's ``monaibundle`` app (``monailabel/tasks/infer/bundle.py``, ``monailabel/tasks/train/bundle.py``, 0.8.5)
reads ``configs/inference.json`` (``network_def``, ``preprocessing``, ``postprocessing``, ``inferer``; overrides
``bundle_root``, ``device`` and, for epistemic scoring, ``network_def#dropout``), ``models/model.pt``, the first
input / output of ``metadata.json``'s ``network_data_format`` and its ``channel_def``; for training
``configs/train.json`` with ``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data``,
``train#handlers``, ``device``, and for several GPUs ``configs/multi_gpu_train.json`` and ``configs/logging.conf``.
"""

from __future__ import annotations

import configparser
import json
import os
from typing import Any

__all__ = ["CONTRACT_PARTS", "contract_report", "infer_overrides", "train_overrides"]

INFER_PARTS = (
    "configs/inference.json",
    "network_def",
    "network_def#dropout",
    "preprocessing",
    "postprocessing",
    "inferer",
    "network_data_format",
    "channel_def",
    "models/model.pt",
)
TRAIN_PARTS = (
    "configs/train.json",
    "train#trainer#max_epochs",
    "train#dataset#data",
    "validate#dataset#data",
    "train#handlers",
    "device",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
)
CONTRACT_PARTS = INFER_PARTS + TRAIN_PARTS
"""Every part of the contract, in the order :py:func:`contract_report` checks them."""


def infer_overrides(bundle_root: str, device: str = "cpu", dropout: float | None = None) -> dict[str, Any]:
    """The overrides MONAI Label's bundle inference task applies: ``bundle_root``, ``device`` and, when it scores
    with dropout (epistemic), ``network_def#dropout``."""
    out: dict[str, Any] = {"bundle_root": os.path.abspath(bundle_root), "device": device}
    if dropout:
        out["network_def#dropout"] = float(dropout)
    return out


def train_overrides(
    bundle_root: str,
    train_data: list[dict],
    val_data: list[dict] | None,
    max_epochs: int,
    device: Any,
    handlers: list,
) -> dict[str, Any]:
    """The overrides MONAI Label's bundle training task passes to ``monai.bundle.run`` (its ``val_split`` of -1
    leaves ``validate#dataset#data`` alone: ``val_data`` None)."""
    out = {
        "bundle_root": os.path.abspath(bundle_root),
        "train#trainer#max_epochs": int(max_epochs),
        "train#dataset#data": [{"image": d["image"], "label": d["label"]} for d in train_data],
        "device": device,
        "train#handlers": handlers,
    }
    if val_data is not None:
        out["validate#dataset#data"] = [{"image": d["image"], "label": d["label"]} for d in val_data]
    return out


def _read(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}).") from e


def _section(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and "::".join(dotted.split("#")) in config:  # flat "train::dataset" keys
            return config["::".join(dotted.split("#"))]
        else:
            return None
    return node


def _has_load_image(pre: Any) -> bool:
    text = json.dumps(pre)
    return "LoadImaged" in text or "LoadImage(" in text


def contract_report(bundle_dir: str) -> dict[str, str | None]:
    """Check a bundle folder against MONAI Label's contract, statically (nothing is instantiated).

    Args:
        bundle_dir: the bundle folder (holding ``configs/``).

    Returns:
        ``{part: None}`` for each part of :py:data:`CONTRACT_PARTS` the bundle meets, else ``{part: reason}``.

    Raises:
        FileNotFoundError: ``bundle_dir/configs/metadata.json`` is missing.
        ValueError: a config file is not valid JSON.
    """
    configs = os.path.join(bundle_dir, "configs")
    meta = _read(os.path.join(configs, "metadata.json"))
    if meta is None:
        raise FileNotFoundError(f"{os.path.join(configs, 'metadata.json')}: missing; not a MONAI bundle folder.")
    report: dict[str, str | None] = {}
    infer = _read(os.path.join(configs, "inference.json"))
    if infer is None:
        for part in INFER_PARTS:
            report[part] = "no configs/inference.json: MONAI Label skips the bundle for inference"
    else:
        report["configs/inference.json"] = None
        net = infer.get("network_def")
        report["network_def"] = None if isinstance(net, dict) else "inference.json defines no `network_def` component"
        report["network_def#dropout"] = (
            None
            if isinstance(net, dict) and "dropout" in net
            else "`network_def` declares no `dropout`: MONAI Label's epistemic scoring cannot set it"
        )
        pre = infer.get("preprocessing", infer.get("pre_transforms"))
        report["preprocessing"] = (
            None if pre is not None and _has_load_image(pre) else "no `preprocessing` starting from LoadImaged"
        )
        post = infer.get("postprocessing", infer.get("post_transforms"))
        report["postprocessing"] = None if post is not None else "no `postprocessing`"
        report["inferer"] = None if "inferer" in infer else "no `inferer` (MONAI Label falls back to SimpleInferer)"
        fmt = meta.get("network_data_format", {})
        inputs, outputs = fmt.get("inputs") or {}, fmt.get("outputs") or {}
        first_in, first_out = next(iter(inputs), None), next(iter(outputs), None)
        report["network_data_format"] = (
            None
            if first_in is not None and first_out is not None and f'"{first_in}"' in json.dumps(pre)
            else f"metadata's first input key {first_in!r} is not read by `preprocessing`, or no output"
        )
        names = (outputs.get(first_out) or {}).get("channel_def", {}) if first_out else {}
        fg = [v for v in names.values() if str(v).lower() != "background"]
        report["channel_def"] = None if fg else "the first output's `channel_def` names no foreground label"
        ckpt = str(infer.get("ckpt_path", ""))
        report["models/model.pt"] = (
            None
            if "'models', 'model.pt'" in ckpt or "models/model.pt" in ckpt
            else f"inference.json reads `ckpt_path` = {ckpt!r}; MONAI Label loads models/model.pt (copy it there)"
        )
    train = _read(os.path.join(configs, "train.json"))
    if train is None:
        for part in TRAIN_PARTS:
            report[part] = "no configs/train.json: MONAI Label has no training task for the bundle"
        return report
    report["configs/train.json"] = None
    trainer = _section(train, "train#trainer")
    report["train#trainer#max_epochs"] = (
        None if isinstance(trainer, dict) and "max_epochs" in trainer else "`train::trainer` has no `max_epochs`"
    )
    for key in ("train#dataset", "validate#dataset"):
        ds = _section(train, key)
        report[f"{key}#data"] = (
            None if isinstance(ds, dict) and "data" in ds else f"`{key.replace('#', '::')}` is {ds!r}, not a dataset "
            "component with `data`"
        )
    report["train#handlers"] = (
        None if isinstance(_section(train, "train#handlers"), list) else "`train::handlers` is not a list"
    )
    report["device"] = None if "device" in train and (infer is None or "device" in infer) else "no `device` key"
    report["configs/multi_gpu_train.json"] = (
        None if os.path.isfile(os.path.join(configs, "multi_gpu_train.json")) else "no configs/multi_gpu_train.json"
    )
    log = os.path.join(configs, "logging.conf")
    parser = configparser.ConfigParser(interpolation=None)
    ok = os.path.isfile(log) and bool(parser.read(log)) and {"loggers", "handlers", "formatters"} <= set(parser)
    report["configs/logging.conf"] = None if ok else "no configs/logging.conf with loggers, handlers and formatters"
    return report
