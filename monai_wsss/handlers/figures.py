"""Pictures of results: overlay PNGs of segmentations and learning curves."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

from ..utils import atomic_write_csv, atomic_write_figure

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["LearningCurveWriter", "OverlayPNGSaver", "SynthesisGridSaver", "save_image_grid", "save_overlay_png"]


def _np(x) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().cpu().float().numpy())


def _label_map(m: np.ndarray) -> np.ndarray:
    """Channel-first mask -> integer label map: argmax of several channels (one-hot or probabilities), 0.5
    threshold of one channel in [0, 1], else its rounded values (a label map)."""
    if m.shape[0] > 1:
        return np.argmax(m, axis=0).astype(np.int64)
    m = m[0]
    return (m > 0.5).astype(np.int64) if m.max(initial=0) <= 1 else np.rint(m).astype(np.int64)


def save_overlay_png(path: str, image, masks: dict[str, object], title: str = "", slice_axis: int = -1) -> None:
    """
    Write a PNG with the image and one panel per mask (contour-free colour overlay) on the slice, along
    ``slice_axis``, where the first mask has the largest area (the middle slice if it is empty). Inputs are
    channel-first 2D or 3D arrays: binary masks, label maps (classes in distinct colours) or several channels
    (one-hot or probabilities, shown by argmax).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = _np(image)[0]
    arrays = {k: _label_map(_np(v)) for k, v in masks.items()}
    multi_class = any(a.max() > 1 for a in arrays.values())
    if img.ndim == 3:
        axis = slice_axis % 3
        ref = next(iter(arrays.values())) if arrays else None
        areas = (ref > 0).sum(axis=tuple(a for a in range(3) if a != axis)) if ref is not None else None
        idx = int(np.argmax(areas)) if areas is not None and areas.max() > 0 else img.shape[axis] // 2
        img = np.take(img, idx, axis=axis)
        arrays = {k: np.take(v, idx, axis=axis) for k, v in arrays.items()}
        title = f"{title} (slice {idx} of axis {axis})"
    lo, hi = np.percentile(img, (1, 99))
    fig, axes = plt.subplots(1, 1 + len(arrays), figsize=(3.2 * (1 + len(arrays)), 3.4))
    axes = np.atleast_1d(axes)
    for ax in axes:
        ax.imshow(img.T, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        ax.axis("off")
    axes[0].set_title("image")
    for ax, (name, m), colour in zip(axes[1:], arrays.items(), ("Greens", "Reds", "Blues", "Oranges"), strict=False):
        shown = np.ma.masked_where(m.T == 0, m.T)
        if multi_class:
            ax.imshow(shown, cmap="tab10", alpha=0.6, vmin=0, vmax=9, origin="lower", interpolation="nearest")
        else:
            ax.imshow(shown, cmap=colour, alpha=0.5, vmin=0, vmax=1, origin="lower")
        ax.set_title(name)
    fig.suptitle(title, fontsize=9)
    atomic_write_figure(path, fig)
    plt.close(fig)


def _display(a: np.ndarray, value_range: tuple[float, float] | None) -> tuple[np.ndarray, dict]:
    """Channel-first 2D array (MONAI axes: x first) -> an ``imshow`` array and its arguments."""
    if a.ndim == 4:  # 3D: middle slice of the last axis
        a = a[..., a.shape[-1] // 2]
    lo, hi = value_range if value_range is not None else (float(a.min()), float(a.max()))
    scaled = np.clip((a - lo) / max(hi - lo, 1e-8), 0, 1)
    if a.shape[0] == 3:
        return np.transpose(scaled, (2, 1, 0)), {}
    return scaled[0].T, {"cmap": "gray", "vmin": 0, "vmax": 1}


def save_image_grid(
    path: str, columns: dict[str, Sequence], value_ranges: dict[str, tuple[float, float]] | None = None, title: str = ""
) -> None:
    """
    Write a PNG grid: one column per entry of ``columns`` (e.g. mask, real image, generated image), one row per
    sample. Arrays are channel-first 2D (1 or 3 channels, MONAI axes) or 3D (middle slice shown); masks with several
    channels are shown by argmax. ``value_ranges`` fixes the display range of a column (e.g. ``(-1, 1)``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    value_ranges = value_ranges or {}
    names = list(columns)
    rows = min(len(v) for v in columns.values()) if columns else 0
    if rows == 0:
        raise ValueError(f"save_image_grid: nothing to draw for {path}.")
    fig, axes = plt.subplots(rows, len(names), figsize=(2.4 * len(names), 2.4 * rows), squeeze=False)
    for c, name in enumerate(names):
        for r in range(rows):
            a = _np(columns[name][r])
            if a.shape[0] not in (1, 3):
                a = np.argmax(a, axis=0)[None].astype(np.float32)
            shown, kwargs = _display(a, value_ranges.get(name))
            axes[r, c].imshow(shown, origin="upper", interpolation="nearest", **kwargs)
            axes[r, c].axis("off")
        axes[0, c].set_title(name)
    if title:
        fig.suptitle(title, fontsize=9)
    atomic_write_figure(path, fig)
    plt.close(fig)


class SynthesisGridSaver:
    """
    Evaluator handler for mask-to-image synthesis: collect ``(mask, real, generated)`` of the first ``num_samples``
    samples and write them as a PNG grid (:py:func:`save_image_grid`) when the run completes.

    Args:
        path: the PNG to write.
        keys: output keys to show, in column order, mapped to column titles.
        num_samples: rows of the grid.
        value_ranges: display range per output key (images in [-1, 1]: ``{"image": [-1, 1], "pred": [-1, 1]}``).
    """

    def __init__(
        self,
        path: str,
        keys: dict[str, str] | None = None,
        num_samples: int = 8,
        value_ranges: dict[str, Sequence[float]] | None = None,
    ) -> None:
        self.path = path
        self.keys = dict(keys or {"label": "mask", "image": "real", "pred": "generated"})
        self.num_samples = num_samples
        self.value_ranges = {self.keys[k]: tuple(v) for k, v in (value_ranges or {}).items() if k in self.keys}
        self.columns: dict[str, list] = {}

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine=None) -> None:
        self.columns = {title: [] for title in self.keys.values()}

    def _collect(self, engine) -> None:
        out = engine.state.output
        if not isinstance(out, list):  # not decollated: split the batch
            out = [{k: out[k][i] for k in self.keys} for i in range(len(out[next(iter(self.keys))]))]
        items = out
        for item in items:
            if len(next(iter(self.columns.values()))) >= self.num_samples:
                return
            for key, title in self.keys.items():
                self.columns[title].append(_np(item[key]))

    def _write(self, engine=None) -> None:
        if self.columns and next(iter(self.columns.values())):
            save_image_grid(self.path, self.columns, self.value_ranges)


class OverlayPNGSaver:
    """
    Evaluator handler: after each iteration, write ``<output_dir>/<case>_overlay.png`` with the image and the
    masks ``mask_keys`` (e.g. label, prediction, baseline) of every case of the batch (decollated output).

    Args:
        output_dir: folder of the PNGs.
        image_key: image in each decollated output item.
        mask_keys: masks to overlay, shown in this order.
        data_root_dir: as in MONAI's ``SaveImaged``: when given, each PNG goes under its input's folder relative to
            it (``<output_dir>/<relative folder>/<case>_overlay.png``), so inputs that share a file name in
            different folders do not overwrite each other (see :py:func:`monai_wsss.utils.output_root_dir`).
    """

    def __init__(
        self,
        output_dir: str,
        image_key: str = "image",
        mask_keys: Sequence[str] = ("label", "pred"),
        data_root_dir: str = "",
    ):
        self.output_dir = output_dir
        self.data_root_dir = data_root_dir
        self.image_key = image_key
        self.mask_keys = tuple(mask_keys)
        self.written: list[str] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        items = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for i, item in enumerate(items):
            image = item[self.image_key]
            meta = getattr(image, "meta", {}) or {}
            source = str(meta.get("filename_or_obj", f"case{engine.state.iteration}_{i}"))
            name = os.path.basename(source).split(".")[0]
            folder = self.output_dir
            if self.data_root_dir and os.path.dirname(source):
                folder = os.path.join(folder, os.path.relpath(os.path.dirname(source), self.data_root_dir))
            path = os.path.normpath(os.path.join(folder, f"{name}_overlay.png"))
            save_overlay_png(path, image, {k: item[k] for k in self.mask_keys if k in item}, title=name)
            self.written.append(path)


class LearningCurveWriter:
    """
    Trainer handler: record the scalar terms ``output_keys`` of ``engine.state.output`` (and ``state_attributes``
    such as the consistency weight) every iteration, and at each epoch end write ``<output_dir>/<name>.csv`` and
    ``<output_dir>/<name>.png`` (the terms against the iteration, smoothed over ``smooth`` iterations). A resumed
    training continues the curve already on disk.

    Args:
        output_dir: folder of the files.
        output_keys: scalars of ``engine.state.output``.
        state_attributes: scalars of ``engine.state``.
        name: file stem.
        smooth: moving-average window of the plot.
    """

    def __init__(
        self,
        output_dir: str,
        output_keys: Sequence[str] = ("loss",),
        state_attributes: Sequence[str] = (),
        name: str = "learning_curve",
        smooth: int = 10,
    ) -> None:
        self.output_dir = output_dir
        self.keys = tuple(output_keys)
        self.attrs = tuple(state_attributes)
        self.name = name
        self.smooth = max(1, smooth)
        self.rows: list[dict[str, float]] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self.resume)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def resume(self, engine) -> None:
        """On a resumed run (the engine starts past iteration 0), keep the rows already written up to that point."""
        path = os.path.join(self.output_dir, f"{self.name}.csv")
        if self.rows or engine.state.iteration == 0 or not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
        self.rows = [r for r in rows if r.get("iteration", np.inf) <= engine.state.iteration]

    def record(self, engine) -> None:
        out = engine.state.output
        out = out[0] if isinstance(out, list) else out
        row = {"iteration": float(engine.state.iteration)}
        if isinstance(out, dict):
            row.update({k: float(torch.as_tensor(out[k]).detach()) for k in self.keys if k in out})
        row.update({a: float(getattr(engine.state, a)) for a in self.attrs if hasattr(engine.state, a)})
        self.rows.append(row)

    def write(self, engine=None) -> None:
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(self.output_dir, exist_ok=True)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        csv_path = os.path.join(self.output_dir, f"{self.name}.csv")
        atomic_write_csv(csv_path, self.rows, fields)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        it = np.array([r["iteration"] for r in self.rows])
        for k in fields[1:]:
            v = np.array([r.get(k, np.nan) for r in self.rows])
            w = min(self.smooth, len(v))
            ax.plot(it[w - 1 :], np.convolve(v, np.ones(w) / w, mode="valid"), label=k)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        atomic_write_figure(os.path.join(self.output_dir, f"{self.name}.png"), fig)
        plt.close(fig)
