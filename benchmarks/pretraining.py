"""
Does pre-training help the DTC bundle's V-Net when only 4 or 8 scans are labelled? Random initialisation vs the
context-restoration proxy alone vs proxy + Mix-and-Match tuning, the same fine-tuning budget, on a 3D and a 2D set.

Run through the bundles themselves (``monai.bundle.ConfigWorkflow`` with overrides, one fresh process per stage,
:py:func:`_common.run_stage_process`):

- ``proxy``: ``bundles/mix_and_match_pretraining/configs/train.json`` (context restoration, Chen et al., MedIA
  2019) on the unlabelled cases only; once per seed-independent data set (seed 1337), shared by both label counts;
- ``mix_and_match``: the same bundle's ``train.json`` + ``mix_and_match.json`` from the proxy weights, on the 4 or
  8 labelled cases (Zhan et al., AAAI 2018: majority-class patches, class-wise graph, triplet loss); per label count
  and seed;
- ``finetune``: ``bundles/dtc_semisupervised_seg/configs/train.json`` in its labelled-only form (segmentation head,
  MONAI ``SupervisedTrainer`` + ``DiceLoss``: the initialisation is the only difference between arms, no unlabelled
  stream) with ``pretrained_weights`` = nothing (``random``), the proxy encoder (``proxy``) or the tuned encoder
  (``proxy_mm``), then the bundle's own ``validate::evaluator`` (sliding window, sigmoid > 0.5, largest component,
  ``MeanDice``) on the test cases.

Data (``../shared/data``, never committed; a missing folder stops with a message):

- ``la2018`` (3D LGE-MRI, left atrium): the first 8 cases are the labelled pool (the first 4 for ``n=4``), the next
  24 the unlabelled pool (labels dropped), the last 8 the test set;
- ``blood_smear`` (2D RGB microscopy, white blood cells): the ``d1_*`` images only (one stain); cytoplasm + nucleus
  as one foreground class (the DTC bundle is binary), masks binarised (>= 64) into the run folder; first 8 labelled,
  next 60 unlabelled, last 20 test.

Output: ``benchmarks/results/pretraining.json`` (``--out``): per data set, label count and arm the test Dice per seed,
mean and spread (max - min); seconds and peak RSS per stage. Run folders under ``benchmarks/results/runs/`` (not
committed).

    .venv/bin/python benchmarks/pretraining.py                 # the committed run (see its JSON for the settings)
    .venv/bin/python benchmarks/pretraining.py --smoke         # a few iterations, one seed: checks the wiring
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run_stage_process  # noqa: E402

from monai_wsss.utils import atomic_write_json  # noqa: E402

MM = REPO / "bundles" / "mix_and_match_pretraining"
DTC = REPO / "bundles" / "dtc_semisupervised_seg"
SHARED = REPO.parent / "shared" / "data"
ARMS = ("random", "proxy", "proxy_mm")

SETTINGS = {
    "la2018": {
        "spatial_dims": 3,
        "in_channels": 1,
        "roi_size": [48, 48, 32],
        "proxy_iterations": 80,
        "proxy_batch": 2,
        "swap_size": 8,
        "mm_iterations": 20,
        "mm_batch": 1,
        "mm_sizes": [12, 40],
        "mm_roi": [24, 24, 24],
        "finetune_iterations": 60,
        "finetune_batch": 2,
    },
    "blood_smear": {
        "spatial_dims": 2,
        "in_channels": 3,
        "roi_size": [64, 64],
        "proxy_iterations": 150,
        "proxy_batch": 8,
        "swap_size": 8,
        "mm_iterations": 40,
        "mm_batch": 4,
        "mm_sizes": [16, 64],
        "mm_roi": [32, 32],
        "finetune_iterations": 100,
        "finetune_batch": 8,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(SETTINGS), default=["la2018", "blood_smear"])
    p.add_argument("--num_labeled", nargs="+", type=int, default=[4, 8])
    p.add_argument("--seeds", nargs="+", type=int, default=[1337, 2024])
    p.add_argument("--features", type=int, default=8, help="V-Net base filters (the bundles default to 16)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="3 iterations per stage, one seed, n=4")
    p.add_argument("--out", default=None, help="default benchmarks/results/pretraining[_smoke].json")
    p.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results" / "runs"))
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.num_labeled = args.seeds[:1], args.num_labeled[:1]
    if args.out is None:
        args.out = str(
            REPO / "benchmarks" / "results" / ("pretraining_smoke.json" if args.smoke else "pretraining.json")
        )
    return args


# ----------------------------------------------------------------------------------------------------------------------
# data splits (decathlon folders the bundles read)
# ----------------------------------------------------------------------------------------------------------------------
def _items(name: str) -> tuple[str, list[dict]]:
    folder = SHARED / name
    if not (folder / "dataset.json").is_file():
        sys.exit(f"error: {folder / 'dataset.json'} not found; this benchmark needs ../shared/data/{name}.")
    with open(folder / "dataset.json") as f:
        meta = json.load(f)
    return str(folder), meta["training"]


def write_splits(name: str, num_labeled: list[int], root: str) -> dict[int, str]:
    """One folder per label count: ``training`` = labelled pool, ``unlabeled``, ``validation`` = the test cases."""
    folder, items = _items(name)
    if name == "la2018":
        cases = [{"image": f"{folder}/{d['image']}", "label": f"{folder}/{d['label']}"} for d in items]
        labelled, unlabelled, test = cases[:8], cases[8:32], cases[-8:]
    else:
        import numpy as np
        from PIL import Image

        masks = os.path.join(root, f"{name}_binary_masks")
        os.makedirs(masks, exist_ok=True)
        cases = []
        for d in (d for d in items if os.path.basename(d["image"]).startswith("d1_")):
            out = os.path.join(masks, os.path.basename(d["label"]))
            if not os.path.isfile(out):
                m = np.asarray(Image.open(f"{folder}/{d['label']}").convert("L"))
                from monai_wsss.utils import atomic_write_image

                atomic_write_image(out, (m >= 64).astype(np.uint8)[None])
            cases.append({"image": f"{folder}/{d['image']}", "label": out})
        labelled, unlabelled, test = cases[:8], cases[8:68], cases[-20:]
    out = {}
    for n in num_labeled:
        split = os.path.join(root, f"{name}_split_n{n}")
        atomic_write_json(
            os.path.join(split, "dataset.json"),
            {
                "name": f"{name}-pretraining-benchmark-n{n}",
                "labels": {"0": "background", "1": "foreground"},
                "training": labelled[:n],
                "unlabeled": [{"image": d["image"]} for d in unlabelled],
                "validation": test,
            },
        )
        out[n] = split
    return out


# ----------------------------------------------------------------------------------------------------------------------
# stages (each in a fresh process)
# ----------------------------------------------------------------------------------------------------------------------
def _net(s: dict, features: int) -> dict:
    return {
        "network_def#spatial_dims": s["spatial_dims"],
        "network_def#in_channels": s["in_channels"],
        "network_def#features": features,
        "roi_size": s["roi_size"],
        "pixdim": [0] * s["spatial_dims"],
        "num_workers": 0,
        "resume": False,
        "datalist#validate": False,
    }


def _handler_index(config: Path, target: str) -> int:
    with open(config) as f:
        handlers = json.load(f)["train"]["handlers"]
    return next(
        i for i, h in enumerate(handlers) if isinstance(h, dict) and str(h.get("_target_", "")).endswith(target)
    )


def proxy_overrides(s: dict, args, split: str, folder: str, seed: int) -> dict:
    it = 3 if args.smoke else s["proxy_iterations"]
    return dict(
        _net(s, args.features),
        dataset_dir=split,
        seed=seed,
        ckpt_dir=f"{folder}/models",
        output_dir=f"{folder}/outputs",
        num_epochs=1,
        epoch_length=it,
        batch_size=s["proxy_batch"],
        swap_size=s["swap_size"],
        **{"train::data": "$@datalist['unlabeled']"},
    )


def mm_overrides(s: dict, args, split: str, folder: str, proxy: str, seed: int) -> dict:
    it = 3 if args.smoke else s["mm_iterations"]
    return dict(
        _net(s, args.features),
        dataset_dir=split,
        seed=seed,
        ckpt_dir=f"{folder}/models",
        output_dir=f"{folder}/outputs",
        pretrained_weights=proxy,
        **{
            "mix_and_match::num_epochs": 1,
            "mix_and_match::epoch_length": it,
            "mix_and_match::batch_size": s["mm_batch"],
            "mix_and_match::min_size": s["mm_sizes"][0],
            "mix_and_match::max_size": s["mm_sizes"][1],
            "mix_and_match::roi_size": s["mm_roi"],
            "mix_and_match::max_background_fraction": 0.5,  # binary tasks: the graph needs both classes
        },
    )


def finetune_overrides(s: dict, args, split: str, folder: str, weights: str | None, seed: int) -> dict:
    it = 3 if args.smoke else s["finetune_iterations"]
    cfg = DTC / "configs" / "train.json"
    return dict(
        _net(s, args.features),
        dataset_dir=split,
        seed=seed,
        ckpt_dir=f"{folder}/models",
        output_dir=f"{folder}/outputs",
        pretrained_weights=weights,
        num_epochs=1,
        epoch_length=it,
        lr_step_iterations=max(1, it * 3 // 4),
        val_interval=10**6,
        batch_labeled=s["finetune_batch"],
        **{
            "validate::inferer#overlap": 0.25,
            # labelled-only form of the bundle (as benchmarks/dtc_vs_supervised.py): the initialisation is the only
            # difference between the arms
            "network_def#seg_only": True,
            "loss": {"_target_": "DiceLoss", "sigmoid": True, "squared_pred": True, "batch": True},
            "train::dataloader#unlabeled_loader": None,
            "train::trainer#_target_": "SupervisedTrainer",
            "train::trainer#prepare_batch": "$monai.engines.default_prepare_batch",
            "train::trainer#decollate": False,
            f"train::handlers#{_handler_index(cfg, 'ConsistencyWeightScheduler')}#_disabled_": True,
            f"train::handlers#{_handler_index(cfg, 'ProgressBar')}#_disabled_": True,
        },
    )


def run_stage(spec: dict) -> None:
    """One process: its parts in order, each a bundle's train workflow followed by (``evaluate``) the bundle's
    validator on the test cases or (``export``) the encoder export; writes ``result.json`` (one entry per part, with
    its seconds) in the run folder."""
    import logging

    import torch
    from monai.bundle import ConfigWorkflow

    from monai_wsss.networks import export_encoder

    torch.set_num_threads(spec["threads"])
    logging.getLogger("ignite").setLevel(logging.WARNING)
    results = {}
    for part in spec["parts"]:
        t0 = time.perf_counter()
        wf = ConfigWorkflow(
            config_file=part["configs"],
            meta_file=part["meta"],
            workflow_type="train",
            bundle_root=part["bundle"],
            **part["overrides"],
        )
        wf.initialize()
        wf.run()
        result: dict = {"train_seconds": round(time.perf_counter() - t0, 1)}
        if part.get("export"):
            export_encoder(part["export"][0], part["export"][1])
        if part.get("evaluate"):
            t1 = time.perf_counter()
            evaluator = wf.parser.get_parsed_content("validate::evaluator")
            evaluator.run()
            details = evaluator.state.metric_details["val_mean_dice"].reshape(-1).tolist()
            result.update(dice=float(evaluator.state.metrics["val_mean_dice"]), dice_per_case=details)
            result["eval_seconds"] = round(time.perf_counter() - t1, 1)
        wf.finalize()
        results[part["name"]] = result
        print(f"[{part['name']}] {result.get('dice', '')} {result}", flush=True)
    atomic_write_json(os.path.join(spec["run_dir"], "result.json"), results)


def part(name: str, configs: list[Path], bundle: Path, overrides: dict, **extra) -> dict:
    return {
        "name": name,
        "configs": [str(c) for c in configs],
        "meta": str(bundle / "configs" / "metadata.json"),
        "bundle": str(bundle),
        "overrides": overrides,
        **extra,
    }


def stage(args, name: str, folder: str, parts: list[dict]) -> dict:
    """Run ``parts`` in one fresh process; returns their results plus the process's wall seconds and peak RSS."""
    os.makedirs(folder, exist_ok=True)
    spec = {"parts": parts, "run_dir": folder, "threads": args.threads}
    spec_path = os.path.join(folder, "spec.json")
    atomic_write_json(spec_path, spec)
    seconds, rss = run_stage_process(__file__, spec_path, os.path.join(folder, "stage.log"), args.threads, name)
    with open(os.path.join(folder, "result.json")) as f:
        result = json.load(f)
    result["process"] = {"wall_seconds": round(seconds, 1), "peak_rss_mb": round(rss, 1)}
    dice = ", ".join(f"{k} Dice {v['dice']:.4f}" for k, v in result.items() if "dice" in v)
    print(f"  {name}: {seconds:.0f} s, peak {rss:.0f} MB; {dice}", flush=True)
    return result


def spread(values: list[float]) -> dict:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": m, "std": sd, "min": min(values), "max": max(values), "spread": max(values) - min(values)}


def main(args: argparse.Namespace) -> None:
    stem = Path(args.out).stem
    root = os.path.join(args.results_dir, stem)
    os.makedirs(root, exist_ok=True)
    summary: dict = {
        "benchmark": "pretraining",
        "protocol": {k: v for k, v in vars(args).items() if k not in ("stage",)},
        "settings": {d: SETTINGS[d] for d in args.datasets},
        "results": {},
    }
    start = time.perf_counter()
    for name in args.datasets:
        s = SETTINGS[name]
        splits = write_splits(name, args.num_labeled, root)
        print(f"{name}: splits {splits}")
        ds: dict = {"stages": {}, "dice": {}}
        # proxy: on the unlabelled pool (the same in every split), once
        pfolder = os.path.join(root, f"{name}_proxy")
        proxy_pt, proxy_enc = f"{pfolder}/models/proxy.pt", f"{pfolder}/models/encoder.pt"
        ds["stages"]["proxy"] = stage(
            args,
            f"{name} proxy",
            pfolder,
            [
                part(
                    "proxy",
                    [MM / "configs" / "train.json"],
                    MM,
                    proxy_overrides(s, args, splits[args.num_labeled[0]], pfolder, 1337),
                    export=[proxy_pt, proxy_enc],
                )
            ],
        )
        for n in args.num_labeled:
            per_arm: dict = {a: [] for a in ARMS}
            for seed in args.seeds:
                folder = os.path.join(root, f"{name}_n{n}_seed{seed}")
                mm_enc = f"{folder}/mix_and_match/models/encoder.pt"
                mm_dir = f"{folder}/mix_and_match"
                parts = [
                    part(
                        "mix_and_match",
                        [MM / "configs" / "train.json", MM / "configs" / "mix_and_match.json"],
                        MM,
                        mm_overrides(s, args, splits[n], mm_dir, proxy_pt, seed),
                        export=[f"{mm_dir}/models/mix_and_match.pt", mm_enc],
                    )
                ]
                weights = {"random": None, "proxy": proxy_enc, "proxy_mm": mm_enc}
                for arm in ARMS:
                    ffolder = f"{folder}/finetune_{arm}"
                    overrides = finetune_overrides(s, args, splits[n], ffolder, weights[arm], seed)
                    parts.append(
                        part(f"finetune_{arm}", [DTC / "configs" / "train.json"], DTC, overrides, evaluate=True)
                    )
                r = stage(args, f"{name} n={n} seed {seed}", folder, parts)
                ds["stages"][f"n{n}_seed{seed}"] = r
                for arm in ARMS:
                    per_arm[arm].append(r[f"finetune_{arm}"]["dice"])
            ds["dice"][f"n{n}"] = {
                a: {"per_seed": dict(zip(map(str, args.seeds), v, strict=True)), **spread(v)}
                for a, v in per_arm.items()
            }
        summary["results"][name] = ds
        summary["total_seconds"] = round(time.perf_counter() - start, 1)
        atomic_write_json(args.out, summary)
    print(f"total {time.perf_counter() - start:.0f} s; summary in {args.out}")
    for name, ds in summary["results"].items():
        for n, arms in ds["dice"].items():
            row = ", ".join(f"{a} {v['mean']:.4f} (spread {v['spread']:.4f})" for a, v in arms.items())
            print(f"{name} {n}: {row}")


if __name__ == "__main__":
    if "--stage" in sys.argv:
        with open(sys.argv[sys.argv.index("--stage") + 1]) as f:
            run_stage(json.load(f))
    else:
        main(parse_args())
