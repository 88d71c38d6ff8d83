"""
The ablation of deep co-training (Peng, Estrada, Pedersoli, Desrosiers, "Deep co-training for semi-supervised image
segmentation", Pattern Recognition 2020) on 2D slices, run through the bundle
``bundles/cotraining_semisupervised_seg`` itself (its train / inference / evaluate configs with overrides), so what
is measured is what users run.

Variants (same data, same network, same number of iterations and per-model batch):

- ``single``: one 2D U-Net, cross-entropy on ALL labelled cases, MONAI ``SupervisedTrainer`` (labelled-only);
- ``ensemble_sup``: S = 2 U-Nets, each with cross-entropy on its own half of the labelled cases, no other term;
- ``ensemble_jsd``: + the Jensen-Shannon agreement on unlabelled slices (lambda_cot ramped to 1);
- ``ensemble_adv``: + the adversarial diversity term only (FGSM on labelled, VAT on unlabelled; lambda_adv 0.005);
- ``ensemble_full``: both terms, the method.

Each (dataset, variant, seed) runs in a fresh process (:py:func:`_common.run_stage_process`, the benchmarks' one
launcher), so seconds per iteration and peak RSS are its own. Metrics: Dice of the foreground classes averaged over
test cases (the soft vote for ensembles; MONAI ``DiceMetric(include_background=False)`` on 3D volumes segmented
slice by slice by ``SliceInferer``), per-member Dice for ensembles, seconds per training iteration (training wall
time / iterations, data loading included) and peak resident memory.

Datasets
    - ``la2018``: ``../shared/data/la2018`` (1.25 mm left-atrium MR, binary), axial 2D slices, its ``training``
      list in file order: labelled = first 4 cases, unlabelled = next 24 (labels dropped), test = last 8; patches
      64x64.
    - ``default``: the bundle's default data (MNI152 tissue slabs: 5 labelled, 9 unlabelled, 4 test slabs, grey and
      white matter), patches 96x96.

How to run (from the repository root)
    .venv/bin/python benchmarks/cotraining_ablation.py                        # both datasets, 2 seeds, 5 variants
    .venv/bin/python benchmarks/cotraining_ablation.py --datasets la2018 --seeds 1337 --resume
    .venv/bin/python benchmarks/cotraining_ablation.py --epochs 1 --epoch_length 2 --out /tmp/smoke.json   # smoke

Results: ``--out`` (default ``benchmarks/results/cotraining_ablation.json``, rewritten atomically after every run);
per run, a folder ``<results_dir>/cotraining_<dataset>_<variant>_seed<seed>/`` with the bundle's outputs (model,
learning curve CSV / PNG, segmentations, overlays, metrics CSVs), ``stage.log`` and ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
from _common import read_json, run_stage_process

from monai_wsss.utils import atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "bundles", "cotraining_semisupervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
VARIANTS = ("single", "ensemble_sup", "ensemble_jsd", "ensemble_adv", "ensemble_full")
FLAGS = {
    "ensemble_sup": (False, False),
    "ensemble_jsd": (True, False),
    "ensemble_adv": (False, True),
    "ensemble_full": (True, True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["la2018", "default"], choices=["la2018", "default"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1337, 2024])
    p.add_argument("--la2018_dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "la2018"))
    p.add_argument("--epochs", type=int, default=None, help="default: la2018 24, default data 16")
    p.add_argument("--epoch_length", type=int, default=20)
    p.add_argument("--overlap", type=float, default=0.0, help="fraction of labelled cases shared by all members")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "cotraining_ablation.json"))
    p.add_argument("--results_dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--resume", action="store_true", help="reuse finished runs (their run.json)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def la2018_split(la_dir: str, out_dir: str) -> str:
    """A decathlon folder (absolute paths) with the fixed split: first 4 labelled, next 24 unlabelled, last 8 test."""
    with open(os.path.join(la_dir, "dataset.json")) as f:
        meta = json.load(f)
    cases = [{k: os.path.join(la_dir, v) for k, v in c.items()} for c in meta["training"]]
    if len(cases) < 36:
        raise SystemExit(f"{la_dir}: expected the 40-case la2018 training list, found {len(cases)} cases.")
    split = {
        "name": "la2018-cotraining-split",
        "labels": meta["labels"],
        "training": cases[:4],
        "unlabeled": [{"image": c["image"]} for c in cases[4:28]],
        "test": cases[-8:],
    }
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(os.path.join(out_dir, "dataset.json"), split)
    return out_dir


def dataset_overrides(name: str, args: argparse.Namespace) -> dict:
    if name == "la2018":
        folder = la2018_split(args.la2018_dir, os.path.join(args.results_dir, "cotraining_la2018_split"))
        return {"dataset_dir": folder, "num_classes": 2, "roi_size": [64, 64], "_epochs": args.epochs or 24}
    from monai_wsss.data import TISSUE_DATASET, default_dataset_dir

    return {"dataset_dir": default_dataset_dir(TISSUE_DATASET), "_epochs": args.epochs or 16}


def single_model_overrides() -> dict:
    """The labelled-only baseline through the same bundle: one U-Net on all labelled cases, SupervisedTrainer."""
    return {
        "network_def": "@backbone",
        "labeled_subsets": "$[@datalist['labeled']]",
        "train::dataloader": {
            "_target_": "monai_wsss.data.MultiStreamLoader",
            "streams": {"": "$@train::labeled_loaders['_0']"},
            "epoch_length": "@epoch_length",
        },
        "train::trainer": {
            "_target_": "SupervisedTrainer",
            "device": "@device",
            "max_epochs": "@num_epochs",
            "epoch_length": "@epoch_length",
            "train_data_loader": "@train::dataloader",
            "network": "@network",
            "optimizer": "@optimizer",
            "loss_function": "@loss",
            "inferer": "@train::inferer",
            "train_handlers": "@train::handlers",
            "decollate": False,
        },
    }


def run_one(spec: dict) -> None:
    """Train then evaluate one (dataset, variant, seed) with the bundle's configs; write run.json."""
    import torch
    from monai.bundle import ConfigWorkflow

    torch.set_num_threads(spec["threads"])
    out_dir = spec["run_dir"]
    common = {k: v for k, v in spec["dataset"].items() if not k.startswith("_")}
    train = dict(common)
    train.update(
        seed=spec["seed"],
        num_epochs=spec["dataset"]["_epochs"],
        epoch_length=spec["epoch_length"],
        ckpt_dir=os.path.join(out_dir, "models"),
        output_dir=os.path.join(out_dir, "outputs"),
        resume=False,
        val_interval=10**6,
    )
    if spec["variant"] == "single":
        train.update(single_model_overrides())
    else:
        train.update(use_agreement=FLAGS[spec["variant"]][0], use_diversity=FLAGS[spec["variant"]][1])
        train.update(overlap=spec.get("overlap", 0.0))
    wf = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.json"),
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        workflow_type="train",
        bundle_root=BUNDLE,
        **train,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train::trainer")
    start = time.perf_counter()
    wf.run()
    train_s = time.perf_counter() - start
    iterations = trainer.state.iteration
    wf.finalize()

    ev_over = dict(
        common, ckpt_path=os.path.join(out_dir, "models", "model.pt"), output_dir=os.path.join(out_dir, "eval")
    )
    if spec["variant"] == "single":
        # the evaluate config soft-votes pred_0 and pred_1: two copies of the single model give exactly its output
        ev_over.update({"network_def": "@backbone", "evaluator#networks": "$[@network, @network]"})
    ev = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "evaluate.json")],
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        workflow_type="infer",
        bundle_root=BUNDLE,
        **ev_over,
    )
    ev.initialize()
    ev.run()
    metrics = ev.parser.get_parsed_content("evaluator").state.metrics
    ev.finalize()
    per_case = {}
    with open(os.path.join(out_dir, "eval", "dice_raw.csv")) as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    for row in rows[1:]:
        per_case[os.path.basename(row[0]).split(".")[0]] = float(row[-1])
    result = {
        **{k: spec[k] for k in ("dataset_name", "variant", "seed")},
        "overlap": spec.get("overlap", 0.0),
        "dice": float(metrics["dice"]),
        "dice_per_class": [float(x) for x in np.atleast_1d(np.asarray(metrics["dice_per_class"]))],
        "dice_members": [float(metrics[k]) for k in sorted(metrics) if k.startswith("dice_member_")][
            : 1 if spec["variant"] == "single" else None
        ],
        "hd95_mm": float(metrics["hd95_mm"]),
        "asd_mm": float(metrics["asd_mm"]),
        "per_case_dice": per_case,
        "iterations": iterations,
        "train_seconds": train_s,
        "seconds_per_iteration": train_s / max(1, iterations),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": spec["threads"],
    }
    atomic_write_json(os.path.join(out_dir, "run.json"), result)


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        name = r["variant"] + (f"_overlap{r['overlap']:g}" if r.get("overlap") and r["variant"] != "single" else "")
        out.setdefault(r["dataset_name"], {}).setdefault(name, []).append(r)
    summary = {}
    for ds, variants in out.items():
        summary[ds] = {}
        for v, rs in variants.items():
            dice = [r["dice"] for r in rs]
            summary[ds][v] = {
                "seeds": [r["seed"] for r in rs],
                "dice_per_seed": dice,
                "mean_dice": float(np.mean(dice)),
                "seed_spread": float(np.max(dice) - np.min(dice)) if len(dice) > 1 else None,
                "mean_member_dice": float(np.mean([m for r in rs for m in r["dice_members"]])),
                "seconds_per_iteration": float(np.mean([r["seconds_per_iteration"] for r in rs])),
                "peak_rss_mb": float(np.max([r["peak_rss_mb"] for r in rs])),
            }
    return summary


def print_summary(summary: dict) -> None:
    for ds, variants in summary.items():
        print(f"\n{ds}: mean Dice (foreground classes) over seeds")
        print(f"{'variant':<22}{'dice/seed':<22}{'mean':>7}{'spread':>8}{'members':>9}{'s/iter':>8}{'RSS MB':>8}")
        for v in sorted(variants, key=lambda n: (VARIANTS.index(n.split("_overlap")[0]), n)):
            s = variants[v]
            per_seed = " ".join(f"{d:.3f}" for d in s["dice_per_seed"])
            spread = "-" if s["seed_spread"] is None else f"{s['seed_spread']:.3f}"
            print(
                f"{v:<22}{per_seed:<22}{s['mean_dice']:>7.3f}{spread:>8}{s['mean_member_dice']:>9.3f}"
                f"{s['seconds_per_iteration']:>8.2f}{s['peak_rss_mb']:>8.0f}"
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.stage:
        with open(args.stage) as f:
            run_one(json.load(f))
        return
    runs, t0 = [], time.perf_counter()
    for ds in args.datasets:
        ds_over = dataset_overrides(ds, args)
        for seed in args.seeds:
            for variant in args.variants:
                tag = f"_overlap{args.overlap:g}" if args.overlap and variant != "single" else ""
                run_dir = os.path.join(args.results_dir, f"cotraining_{ds}_{variant}{tag}_seed{seed}")
                result_path = os.path.join(run_dir, "run.json")
                if not (args.resume and os.path.isfile(result_path)):
                    os.makedirs(run_dir, exist_ok=True)
                    spec = {
                        "dataset_name": ds,
                        "dataset": ds_over,
                        "variant": variant,
                        "seed": seed,
                        "overlap": args.overlap,
                        "epoch_length": args.epoch_length,
                        "threads": args.threads,
                        "run_dir": run_dir,
                    }
                    spec_path = os.path.join(run_dir, "spec.json")
                    atomic_write_json(spec_path, spec)
                    print(f"[{ds} {variant} seed {seed}] training ...", flush=True)
                    log_path = os.path.join(run_dir, "stage.log")
                    seconds, rss = run_stage_process(
                        __file__, spec_path, log_path, args.threads, f"{ds}/{variant}/seed{seed}", echo=True
                    )
                    r = read_json(result_path) or {}
                    r.update(stage_seconds=seconds, stage_peak_rss_mb=rss)
                    atomic_write_json(result_path, r)
                with open(result_path) as f:
                    r = json.load(f)
                runs.append(r)
                print(
                    f"[{ds} {variant} seed {seed}] Dice {r['dice']:.4f} (members {r['dice_members']}), "
                    f"{r['seconds_per_iteration']:.2f} s/iter, peak RSS {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                report = {
                    "benchmark": "cotraining_ablation",
                    "reference": "Peng, Estrada, Pedersoli, Desrosiers. Pattern Recognition 107, 107269 (2020)",
                    "args": {k: v for k, v in vars(args).items() if k != "stage"},
                    "runs": runs,
                    "summary": summarise(runs),
                    "wall_seconds": time.perf_counter() - t0,
                }
                atomic_write_json(args.out, report)
    print_summary(summarise(runs))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
