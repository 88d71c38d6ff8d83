"""The runner behind the project's 3D Slicer module (``integrations/slicer``): everything Slicer asks for happens here,
in a separate Python process, so it is testable without Slicer.

``python -m monai_wsss.apps.slicer infer --bundle DIR --image FILE --output DIR [--device cpu]`` runs a bundle's
``configs/inference.json`` the way Slicer's MONAI-bundle runners do (overrides ``bundle_root``, ``dataset_dir``,
``output_dir``, ``datalist = [image]``, ``device``, ``dataloader::num_workers = 0``, then the parsed ``evaluator``),
and writes ``<output>/segmentation.json``: the segmentation file and its segment names from the metadata's
``channel_def``.

``python -m monai_wsss.apps.slicer al {query,save-label,train,curve} --bundle DIR --dataset_dir DIR --work_dir DIR``
drives the geometric active-learning bundle's loop (:py:class:`monai_wsss.apps.ActiveLearningLoop`) with its file
annotator, one step per command:

- ``query``: the next query (supervoxels, or a planar patch with its plane in voxel and RAS coordinates), written as
  ``<work_dir>/pending_query.json`` beside the loop's query mask;
- ``save-label --label FILE``: checks the painted label (:py:class:`monai_wsss.active.FileAnnotator`) and saves it
  where the loop's file annotator reads it;
- ``train``: one retraining round on every label so far (and its held-out evaluation);
- ``curve``: the learning curve (CSV and PNG paths, and its rows).

Every command prints one JSON object on stdout; an error prints ``error: <message>`` on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..utils import to_jsonable

__all__ = ["bundle_segments", "run_inference", "strategy_config", "ActiveLearningSession", "main"]

PENDING = "pending_query.json"


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _config(bundle: str, name: str) -> str:
    path = os.path.join(bundle, "configs", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; {bundle} is not a bundle with configs/{name}.")
    return path


def bundle_segments(bundle: str) -> list[dict]:
    """Segments of a bundle's prediction from ``metadata.json`` (first output's ``channel_def``): ``[{"value": 1,
    "name": "grey matter"}, ...]``, label value 0 (background) left out. A one-channel output (sigmoid) is the
    label map ``0`` / ``1``, its one name the foreground's.

    Raises:
        FileNotFoundError: no ``configs/metadata.json``.
        ValueError: the metadata has no ``network_data_format`` output with a ``channel_def``.
    """
    path = _config(bundle, "metadata.json")
    with open(path) as f:
        outputs = json.load(f).get("network_data_format", {}).get("outputs") or {}
    if not outputs or not next(iter(outputs.values())).get("channel_def"):
        raise ValueError(f"{path}: no network_data_format output with a channel_def to name the segments.")
    first = next(iter(outputs.values()))
    names = {int(k): str(v) for k, v in first["channel_def"].items()}
    if int(first.get("num_channels", len(names))) == 1 and len(names) == 1:
        names = {1: next(iter(names.values()))}
    return [{"value": v, "name": n} for v, n in sorted(names.items()) if v != 0]


def run_inference(bundle: str, image: str, output: str, device: str = "cpu") -> dict:
    """Run ``bundle``'s ``configs/inference.json`` on one image with the Slicer overrides and describe the result.

    Args:
        bundle: bundle folder.
        image: the image file (Slicer exports the selected volume as NIfTI).
        output: output folder (created).
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).

    Returns:
        ``{"segmentation": path, "segments": [...], "image": ..., "bundle": ..., "seconds": ...}``, also written as
        ``<output>/segmentation.json``.

    Raises:
        FileNotFoundError: the image, the bundle's inference config or its metadata is missing.
        RuntimeError: the bundle ran but wrote no segmentation into ``output``.
    """
    import torch
    from monai.bundle import ConfigParser

    from monai_wsss.utils import atomic_write_json

    bundle, image, output = _abs(bundle), _abs(image), _abs(output)
    if not os.path.isfile(image) and not os.path.isdir(image):
        raise FileNotFoundError(f"{image}: no such image file.")
    config = _config(bundle, "inference.json")
    segments = bundle_segments(bundle)
    os.makedirs(output, exist_ok=True)
    parser = ConfigParser()
    parser.read_config(config)
    parser.read_meta(_config(bundle, "metadata.json"))
    overrides: dict[str, Any] = {
        "bundle_root": bundle,
        "dataset_dir": os.path.dirname(image),
        "output_dir": output,
        "datalist": [image],
        "device": torch.device(device),
    }
    for key, value in overrides.items():
        parser[key] = value
    if isinstance(parser.get("dataloader"), dict):
        parser["dataloader::num_workers"] = 0
    t0 = time.time()
    if parser.get("initialize"):
        parser.get_parsed_content("initialize")
    parser.get_parsed_content("evaluator").run()
    written = [
        p
        for p in glob.glob(os.path.join(output, "*.nii*")) + glob.glob(os.path.join(output, "*.nrrd"))
        if os.path.getmtime(p) >= t0 - 1 and "_seg" in os.path.basename(p)
    ]
    if not written:
        raise RuntimeError(f"{bundle} ran on {image} but wrote no *_seg NIfTI / NRRD file into {output}.")
    result = {
        "segmentation": max(written, key=os.path.getmtime),
        "segments": segments,
        "image": image,
        "bundle": bundle,
        "seconds": round(time.time() - t0, 2),
    }
    atomic_write_json(os.path.join(output, "segmentation.json"), result)
    return result


def strategy_config(name: str, keys) -> dict:
    """The config component of a library query strategy (a name of
    :py:data:`monai_wsss.apps.active_learning.STRATEGIES`) wired to the bundle's own keys of the same names
    (``geometric_weight``, ``plane_radius``, ...) where ``keys`` (a ``ConfigParser`` or a set of ids) has them.

    Raises:
        ValueError: an unknown strategy name.
    """
    import inspect

    from monai_wsss.apps.active_learning import STRATEGIES

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}.")
    cls = STRATEGIES[name]
    args = [a for a in inspect.signature(cls.__init__).parameters if a not in ("self", "name")]
    return {"_target_": f"{cls.__module__}.{cls.__name__}", **{a: f"@{a}" for a in args if a in keys}}


class _Recorder:
    """Delegates to a query strategy and remembers the case it selected and the fields of its last proposal."""

    def __init__(self, strategy) -> None:
        self._strategy = strategy
        self.case: int | None = None
        self.fields: dict = {}

    def __getattr__(self, name: str):
        return getattr(self._strategy, name)

    def select_case(self, scores, rng):
        self.case = int(self._strategy.select_case(scores, rng))
        return self.case

    def propose(self, *args, **kwargs):
        out = dict(self._strategy.propose(*args, **kwargs))
        self.fields = {k: v for k, v in out.items() if k != "mask"}
        return out


def _to_ras(plane: dict | None, affine: np.ndarray) -> dict | None:
    if not plane:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        return None
    center = affine @ np.r_[np.asarray(plane["center"], dtype=np.float64), 1.0]
    normal = np.linalg.inv(affine[:3, :3]).T @ np.asarray(plane["normal"], dtype=np.float64)
    normal /= np.linalg.norm(normal) or 1.0
    return {"center": [float(v) for v in center[:3]], "normal": [float(v) for v in normal]}


class ActiveLearningSession:
    """One person's active-learning session on a folder: the geometric active-learning bundle's loop with the file
    annotator, its state in ``work_dir`` (resumable: every command rebuilds the loop, which resumes from its files).

    Args:
        bundle: the active-learning bundle folder (its ``configs/train.json`` defines the loop).
        dataset_dir: the decathlon folder: pool cases (``training``) and labelled held-out cases (``test``).
        work_dir: where the loop keeps its state, query masks, labels, models and curves (its ``output_dir``).
        strategy: a name of :py:data:`monai_wsss.apps.active_learning.STRATEGIES` (default: the bundle's).
        device: torch device.
        overrides: other bundle keys (e.g. ``{"num_epochs": 2, "n_segments": 100}``).

    Raises:
        FileNotFoundError: the bundle has no ``configs/train.json`` or the folder no ``dataset.json``.
        ValueError: an unknown strategy name.
    """

    def __init__(
        self,
        bundle: str,
        dataset_dir: str,
        work_dir: str,
        strategy: str | None = None,
        device: str = "cpu",
        overrides: dict | None = None,
    ) -> None:
        from monai_wsss.apps.active_learning import STRATEGIES

        self.bundle, self.dataset_dir, self.work_dir = _abs(bundle), _abs(dataset_dir), _abs(work_dir)
        self.config = _config(self.bundle, "train.json")
        if not os.path.isfile(os.path.join(self.dataset_dir, "dataset.json")):
            raise FileNotFoundError(f"{os.path.join(self.dataset_dir, 'dataset.json')}: missing (decathlon datalist).")
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}.")
        self.strategy, self.device, self.overrides = strategy, device, dict(overrides or {})
        self._loop = None
        self._parser = None

    def _build(self):
        if self._loop is not None:
            return self._loop
        import torch
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(self.config)
        parser.read_meta(_config(self.bundle, "metadata.json"))
        values: dict[str, Any] = {
            "bundle_root": self.bundle,
            "dataset_dir": self.dataset_dir,
            "output_dir": self.work_dir,
            "annotator": "file",
            "label_dir": None,
            "device": torch.device(self.device),
            **self.overrides,
        }
        if self.strategy is not None:
            values["strategy"] = strategy_config(self.strategy, parser)
        for key, value in values.items():
            parser[key] = value
        parser.get_parsed_content("initialize")
        loop = parser.get_parsed_content("loop")
        loop.strategy, loop.seed_strategy = _Recorder(loop.strategy), _Recorder(loop.seed_strategy)
        self._parser, self._loop = parser, loop
        return loop

    # ---- state ------------------------------------------------------------------------------------------------
    def _rows(self) -> list[dict]:
        import csv

        loop = self._build()
        if not os.path.isfile(loop.curve_path):
            return []
        with open(loop.curve_path, newline="") as f:
            return list(csv.DictReader(f))

    def _pending_path(self) -> str:
        return os.path.join(self._build().work_dir, PENDING)

    def pending(self) -> dict | None:
        """The recorded query waiting for its label (None when there is none for the next round)."""
        path = self._pending_path()
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            q = json.load(f)
        return q if int(q["round"]) == len(self._rows()) else None

    def _case_image(self, name: str) -> str:
        datalist = self._parser.get_parsed_content("datalist")
        for item in datalist["labeled"] + datalist.get("unlabeled", []):
            if os.path.basename(str(item["image"])).split(".")[0] == name:
                return str(item["image"])
        return ""

    # ---- commands ---------------------------------------------------------------------------------------------
    def query(self) -> dict:
        """The next query: runs the loop up to the round after the last complete one, which writes the query mask
        and stops for its label. Returns (and writes ``pending_query.json``): ``round``, ``case``, ``image``,
        ``query_mask``, ``label_path`` (where ``save-label`` puts the label), ``voxels``, ``region_ids`` or
        ``plane`` / ``planes`` (voxel coordinates) and ``plane_ras`` (centre and normal in RAS, for Slicer).

        Raises:
            RuntimeError: the label of the pending query is already saved (run ``train``).
        """
        from monai_wsss.utils import atomic_write_json

        loop = self._build()
        rows = self._rows()
        r = len(rows)
        pending = self.pending()
        if pending is not None and os.path.isfile(pending["label_path"]):
            raise RuntimeError(f"the label of round {r} is saved ({pending['label_path']}): run `train` first.")
        loop.run(num_rounds=r + 1)
        if len(self._rows()) > r:  # a label for this round was already there: the round completed
            return {"trained": True, **self.curve()}
        recorder = loop.seed_strategy if r == 0 else loop.strategy
        case = loop.pool[recorder.case]
        stem = f"round_{r:03d}_{case['name']}"
        mask_path = os.path.join(loop.work_dir, "queries", f"{stem}.nii.gz")
        import nibabel as nib

        voxels = int(np.asarray(nib.load(mask_path).dataobj).astype(bool).sum())
        fields = to_jsonable(recorder.fields)
        q = {
            "round": r,
            "strategy": loop.strategy.name,
            "case": case["name"],
            "image": self._case_image(case["name"]),
            "query_mask": mask_path,
            "label_path": os.path.join(loop.label_dir, f"{stem}.nii.gz"),
            "voxels": voxels,
            **fields,
            "plane_ras": _to_ras(fields.get("plane"), case["affine"]),
            "num_classes": loop.num_classes,
            "ignore_value": loop.ignore_value,
        }
        atomic_write_json(self._pending_path(), q)
        return q

    def save_label(self, label: str) -> dict:
        """Check a painted label file against the pending query and save it where the file annotator reads it
        (only the voxels inside the query count; ``ignore_value`` marks voxels left unannotated).

        Raises:
            RuntimeError: no pending query (run ``query`` first).
            FileNotFoundError / ValueError: the label file is missing, unreadable, of another shape than the
                volume, or holds values that are not class labels (the message names the file).
        """
        from monai_wsss.active import FileAnnotator
        from monai_wsss.utils import atomic_write_nifti

        q = self.pending()
        if q is None:
            raise RuntimeError("no pending query: run `query` first.")
        import nibabel as nib

        ref = nib.load(q["query_mask"])
        arr = FileAnnotator(ref.shape, q["ignore_value"], q["num_classes"]).read(_abs(label))
        mask = np.asarray(ref.dataobj).astype(bool)
        inside = np.where(mask, arr, q["ignore_value"]).astype(np.int16)
        os.makedirs(os.path.dirname(q["label_path"]), exist_ok=True)
        atomic_write_nifti(q["label_path"], inside, ref.affine)
        counts = {str(int(v)): int((inside[mask] == v).sum()) for v in np.unique(inside[mask])}
        return {"round": q["round"], "label_path": q["label_path"], "query_voxels": int(mask.sum()), "counts": counts}

    def train(self) -> dict:
        """One retraining round on every label so far (the pending query's label must be saved), then the
        held-out evaluation; returns :py:meth:`curve`.

        Raises:
            RuntimeError: no pending query, or its label is not saved yet.
        """
        q = self.pending()
        if q is None:
            raise RuntimeError("no pending query: run `query` first.")
        if not os.path.isfile(q["label_path"]):
            raise RuntimeError(f"the label of round {q['round']} is not saved ({q['label_path']}): run `save-label`.")
        loop = self._build()
        loop.run(num_rounds=int(q["round"]) + 1)
        rows = self._rows()
        if len(rows) <= int(q["round"]):
            raise RuntimeError(f"round {q['round']} did not complete; see the log above.")
        return {"trained": True, **self.curve()}

    def curve(self) -> dict:
        """``{"csv": path, "png": path, "rows": [...]}`` of the learning curve (rows empty before the first round)."""
        loop = self._build()
        png = loop.curve_path[:-4] + ".png"
        return {"csv": loop.curve_path, "png": png if os.path.isfile(png) else None, "rows": self._rows()}


def _parse_set(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE (VALUE as JSON, e.g. num_epochs=2).")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m monai_wsss.apps.slicer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    inf = sub.add_parser("infer", help="run a bundle's inference.json on one image (Slicer overrides)")
    inf.add_argument("--bundle", required=True)
    inf.add_argument("--image", required=True)
    inf.add_argument("--output", required=True)
    inf.add_argument("--device", default="cpu")
    al = sub.add_parser("al", help="one step of an active-learning session")
    al.add_argument("step", choices=["query", "save-label", "train", "curve"])
    al.add_argument("--bundle", required=True)
    al.add_argument("--dataset_dir", required=True)
    al.add_argument("--work_dir", required=True)
    al.add_argument("--strategy", default=None)
    al.add_argument("--device", default="cpu")
    al.add_argument("--label", default=None, help="the painted label file (save-label)")
    al.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another bundle key (JSON)")
    args = p.parse_args(argv)
    try:
        if args.command == "infer":
            out = run_inference(args.bundle, args.image, args.output, args.device)
        else:
            session = ActiveLearningSession(
                args.bundle, args.dataset_dir, args.work_dir, args.strategy, args.device, _parse_set(args.set)
            )
            if args.step == "save-label":
                if not args.label:
                    raise ValueError("save-label needs --label FILE (the painted label map).")
                out = session.save_label(args.label)
            else:
                out = {"query": session.query, "train": session.train, "curve": session.curve}[args.step]()
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
