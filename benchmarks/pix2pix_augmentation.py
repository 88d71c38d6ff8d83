"""
Does pix2pix synthesis help a segmenter trained on few real pairs? The downstream experiment of mask-to-image data
augmentation (Bailo, Ham, Shin, "Red blood cell image generation for data augmentation using conditional generative
adversarial networks", CVPR Workshops 2019; pix2pix: Isola, Zhu, Zhou, Efros, CVPR 2017), run through the bundle
``bundles/pix2pix_microscopy_synthesis`` itself (its train / segment / synthesize / evaluate configs with
overrides, loaded exactly as ``python -m monai.bundle run`` loads them), so what is measured is what users run.

For each (dataset, real budget, seed), five stages, each in a fresh subprocess:

1. ``pix2pix``: train the mask -> image generator on the ``num_labeled`` real training pairs (``train.json``);
2. ``segment_real``: train the bundle's 2D U-Net on those real pairs only (``segment.json``, ``segment::name real``)
   and score it on the held-out real pairs;
3. ``synthesize``: write ``--num_pairs`` synthetic pairs (augmented real masks -> generated images) plus the real
   training pairs into ``<run>/outputs/synthetic/dataset.json``, whose ``test`` list is the held-out real pairs;
4. ``segment_synthetic``: train the same U-Net on real + synthetic (``dataset_dir`` = that folder, ``num_labeled``
   None so every pair keeps its label, ``segment::name synthetic``) with the SAME iteration budget
   (``segment::num_epochs`` x ``segment::epoch_length`` batches of ``segment::batch_size``) and score it on the
   same held-out real pairs;
5. ``evaluate``: compare generated and real images of the held-out masks (``evaluate.json``).

Held-out pairs: the dataset's ``test`` list when it has one, otherwise the bundle's seeded 20 % validation hold-out
(taken before the ``num_labeled`` subset is drawn, so it is the same for every budget of a seed).

Metrics per run
    - ``dice_real`` / ``dice_synthetic``: MONAI ``MeanDice(include_background=False)`` of the two segmenters on the
      held-out real pairs, averaged over images (``*_per_class``: per foreground class; ``jaccard_*``: mean IoU);
      ``dice_gain`` = ``dice_synthetic - dice_real``;
    - ``ssim``, ``psnr``, ``mae``: generated vs real held-out image of the same mask, intensities in [-1, 1]
      (SSIM data range 2, PSNR max value 2);
    - ``feature_distance``: mean embedding distance between each real image and its generated twin divided by the
      mean distance between different real images (0: indistinguishable, about 1: as far as another real image);
      ``feature_fid``: Frechet distance of the two embedding sets (Heusel et al., NeurIPS 2017); embeddings are the
      bottleneck of the real-only segmenter of stage 2 (no ImageNet Inception offline), noisy with few images;
    - ``pix2pix_seconds_per_iteration``: training wall time of the generator / iterations (data loading and the
      per-epoch checkpoint included; the bundle's in-training validation is switched off, stage 5 replaces it);
    - ``stage_seconds``: wall time of each stage's subprocess (start-up and data caching included);
    - ``peak_rss_mb``: peak resident memory of each stage's subprocess (``os.wait4`` rusage).

Datasets
    - ``default``: the bundle's default data (``stardist`` fluorescence nuclei tiles, 1 channel, binary, 12 training
      and 4 test tiles); default budget ``all`` (every training tile);
    - ``blood_smear``: ``../shared/data/blood_smear`` (Zheng et al., Micron 2018: 116 RGB white-blood-cell smears,
      background / cytoplasm / nucleus stored as 0/128/255 and decoded by the bundle); no test list, so 23 pairs are
      held out per seed; default budgets 10 and 25 real pairs.

How to run (from the repository root)
    .venv/bin/python benchmarks/pix2pix_augmentation.py                             # both datasets, seed 1337
    .venv/bin/python benchmarks/pix2pix_augmentation.py --datasets blood_smear --budgets 10 --seeds 1337 2024
    .venv/bin/python benchmarks/pix2pix_augmentation.py --resume                    # continue / re-aggregate
    .venv/bin/python benchmarks/pix2pix_augmentation.py --smoke --threads 1          # 1 epoch x 2 iterations, 4 pairs

Results: ``<results_dir>/pix2pix_augmentation_<dataset>.json`` (``_smoke`` appended with ``--smoke``), rewritten
atomically after every run: the arguments, each run's record and the mean over seeds per budget. Per run, a folder
``<work_dir>/<dataset>_<budget>_seed<seed>/`` with the bundle's outputs (``models/``, ``outputs/`` with the
synthetic dataset and grid, ``segmenter_real/``, ``segmenter_synthetic/``, ``eval/``), one log and one JSON record
per stage (``--resume`` reuses finished stages and runs) and ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time

import numpy as np
from _common import read_json, run_stage_process

from monai_wsss.utils import atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "bundles", "pix2pix_microscopy_synthesis")
CONFIGS = os.path.join(BUNDLE, "configs")
DATASETS = ("default", "blood_smear")
DEFAULT_BUDGETS = {"default": ["all"], "blood_smear": ["10", "25"]}
STAGES = ("pix2pix", "segment_real", "synthesize", "segment_synthetic", "evaluate")
# per stage: config files, and the object resolved before the timed run (so caching is not timed)
STAGE_CONFIGS = {
    "pix2pix": ("train.json",),
    "segment_real": ("train.json", "segment.json"),
    "synthesize": ("train.json", "synthesize.json"),
    "segment_synthetic": ("train.json", "segment.json"),
    "evaluate": ("train.json", "segment.json", "evaluate.json"),
}
STAGE_TARGETS = {
    "pix2pix": "train::trainer",
    "segment_real": "segment::trainer",
    "synthesize": "synthesize::synthesizer",
    "segment_synthetic": "segment::trainer",
    "evaluate": "evaluate::evaluator",
}
METRIC_SOURCES = {
    "segment_real": "segment::evaluator",
    "segment_synthetic": "segment::evaluator",
    "evaluate": "evaluate::evaluator",
}


def bundle_default(key: str, config: str) -> int:
    """The default of ``key`` (``section::name`` for a stage section) in one of the bundle's config files."""
    with open(os.path.join(CONFIGS, config)) as f:
        value = json.load(f)
    for part in key.split("::"):
        value = value[part]
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument(
        "--budgets",
        nargs="+",
        default=None,
        help="real training pairs (int or 'all'); default: default data 'all', blood_smear 10 25",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[1337])
    p.add_argument("--blood_smear_dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "blood_smear"))
    p.add_argument("--epochs", type=int, default=None, help="pix2pix epochs (default: the bundle's num_epochs)")
    p.add_argument("--epoch_length", type=int, default=None, help="pix2pix iterations per epoch (bundle default)")
    p.add_argument("--seg_epochs", type=int, default=None, help="segmenter epochs (bundle's segment::num_epochs)")
    p.add_argument("--seg_epoch_length", type=int, default=None, help="segmenter iterations per epoch (bundle)")
    p.add_argument("--seg_batch_size", type=int, default=None, help="segmenter batch size (bundle default)")
    p.add_argument("--num_pairs", type=int, default=None, help="synthetic pairs (default 200)")
    p.add_argument("--smoke", action="store_true", help="1 epoch x 2 iterations per training, 4 synthetic pairs")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda:0 (default: the bundle's choice)")
    p.add_argument("--threads", type=int, default=2, help="OMP / torch threads of each stage subprocess")
    p.add_argument("--work_dir", default=None, help="default /tmp/pix2pix_bench (/tmp/pix2pix_bench_smoke)")
    p.add_argument("--results_dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--resume", action="store_true", help="reuse finished runs and stages (their JSON records)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    smoke = {"epochs": 1, "epoch_length": 2, "seg_epochs": 1, "seg_epoch_length": 2, "num_pairs": 4}
    defaults = {
        "epochs": bundle_default("num_epochs", "train.json"),
        "epoch_length": bundle_default("epoch_length", "train.json"),
        "seg_epochs": bundle_default("segment::num_epochs", "segment.json"),
        "seg_epoch_length": bundle_default("segment::epoch_length", "segment.json"),
        "seg_batch_size": bundle_default("segment::batch_size", "segment.json"),
        "num_pairs": 200,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke.get(key, value) if args.smoke else value)
    if args.work_dir is None:
        args.work_dir = "/tmp/pix2pix_bench_smoke" if args.smoke else "/tmp/pix2pix_bench"
    for b in args.budgets or []:
        if b != "all" and not (b.isdigit() and int(b) > 0):
            p.error(f"--budgets takes positive integers or 'all', got {b!r}")
    return args


def _floats(value) -> list[float]:
    import torch

    return [float(x) for x in np.atleast_1d(torch.as_tensor(value).detach().cpu().numpy())]


def run_stage(spec: dict) -> None:
    """One bundle stage, loaded as ``monai.bundle run`` loads it (``create_workflow``); writes the stage record."""
    import torch
    from monai.bundle.scripts import create_workflow

    torch.set_num_threads(spec["threads"])
    stage = spec["stage"]
    wf = create_workflow(
        config_file=[os.path.join(CONFIGS, c) for c in STAGE_CONFIGS[stage]], bundle_root=BUNDLE, **spec["overrides"]
    )
    target = wf.parser.get_parsed_content(STAGE_TARGETS[stage])  # datasets cached, networks built: not timed
    start = time.perf_counter()
    wf.run()
    run_seconds = time.perf_counter() - start
    wf.finalize()
    record: dict = {"stage": stage, "overrides": spec["overrides"], "run_seconds": run_seconds}
    datalist = wf.parser.get_parsed_content("datalist")
    record["num_train_pairs"] = len(datalist["labeled"])
    record["num_heldout_pairs"] = len(wf.parser.get_parsed_content("heldout_data"))
    if stage in ("pix2pix", "segment_real", "segment_synthetic"):
        record["iterations"] = int(target.state.iteration)
        record["seconds_per_iteration"] = run_seconds / max(1, target.state.iteration)
    if stage in METRIC_SOURCES:
        metrics = wf.parser.get_parsed_content(METRIC_SOURCES[stage]).state.metrics
        if not metrics:
            raise RuntimeError(f"{stage}: the evaluator recorded no metric (is the held-out list empty?)")
        record["metrics"] = {k: (_floats(v) if k.endswith("per_class") else float(v)) for k, v in metrics.items()}
    if stage == "synthesize":
        meta = read_json(os.path.join(spec["overrides"]["output_dir"], "synthetic", "dataset.json")) or {}
        record.update({k: meta.get(k) for k in ("numSynthetic", "numTraining", "numTest")})
    atomic_write_json(spec["result"], record)


def dataset_dir(name: str, args: argparse.Namespace) -> str:
    if name == "blood_smear":
        if not os.path.isfile(os.path.join(args.blood_smear_dir, "dataset.json")):
            raise SystemExit(f"{args.blood_smear_dir}: no dataset.json (set --blood_smear_dir).")
        return os.path.abspath(args.blood_smear_dir)
    from monai_wsss.data import NUCLEI_DATASET, default_dataset_dir

    return default_dataset_dir(NUCLEI_DATASET)


def stage_overrides(stage: str, data_dir: str, budget: str, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    """Every path the bundle writes to is moved under ``run_dir``; nothing is written into the bundle folder."""
    over = {
        "dataset_dir": data_dir,
        "num_labeled": None if budget == "all" else int(budget),
        "seed": seed,
        "num_epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "ckpt_dir": os.path.join(run_dir, "models"),
        "output_dir": os.path.join(run_dir, "outputs"),
        "resume": False,
        "val_interval": 10**6,  # no validation inside pix2pix training: the evaluate stage measures the generator
    }
    if args.device:
        over["device"] = f"$torch.device('{args.device}')"
    if stage.startswith("segment_"):
        name = stage[len("segment_") :]
        over.update(
            {
                "segment::name": name,
                "segment::num_epochs": args.seg_epochs,
                "segment::epoch_length": args.seg_epoch_length,
                "segment::batch_size": args.seg_batch_size,
                "segment::ckpt_dir": os.path.join(run_dir, "models", f"segmenter_{name}"),
                "segment::output_dir": os.path.join(run_dir, f"segmenter_{name}"),
            }
        )
        if name == "synthetic":  # every synthetic + real pair keeps its label; the held-out list is the 'test' list
            over.update(dataset_dir=os.path.join(run_dir, "outputs", "synthetic"), num_labeled=None)
    elif stage == "synthesize":
        over["synthesize::num_pairs"] = args.num_pairs
    elif stage == "evaluate":
        over.update(
            {
                "output_dir": os.path.join(run_dir, "eval"),
                "segment::output_dir": os.path.join(run_dir, "segmenter_real"),
                "segment::ckpt_dir": os.path.join(run_dir, "models", "segmenter_real"),
            }
        )
    return over


def stage_outputs(stage: str, run_dir: str) -> list[str]:
    """What a stage writes, cleared before it runs again (a stopped stage restarts from scratch)."""
    if stage.startswith("segment_"):
        name = stage[len("segment_") :]
        return [os.path.join(run_dir, "models", f"segmenter_{name}"), os.path.join(run_dir, f"segmenter_{name}")]
    return {
        "pix2pix": [os.path.join(run_dir, "models"), os.path.join(run_dir, "outputs")],
        "synthesize": [os.path.join(run_dir, "outputs", "synthetic")],
        "evaluate": [os.path.join(run_dir, "eval")],
    }[stage]


def run_pipeline(ds: str, data_dir: str, budget: str, seed: int, args: argparse.Namespace) -> dict:
    tag = f"{ds}_{budget}_seed{seed}"
    run_dir = os.path.join(args.work_dir, tag)
    settings = {
        k: getattr(args, k)
        for k in ("epochs", "epoch_length", "seg_epochs", "seg_epoch_length", "seg_batch_size", "num_pairs")
    }
    settings.update(dataset_dir=data_dir, device=args.device, threads=args.threads)
    done = read_json(os.path.join(run_dir, "run.json")) if args.resume else None
    if done is not None and done.get("settings") == settings:
        return done
    if not args.resume or (done is not None and done.get("settings") != settings):
        shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir, exist_ok=True)
    stages, redo = {}, False
    for stage in STAGES:
        result_path = os.path.join(run_dir, f"stage_{stage}.json")
        over = stage_overrides(stage, data_dir, budget, seed, run_dir, args)
        record = None if redo else read_json(result_path)
        if record is None or record.get("overrides") != over:
            redo = True  # every later stage depends on this one
            for path in stage_outputs(stage, run_dir):
                shutil.rmtree(path, ignore_errors=True)
            spec_path = os.path.join(run_dir, f"stage_{stage}_spec.json")
            atomic_write_json(
                spec_path, {"stage": stage, "overrides": over, "threads": args.threads, "result": result_path}
            )
            print(f"[{tag}] {stage} ...", flush=True)
            seconds, rss = run_stage_process(
                __file__, spec_path, os.path.join(run_dir, f"stage_{stage}.log"), args.threads, stage
            )
            record = read_json(result_path)
            record.update(seconds=seconds, peak_rss_mb=rss)
            atomic_write_json(result_path, record)
            print(f"[{tag}] {stage}: {seconds:.1f} s, peak RSS {rss:.0f} MB", flush=True)
        stages[stage] = record
    seg_real, seg_syn = stages["segment_real"]["metrics"], stages["segment_synthetic"]["metrics"]
    gen = stages["evaluate"]["metrics"]
    result = {
        "dataset": ds,
        "budget": budget,
        "seed": seed,
        "settings": settings,
        "num_real_train_pairs": stages["segment_real"]["num_train_pairs"],
        "num_seg_train_pairs_synthetic": stages["segment_synthetic"]["num_train_pairs"],
        "num_heldout_pairs": stages["segment_real"]["num_heldout_pairs"],
        "num_synthetic_pairs": stages["synthesize"]["numSynthetic"],
        "dice_real": seg_real["dice"],
        "dice_real_per_class": seg_real["dice_per_class"],
        "jaccard_real": seg_real["jaccard"],
        "dice_synthetic": seg_syn["dice"],
        "dice_synthetic_per_class": seg_syn["dice_per_class"],
        "jaccard_synthetic": seg_syn["jaccard"],
        "dice_gain": seg_syn["dice"] - seg_real["dice"],
        "dice_gain_per_class": np.subtract(seg_syn["dice_per_class"], seg_real["dice_per_class"]).tolist(),
        **{k: gen[k] for k in ("ssim", "psnr", "mae", "feature_distance", "feature_fid")},
        "pix2pix_iterations": stages["pix2pix"]["iterations"],
        "pix2pix_seconds_per_iteration": stages["pix2pix"]["seconds_per_iteration"],
        "segmenter_iterations": stages["segment_real"]["iterations"],
        "stage_seconds": {s: stages[s]["seconds"] for s in STAGES},
        "total_seconds": sum(stages[s]["seconds"] for s in STAGES),
        "peak_rss_mb": {s: stages[s]["peak_rss_mb"] for s in STAGES},
        "max_peak_rss_mb": max(stages[s]["peak_rss_mb"] for s in STAGES),
        "run_dir": run_dir,
    }
    if result["segmenter_iterations"] != stages["segment_synthetic"]["iterations"]:
        raise SystemExit(f"[{tag}] the two segmenters ran different numbers of iterations: not comparable.")
    atomic_write_json(os.path.join(run_dir, "run.json"), result)
    return result


SUMMARY_KEYS = (
    "dice_real",
    "dice_synthetic",
    "dice_gain",
    "ssim",
    "psnr",
    "feature_distance",
    "feature_fid",
    "pix2pix_seconds_per_iteration",
    "total_seconds",
)


def summarise(runs: list[dict]) -> dict:
    by_budget: dict = {}
    for r in runs:
        by_budget.setdefault(r["budget"], []).append(r)
    summary = {}
    for budget, rs in by_budget.items():
        s = {"seeds": [r["seed"] for r in rs], "num_real_train_pairs": rs[0]["num_real_train_pairs"]}
        s.update({f"mean_{k}": float(np.mean([r[k] for r in rs])) for k in SUMMARY_KEYS})
        for k in ("dice_real_per_class", "dice_synthetic_per_class"):
            s[f"mean_{k}"] = np.mean([r[k] for r in rs], axis=0).tolist()
        s["seed_spread_dice_gain"] = float(np.ptp([r["dice_gain"] for r in rs])) if len(rs) > 1 else None
        s["max_peak_rss_mb"] = float(max(r["max_peak_rss_mb"] for r in rs))
        summary[budget] = s
    return summary


def print_table(ds: str, runs: list[dict], summary: dict) -> None:
    print(f"\n{ds}: Dice on held-out real pairs (foreground classes), generator metrics, cost")
    head = (
        f"{'budget':>6}{'seed':>7}{'Dice real':>10}{'real+syn':>10}{'gain':>8}{'SSIM':>7}{'PSNR':>7}"
        f"{'featD':>7}{'FID':>9}{'s/it':>7}{'total s':>9}{'RSS MB':>8}"
    )
    print(head)
    for budget, s in summary.items():
        rows = [(str(r["seed"]), r) for r in runs if r["budget"] == budget]
        rows.append(("mean", {k: s[f"mean_{k}"] for k in SUMMARY_KEYS} | {"max_peak_rss_mb": s["max_peak_rss_mb"]}))
        for seed, r in rows:
            print(
                f"{budget:>6}{seed:>7}{r['dice_real']:>10.3f}{r['dice_synthetic']:>10.3f}{r['dice_gain']:>+8.3f}"
                f"{r['ssim']:>7.3f}{r['psnr']:>7.2f}{r['feature_distance']:>7.3f}{r['feature_fid']:>9.3g}"
                f"{r['pix2pix_seconds_per_iteration']:>7.2f}{r['total_seconds']:>9.0f}{r['max_peak_rss_mb']:>8.0f}"
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.stage:
        with open(args.stage) as f:
            run_stage(json.load(f))
        return
    for ds in args.datasets:
        data_dir = dataset_dir(ds, args)
        out = os.path.join(args.results_dir, f"pix2pix_augmentation_{ds}{'_smoke' if args.smoke else ''}.json")
        runs, t0 = [], time.perf_counter()
        for budget in args.budgets or DEFAULT_BUDGETS[ds]:
            for seed in args.seeds:
                r = run_pipeline(ds, data_dir, budget, seed, args)
                runs.append(r)
                print(
                    f"[{ds}_{budget}_seed{seed}] Dice real {r['dice_real']:.4f} {r['dice_real_per_class']}, "
                    f"real+synthetic {r['dice_synthetic']:.4f} {r['dice_synthetic_per_class']} "
                    f"({r['num_seg_train_pairs_synthetic']} pairs), gain {r['dice_gain']:+.4f}; SSIM {r['ssim']:.3f}, "
                    f"PSNR {r['psnr']:.2f}, feature distance {r['feature_distance']:.3f}, FID {r['feature_fid']:.4g}",
                    flush=True,
                )
                report = {
                    "benchmark": "pix2pix_augmentation",
                    "reference": "Bailo, Ham, Shin. CVPR Workshops 2019; Isola, Zhu, Zhou, Efros. CVPR 2017",
                    "dataset": ds,
                    "args": {k: v for k, v in vars(args).items() if k != "stage"},
                    "runs": runs,
                    "summary": summarise(runs),
                    "wall_seconds": time.perf_counter() - t0,
                    "orchestrator_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                }
                atomic_write_json(out, report)
        print_table(ds, runs, summarise(runs))
        print(f"written: {out}")


if __name__ == "__main__":
    main()
