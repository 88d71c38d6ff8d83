"""
Plain head vs OCR head, and Dice+CE vs the locally adaptive loss vs their sum, at equal budget and seeds, through the
``ocr_supervised_seg`` bundle (``python -m monai.bundle`` configs driven by :py:class:`monai.bundle.ConfigWorkflow`,
one fresh process per run: :py:func:`_common.run_stage_process`).

    Yuan, Chen, Wang, "Object-Contextual Representations for Semantic Segmentation", ECCV 2020 (the OCR head);
    Guo et al., "Locally Adaptive Learning Loss for Semantic Image Segmentation", arXiv:1802.08290, 2018.

Arms (``--arms``): ``plain_dicece`` (BasicUNet's own 1x1 head, Dice + cross-entropy), ``ocr_dicece`` (the OCR head on
the same BasicUNet's last two decoder stages, aux weight 0.4), ``plain_lall`` (the locally adaptive loss alone),
``plain_dicece_lall`` (their sum), ``ocr_dicece_lall``. Every arm of a dataset has the same schedule, crops, batch,
optimiser (Adam) and seeds; only ``head`` / ``criterion`` differ.

Data (never copied into the repository; the folders are read where they are, a ``dataset.json`` with the split is
written under the run folder):

- ``blood_smear``: ``../shared/data/blood_smear`` (Zheng et al., Micron 2018: 116 RGB white-blood-cell smears,
  background / cytoplasm / nucleus coded 0 / 128 / 255): the 116 visible pairs sorted by name, every 5th one (23) held
  out as the test list, the other 93 for training; 2D, crops of 64 x 64, 150 iterations of 4.
- ``la2018``: ``../shared/data/la2018`` (left atrium, 40 LGE-MRI volumes at 1.25 mm): the first 32 cases of its
  ``dataset.json`` all labelled for training, the last 8 as test; 3D, crops of 48 x 48 x 32, 120 iterations of 2,
  a smaller BasicUNet.

Reported per dataset and arm: mean Dice over foreground classes and per class on the test list (MONAI ``MeanDice``),
mean and sample standard deviation over seeds, seconds per training iteration (wall time of the trainer over its
iterations, including data loading), peak resident memory of the run's process (MB), wall seconds. Summary JSON:
``benchmarks/results/heads_and_losses.json``. Runs already finished (``result.json`` in their folder) are not redone.

    .venv/bin/python benchmarks/heads_and_losses.py --threads 2
    .venv/bin/python benchmarks/heads_and_losses.py --datasets blood_smear --seeds 1337 --arms plain_dicece ocr_dicece
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import read_json, run_stage_process  # noqa: E402

from monai_wsss.utils import atomic_write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "ocr_supervised_seg"
CONFIGS = BUNDLE / "configs"
SHARED = (REPO / ".." / "shared" / "data").resolve()
ARMS = {
    "plain_dicece": {"head": "plain", "criterion": "dicece"},
    "ocr_dicece": {"head": "ocr", "criterion": "dicece"},
    "plain_lall": {"head": "plain", "criterion": "lall"},
    "plain_dicece_lall": {"head": "plain", "criterion": "dicece_lall"},
    "ocr_dicece_lall": {"head": "ocr", "criterion": "dicece_lall"},
}
DEFAULT_ARMS = ["plain_dicece", "ocr_dicece", "plain_lall", "plain_dicece_lall"]
SETTINGS = {
    "blood_smear": {
        "spatial_dims": 2,
        "roi_size": [64, 64],
        "batch_size": 4,
        "num_epochs": 10,
        "epoch_length": 15,
        "learning_rate": 0.001,
    },
    "la2018": {
        "spatial_dims": 3,
        "roi_size": [48, 48, 32],
        "batch_size": 2,
        "num_epochs": 8,
        "epoch_length": 15,
        "learning_rate": 0.001,
        "segment::backbone_features": [8, 8, 16, 32, 64, 8],
        "segment::ocr_mid_channels": 32,
        "segment::ocr_key_channels": 16,
    },
}


def write_split(name: str, source: Path, folder: Path) -> dict:
    """A ``dataset.json`` with absolute paths and the split stated above; returns its split description."""
    meta = json.load(open(source / "dataset.json"))
    items = [{k: str(source / v) if k in ("image", "label") else v for k, v in i.items()} for i in meta["training"]]
    if name == "blood_smear":
        items.sort(key=lambda i: i["image"])
        test = items[4::5]
        train = [i for i in items if i not in test]
        rule = "the 116 visible pairs sorted by name; every 5th (index 4, 9, ...) held out as test"
    else:
        train, test = items[:32], items[32:40]
        rule = "dataset.json order: cases 1-32 labelled for training, 33-40 test"
    out = {"labels": meta["labels"], "training": train, "test": test}
    atomic_write_json(str(folder / "dataset.json"), out)
    return {
        "rule": rule,
        "train": len(train),
        "test": [os.path.basename(i["image"]) for i in test],
    }


def run_stage(spec_path: str) -> None:
    """One training + evaluation in this process (started by :py:func:`run_stage_process`)."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    spec = json.load(open(spec_path))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    wf = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type="train",
        bundle_root=spec["folder"],
        **spec["overrides"],
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("segment::trainer")
    evaluator = wf.parser.get_parsed_content("segment::evaluator")
    eval_seconds = []
    evaluator.add_event_handler(Events.STARTED, lambda e: eval_seconds.append(-time.perf_counter()))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: eval_seconds.append(time.perf_counter()))
    start = time.perf_counter()
    wf.run()
    total = time.perf_counter() - start
    wf.finalize()
    metrics = evaluator.state.metrics
    evaluation = sum(eval_seconds)
    result = {
        "dice": float(metrics["dice"]),
        "dice_per_class": [float(v) for v in torch.as_tensor(metrics["dice_per_class"]).flatten()],
        "miou": float(metrics["miou"]),
        "iterations": int(trainer.state.iteration),
        "seconds_per_iteration": (total - evaluation) / max(1, trainer.state.iteration),
        "evaluation_seconds": evaluation,
    }
    atomic_write_json(os.path.join(spec["folder"], "result.json"), result)


def summarise(runs: list[dict], classes: list[str]) -> dict:
    def spread(values: list[float]) -> dict:
        return {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values,
        }

    out = {
        "dice": spread([r["dice"] for r in runs]),
        "dice_per_class": {name: spread([r["dice_per_class"][i] for r in runs]) for i, name in enumerate(classes)},
        "seconds_per_iteration": statistics.fmean(r["seconds_per_iteration"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "wall_seconds": statistics.fmean(r["wall_seconds"] for r in runs),
        "seeds": [r["seed"] for r in runs],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--datasets", nargs="+", default=["blood_smear", "la2018"], choices=sorted(SETTINGS))
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=sorted(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337, 2024, 7])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run_dir", default=str(REPO / "benchmarks" / "runs" / "heads_and_losses"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "heads_and_losses.json"))
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage)
        return
    summary: dict = read_json(args.output) or {}
    summary.update(
        {
            "benchmark": "benchmarks/heads_and_losses.py",
            "bundle": "bundles/ocr_supervised_seg",
            "threads": args.threads,
            "machine": f"{os.cpu_count()} CPU cores visible (shared machine)",
        }
    )
    summary.setdefault("datasets", {})
    for name in args.datasets:
        source = SHARED / name
        if not (source / "dataset.json").is_file():
            print(f"skip {name}: {source} not found")
            continue
        root = Path(args.run_dir) / name
        root.mkdir(parents=True, exist_ok=True)
        split = write_split(name, source, root)
        classes = [v for k, v in sorted(json.load(open(source / "dataset.json"))["labels"].items()) if k != "0"]
        entry = summary["datasets"].setdefault(name, {})
        entry.update({"split": split, "settings": SETTINGS[name], "arms": entry.get("arms", {})})
        for arm in args.arms:
            runs = []
            for seed in args.seeds:
                folder = root / arm / f"seed{seed}"
                folder.mkdir(parents=True, exist_ok=True)
                result = read_json(str(folder / "result.json"))
                if result is None or "wall_seconds" not in result:
                    overrides = {
                        "dataset_dir": str(root),
                        "seed": seed,
                        "resume": False,
                        "segment::save_overlays": False,
                        **SETTINGS[name],
                        **ARMS[arm],
                    }
                    spec = {"folder": str(folder), "overrides": overrides}
                    spec_path = str(folder / "spec.json")
                    atomic_write_json(spec_path, spec)
                    seconds, rss = run_stage_process(
                        __file__, spec_path, str(folder / "stage.log"), args.threads, f"{name}/{arm}/{seed}"
                    )
                    result = {**read_json(str(folder / "result.json")), "wall_seconds": seconds, "peak_rss_mb": rss}
                    atomic_write_json(str(folder / "result.json"), result)
                runs.append({**result, "seed": seed})
                print(
                    f"{name} {arm} seed {seed}: dice {result['dice']:.4f} {result['dice_per_class']} "
                    f"{result['seconds_per_iteration']:.3f} s/it {result['peak_rss_mb']:.0f} MB"
                )
            entry["arms"][arm] = {**ARMS[arm], **summarise(runs, classes)}
            atomic_write_json(args.output, summary)
    print(
        json.dumps(
            {n: {a: round(v["dice"]["mean"], 4) for a, v in d["arms"].items()} for n, d in summary["datasets"].items()},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
