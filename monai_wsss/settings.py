"""
Bundle settings checked up front: switches that accept ``true`` / ``false`` in any case, and the command line of a
``python -m monai.bundle run ...`` checked before anything is built (unknown keys with the nearest known key, types
and ranges of the schedule keys).

A bundle calls :py:func:`check_command_line` first in its ``initialize`` list
(``"$monai_wsss.settings.check_command_line()"``) and reads each switch through :py:func:`as_switch`
(``"enabled": "$monai_wsss.settings.as_switch(@resume, 'resume')"``): MONAI's command-line parser (``fire``) passes
``--resume false`` as the string ``"false"``, which Python reads as true.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from monai_wsss.errors import SettingsError

__all__ = ["POSITIVE_INTS", "as_switch", "check_command_line", "check_setting", "config_ids", "refuse"]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

# settings that must be integers >= 1 (zero or negative would train nothing, divide by zero or never save)
POSITIVE_INTS = (
    "num_epochs",
    "epoch_length",
    "batch_size",
    "batch_labeled",
    "batch_unlabeled",
    "val_interval",
    "n_saved",
    "num_models",
    "num_rounds",
    "num_samples",
    "samples_per_case",
    "sw_batch_size",
    "n_segments",
    "regions_per_round",
    "voxels_per_round",
    "num_classes",
    "rampup_iterations",
    "rampup_step_iterations",
    "lr_step_iterations",
    "lr_step_epochs",
    "advcam_steps",
)
_NON_NEGATIVE_INTS = ("num_workers", "seed", "constant_epochs", "rampup_epochs")
_POSITIVE_NUMBERS = ("learning_rate", "advcam_step_size")
_POSITIVE_INT_LISTS = ("roi_size", "divisible_by", "slice_crop")
_FRACTIONS = {"labeled_fraction": (0.0, 1.0, False, True), "val_fraction": (0.0, 1.0, True, False)}


def as_switch(value: Any, name: str = "switch") -> bool:
    """
    ``value`` as a bool: a bool as is, or (from a command line) ``true`` / ``false`` / ``yes`` / ``no`` / ``on`` /
    ``off`` / ``1`` / ``0`` in any case.

    Raises:
        SettingsError: any other value; the message names the setting.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(
        f"must be true or false, got {value!r}.", file=f"--{name}", hint=f"pass --{name} true or --{name} false."
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_setting(name: str, value: Any, default: Any = None) -> None:
    """
    Check one setting given on the command line against its rule (schedule keys: integers >= 1; ``num_workers``,
    ``seed``: integers >= 0; ``learning_rate``: a number > 0; ``roi_size`` and other sizes: a list of integers
    >= 1; fractions in their interval) and, for any other key, against the type of its ``default`` in the
    config (a switch, an integer, a number or a list).

    Raises:
        SettingsError: the value has the wrong type or is out of range; the message names the setting.
    """
    key = name.split("::")[-1].split("#")[-1]
    where = f"--{name}"
    if key in POSITIVE_INTS or key in _NON_NEGATIVE_INTS:
        low = 1 if key in POSITIVE_INTS else 0
        if not _is_int(value) or value < low:
            kind = "a positive integer" if low else "a non-negative integer"
            raise SettingsError(f"`{key}` must be {kind}, got {value!r}.", file=where, hint=f"e.g. {where} 10.")
    elif key in _POSITIVE_NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SettingsError(f"must be a number > 0, got {value!r}.", file=where, hint=f"e.g. {where} 0.001.")
    elif key in _POSITIVE_INT_LISTS:
        ok = _is_int(value) and value >= 1
        if isinstance(value, (list, tuple)):
            ok = bool(value) and all(_is_int(v) and v >= 1 for v in value)
            if ok and isinstance(default, (list, tuple)) and len(default) != len(value):
                raise SettingsError(
                    f"must have {len(default)} entries (one per spatial dimension), got {value!r}.",
                    file=where,
                    hint=f'e.g. {where} "[{",".join(str(v) for v in default)}]".',
                )
        if not ok:
            raise SettingsError(
                f"must be a list of integers >= 1, got {value!r}.", file=where, hint=f'e.g. {where} "[64,64,32]".'
            )
    elif key in _FRACTIONS:
        lo, hi, lo_in, hi_in = _FRACTIONS[key]
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"must be a number, got {value!r}.", file=where)
        if not ((value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)):
            interval = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
            raise SettingsError(f"must be in {interval}, got {value!r}.", file=where)
    elif isinstance(default, bool):
        as_switch(value, name)
    elif _is_int(default) and not _is_int(value):
        raise SettingsError(f"must be an integer, got {value!r}.", file=where)
    elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SettingsError(f"must be a number, got {value!r}.", file=where)


def config_ids(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every id of a config (``a``, ``a::b``, ``a::0``, ...) with its value."""
    out: dict[str, Any] = {}
    if isinstance(config, Mapping):
        items = config.items()
    elif isinstance(config, list):
        items = ((str(i), v) for i, v in enumerate(config))
    else:
        return out
    for k, v in items:
        cid = f"{prefix}::{k}" if prefix else str(k)
        out[cid] = v
        out.update(config_ids(v, cid))
    return out


def _run_arguments() -> set[str]:
    from monai.bundle import ConfigWorkflow, scripts

    names = set(inspect.signature(scripts.run).parameters) | set(inspect.signature(ConfigWorkflow.__init__).parameters)
    return names - {"self", "override"} | {"workflow_name", "bundle_root"}


def _overrides(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if eq:
                out.append((name, value))
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out.append((name, argv[i + 1]))
                i += 1
            else:
                out.append((name, None))  # fire reads a bare --flag as True
        i += 1
    return out


def _is_bundle_cli(argv: Sequence[str]) -> bool:
    return (
        len(argv) > 1
        and os.path.normpath(argv[0]).endswith(os.path.join("monai", "bundle", "__main__.py"))
        and argv[1] in ("run", "run_workflow")
    )


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """
    Check the overrides of a ``python -m monai.bundle run ...`` command line against the config files it names,
    before anything is built: an unknown key (``--learing_rate 5``, silently ignored by MONAI; or a misspelt argument
    of a component, ``--train::trainer::max_epoch``) is refused with the nearest known key suggested
    (:py:mod:`difflib`), while a new entry of a plain mapping (``--seeds::methods::mine "{...}"``) is allowed; a
    known key's value is checked by :py:func:`check_setting`
    (parsed as the command line parses it, so ``--num_epochs abc`` is the string ``"abc"``). Does nothing when
    the process is not the bundle command line (a Python ``ConfigWorkflow`` run passes typed values itself).

    Args:
        argv: the command line; default ``sys.argv``.

    Raises:
        SettingsError: the first unknown key or bad value; the message names the setting, the problem and the
            nearest known key or an example value.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _is_bundle_cli(argv):
        return
    from fire.parser import DefaultParseValue
    from monai.bundle import ConfigParser

    pairs = _overrides(argv[2:])
    parsed = {k: (True if v is None else DefaultParseValue(v)) for k, v in pairs}
    config_file = parsed.get("config_file")
    if config_file is None:
        return
    config = ConfigParser.load_config_files(config_file)
    ids = config_ids(config)
    known = {k.replace("#", "::"): v for k, v in ids.items()}
    own = _run_arguments()
    for name, value in parsed.items():
        if name in own:
            continue
        key = name.replace("#", "::").lstrip("+")
        parent = key.rpartition("::")[0]
        adds_entry = isinstance(known.get(parent), Mapping) and "_target_" not in known[parent]
        if key not in known and not adds_entry:  # a new entry of a plain mapping (e.g. a seed method) is allowed
            top = [k for k in known if "::" not in k] if "::" not in key else list(known)
            near = difflib.get_close_matches(key, top, n=1, cutoff=0.6)
            raise SettingsError(
                f"is not a setting of {config_file} (MONAI would add it and ignore it).",
                file=f"--{name}",
                hint=f"did you mean --{near[0]}?" if near else "check the key's spelling in the bundle's configs.",
            )
        check_setting(key, value, known.get(key))


def refuse(setting: str, problem: str, hint: str | None = None) -> None:
    """
    Stop a run that a bundle cannot do, with one clear message: the ``initialize`` of a config that exists for the
    model-zoo layout but whose workflow does not apply (e.g. a ``multi_gpu_train.json`` of a loop that runs in one
    process).

    Raises:
        SettingsError: always, naming ``setting`` (a config file or key), the problem and what to do.
    """
    raise SettingsError(problem, file=setting, hint=hint)
