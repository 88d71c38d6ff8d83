"""
Learning curves of geometric active learning at a matched annotation budget (Konyushkova, Sznitman, Fua,
"Introducing Geometry in Active Learning for Image Segmentation", ICCV 2015; "Geometry in Active Learning for Binary
and Multi-class Image Segmentation", CVIU 2019), run through ``monai_wsss.apps.active_learning.ActiveLearningLoop``,
the loop of the bundle ``bundles/geometric_active_learning``.

Protocol, per (dataset, seed, strategy): the bundle's own loop, engine, crops, augmentations and inferer, parsed from
``bundles/geometric_active_learning/configs/train.json`` with overrides (:py:func:`bundle_overrides`: data, schedule,
budget, strategy ``_target_``):

- the loop runs ``--rounds`` rounds. Each round queries ``--voxels_per_round`` newly annotated voxels
  (``ActiveLearningLoop(voxels_per_round=...)``): supervoxels in score order, or planar patches one after another,
  until the budget is reached. The last region or patch may overshoot by less than its own size, so every strategy
  pays the same annotation cost per round. Round 0 is the same random seed query for every strategy of a seed.
  The simulated annotator reveals the ground truth. The network is then retrained by the bundle's
  ``SupervisedTrainer`` for ``--num_epochs`` x ``--epoch_length`` Adam iterations on patches (``roi_size``) centred
  on annotated voxels (``RandWeightedCropd`` on the annotated mask), with random flips and intensity jitter, loss
  ``PartialLabelLoss``; from the seeded initial weights every round (``warm_start`` false, the bundle default;
  ``--warm_start`` continues from the previous round). Dice / IoU are measured on the held-out cases through the
  bundle's ``SlidingWindowInferer`` (argmax; mean over the foreground classes and the held-out cases);
- strategies (``_target_`` classes of ``monai_wsss.active``): ``random``, ``entropy`` (mean voxel entropy per
  supervoxel), ``geometric`` (feature + geometric uncertainty on the supervoxel graph), ``geometric_plane`` (planar
  patches by branch-and-bound, 3D only); ``margin`` and ``pairwise_entropy`` on request. On 2D data
  ``geometric_plane`` answers with ``geometric``'s region queries, so the curve would be identical; it is not run
  there and is reported as ``= geometric``;
- fully supervised reference, per (dataset, seed): the same bundle engine, initial weights and schedule, trained
  once on every pool label (``ActiveLearningLoop.train`` with the complete label maps, so the crops are uniform over
  the pool), scored on the same held-out cases, with its per-class Dice.

Metrics per (dataset, strategy), over seeds:
    - ``area``: area under the Dice-vs-annotated-voxels curve by the trapezoid rule, on the common budget grid
      ``k * voxels_per_round`` (``k = 1 .. rounds``; each curve is linearly interpolated there, clamped at its
      ends, because the real counts overshoot by less than a region). The area is divided by the grid range
      ``(rounds - 1) * voxels_per_round``, so it is the mean Dice over the budget range (0..1);
    - ``final_dice``: Dice after the last round;
    - ``budget_90``: the first annotated voxel count (a round's real count, no interpolation) at which the held-out
      Dice reaches 90 % of the seed's fully supervised Dice; reported as the mean over the seeds that reach it, with
      how many did, and as a fraction of the pool's voxels ("not reached" when no seed does);
    - ``seconds``: wall time of the run (sum of the loop's per-round seconds: query, annotation, training, evaluation);
      ``compute_seconds`` per dataset: all runs and references (``wall_seconds`` only covers this invocation, which
      is short when ``--resume`` re-aggregates finished runs).
Mean ± spread: mean over seeds, spread = max - min over seeds.

Datasets
    - ``default``: the bundle's default data, MNI152 grey / white matter slabs (``monai_wsss.data.TISSUE_DATASET``,
      3D, 131 x 155 x 5 voxels at 1.5 mm): the 5 labelled slabs are the pool, the 4 test slabs are held out. 3D UNet
      of the bundle (channels 16, 32, 64; strides (2, 2, 1) twice; instance norm), 300 supervoxels per slab.
    - ``isbi2012_em``: ``../shared/data/isbi2012_em`` (12 EM slices of 512 x 512, 2D). Converted once into
      ``<work_dir>/isbi2012_em_<downsample>x_<foreground>/`` as NIfTI (never written into the shared folder):
      intensities / 255, downsampled by ``--em_downsample`` (block mean; a label pixel is foreground when at
      least half of its block is), split by ``--em_split_seed`` into ``12 - --em_heldout`` pool and
      ``--em_heldout`` held-out slices (the same split for every seed). The PNG labels store membrane as 0 and cell
      interior as 255. ``--em_foreground membrane`` (default) makes membrane class 1, the one Dice scores, because
      cell interior covers about 78 % of the pixels and a network predicting "cell" everywhere already scores a
      cell Dice of about 0.88. ``cell`` follows the dataset's note (255 -> 1). 2D UNet (same channels, strides 2),
      300 superpixels per slice.

How to run (from the repository root; one CPU thread)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/active_learning_curves.py                 # both datasets, 3 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/active_learning_curves.py --resume        # continue / re-aggregate
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/active_learning_curves.py --datasets isbi2012_em --seeds 0 1 \\
        --out benchmarks/results/active_learning_curves_em.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/active_learning_curves.py --smoke         # about 1 minute

Outputs: ``--out`` (default ``benchmarks/results/active_learning_curves.json``, ``_smoke`` with ``--smoke``),
rewritten atomically after every run: the arguments, each run's curve and scores, the fully supervised references
and the summary per dataset and strategy. Next to it, ``<stem>_<dataset>.png``: the mean Dice curve per strategy
over seeds (band: min..max), the mean fully supervised Dice and its 90 % line. Per run, the loop's own folder
``<work_dir>/<dataset>/seed<seed>/`` (``learning_curve_<strategy>.csv`` / ``.png``, annotation states, models);
``--resume`` continues each curve at its first missing round and reuses the fully supervised references
(``full_supervision.json``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import tempfile
import time

import numpy as np
from _common import read_json

from monai_wsss.utils import atomic_write_figure, atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DATASETS = ("default", "isbi2012_em")
ALL_STRATEGIES = ("random", "entropy", "geometric", "geometric_plane")
EXTRA_STRATEGIES = ("margin", "pairwise_entropy")
DEFAULT_BUDGET = {"default": 5000, "isbi2012_em": 1000}
EM_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "isbi2012_em")
BUNDLE = os.path.join(REPO, "bundles", "geometric_active_learning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument(
        "--strategies", nargs="+", default=list(ALL_STRATEGIES), choices=list(ALL_STRATEGIES + EXTRA_STRATEGIES)
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=4, help="rounds per curve, round 0 included (default 4)")
    p.add_argument(
        "--voxels_per_round",
        type=int,
        nargs="+",
        default=None,
        help="annotated voxels per query: one value, or one per --datasets entry (default: default 5000, EM 1000)",
    )
    p.add_argument("--num_epochs", type=int, default=2, help="epochs per round and for the reference (measured: 2)")
    p.add_argument("--epoch_length", type=int, default=60, help="iterations per epoch (measured: 60)")
    p.add_argument(
        "--warm_start", action="store_true", help="retrain each round from the previous round (default: from scratch)"
    )
    p.add_argument(
        "--em_roi_size", type=int, nargs=2, default=[128, 128], help="EM training crop / sliding window (2D)"
    )
    p.add_argument("--learning_rate", type=float, default=1e-2)
    p.add_argument(
        "--dice_weight",
        type=float,
        default=0.0,
        help="weight of the masked Dice term of PartialLabelLoss next to its cross-entropy (default 0: CE only)",
    )
    p.add_argument("--n_segments", type=int, default=300, help="supervoxels per case (bundle default)")
    p.add_argument("--em_dir", default=EM_DIR)
    p.add_argument("--em_downsample", type=int, default=2, help="EM slices downsampled by this factor (512 -> 256)")
    p.add_argument("--em_heldout", type=int, default=4, help="held-out EM slices (the rest is the pool)")
    p.add_argument("--em_split_seed", type=int, default=0)
    p.add_argument("--em_foreground", default="membrane", choices=["membrane", "cell"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (also run with OMP_NUM_THREADS=1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="default benchmarks/results/active_learning_curves[_smoke].json")
    p.add_argument("--work_dir", default=None, help="default /tmp/al_curves_bench (/tmp/al_curves_bench_smoke)")
    p.add_argument("--resume", action="store_true", help="continue curves and reuse finished references")
    p.add_argument("--smoke", action="store_true", help="1 seed, 2 rounds x 1 x 2 iterations, 300 voxels, EM at 128")
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.rounds, args.num_epochs, args.epoch_length = args.seeds[:1], 2, 1, 2
        args.voxels_per_round = [300]
        args.em_downsample = max(args.em_downsample, 4)
    if args.voxels_per_round is None:
        args.voxels_per_round = [DEFAULT_BUDGET[ds] for ds in args.datasets]
    if len(args.voxels_per_round) == 1:
        args.voxels_per_round = args.voxels_per_round * len(args.datasets)
    if len(args.voxels_per_round) != len(args.datasets):
        p.error("--voxels_per_round takes one value, or one per --datasets entry")
    args.budget = dict(zip(args.datasets, args.voxels_per_round, strict=True))
    stem = "active_learning_curves" + ("_smoke" if args.smoke else "")
    args.out = args.out or os.path.join(REPO, "benchmarks", "results", f"{stem}.json")
    args.work_dir = args.work_dir or os.path.join(tempfile.gettempdir(), "al_curves_bench" + ("_smoke" * args.smoke))
    if args.rounds < 2:
        p.error("--rounds must be >= 2 (the curve area needs two points)")
    return args


# ---- data ------------------------------------------------------------------------------------------------------
def default_cases() -> dict:
    """Pool (the labelled slabs) and held-out (test slabs) of the MNI152 tissue data."""
    from monai_wsss.data import TISSUE_DATASET, default_dataset_dir, load_semisupervised_datalist

    lists = load_semisupervised_datalist(
        default_dataset_dir(TISSUE_DATASET), fully_labeled_fraction=None, val_fraction=0.0
    )
    return {"name": "default", "pool": lists["labeled"], "heldout": lists["test"], "spatial_dims": 3, "num_classes": 3}


def em_cases(args: argparse.Namespace) -> dict:
    """Convert the ISBI 2012 PNG slices once into NIfTI under the work dir; seeded pool / held-out split."""
    from PIL import Image

    from monai_wsss.utils import atomic_write_nifti

    with open(os.path.join(args.em_dir, "dataset.json")) as f:
        items = json.load(f)["training"]
    f_ = int(args.em_downsample)
    root = os.path.join(args.work_dir, f"isbi2012_em_{f_}x_{args.em_foreground}")
    cases = []
    for item in items:
        stem = os.path.basename(item["image"]).split(".")[0]
        case = {k: os.path.join(root, k, f"{stem}.nii.gz") for k in ("image", "label")}
        if not all(os.path.isfile(p) for p in case.values()):
            img = np.asarray(Image.open(os.path.join(args.em_dir, item["image"])), dtype=np.float32) / 255.0
            lab = np.asarray(Image.open(os.path.join(args.em_dir, item["label"])))
            fg = (lab == 0) if args.em_foreground == "membrane" else (lab == 255)
            h, w = (img.shape[0] // f_) * f_, (img.shape[1] // f_) * f_
            img = img[:h, :w].reshape(h // f_, f_, w // f_, f_).mean((1, 3))
            fg = fg[:h, :w].reshape(h // f_, f_, w // f_, f_).mean((1, 3)) >= 0.5
            for k in case:
                os.makedirs(os.path.dirname(case[k]), exist_ok=True)
            atomic_write_nifti(case["image"], img.astype(np.float32), np.eye(4))
            atomic_write_nifti(case["label"], fg.astype(np.uint8), np.eye(4))
        cases.append(case)
    order = np.random.default_rng(args.em_split_seed).permutation(len(cases))
    held = sorted(int(i) for i in order[: args.em_heldout])
    return {
        "name": "isbi2012_em",
        "pool": [c for i, c in enumerate(cases) if i not in held],
        "heldout": [cases[i] for i in held],
        "spatial_dims": 2,
        "num_classes": 2,
    }


# ---- runs ------------------------------------------------------------------------------------------------------
STRATEGY_TARGETS = {
    "random": {"_target_": "monai_wsss.active.RandomStrategy"},
    "entropy": {"_target_": "monai_wsss.active.EntropyStrategy"},
    "margin": {"_target_": "monai_wsss.active.MarginStrategy"},
    "pairwise_entropy": {"_target_": "monai_wsss.active.PairwiseEntropyStrategy"},
    "geometric": {
        "_target_": "monai_wsss.active.GeometricStrategy",
        "geometric_weight": "@geometric_weight",
        "walk_steps": "@walk_steps",
    },
    "geometric_plane": {
        "_target_": "monai_wsss.active.GeometricPlaneStrategy",
        "plane_radius": "@plane_radius",
        "plane_thickness": "@plane_thickness",
        "plane_angles": "@plane_angles",
        "geometric_weight": "@geometric_weight",
        "walk_steps": "@walk_steps",
    },
}


@functools.cache
def bundle_config() -> dict:
    """The bundle's train.json, read once per process (a run started later sees the same config)."""
    return read_json(os.path.join(BUNDLE, "configs", "train.json"))


def bundle_overrides(data: dict, strategy: str, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    """The overrides of ``bundles/geometric_active_learning/configs/train.json`` for one run (the bundle's engine,
    crops, augmentations, inferer and loss; only the data, schedule and budget change)."""
    three_d = data["spatial_dims"] == 3
    over = {
        "bundle_root": BUNDLE,
        "output_dir": run_dir,
        "cache_dir": os.path.join(args.work_dir, "supervoxel_cache"),
        "device": args.device,
        "seed": seed,
        "strategy": STRATEGY_TARGETS[strategy],
        "num_rounds": args.rounds,
        "voxels_per_round": args.budget[data["name"]],
        "num_epochs": args.num_epochs,
        "epoch_length": args.epoch_length,
        "learning_rate": args.learning_rate,
        "dice_weight": args.dice_weight,
        "warm_start": args.warm_start,
        "n_segments": args.n_segments,
        "num_classes": data["num_classes"],
        "image_channels": 1,
        "train::handlers#0#_disabled_": True,  # no progress bar in the benchmark's logs
        "loop#pool": data["pool"],
        "loop#heldout": data["heldout"],
        "train::dataset#data": data["pool"],
    }
    if not three_d:
        over.update(
            {"spatial_dims": 2, "network_strides": [2, 2], "divisible_by": [4, 4], "roi_size": args.em_roi_size}
        )
    return over


def make_loop(data: dict, strategy: str, seed: int, run_dir: str, args: argparse.Namespace):
    """The bundle's loop for one run, parsed from its train.json with :py:func:`bundle_overrides`; the bundle's
    ``initialize`` (``set_determinism(seed)``) runs before the network is built, so every strategy and the
    reference of a seed start from the same weights."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(copy.deepcopy(bundle_config()))
    parser.update(bundle_overrides(data, strategy, seed, run_dir, args))
    parser.get_parsed_content("initialize")
    return parser.get_parsed_content("loop")


def full_reference(data: dict, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    """Same bundle engine, network, initial weights and schedule, trained on every pool label; cached in the run
    folder."""
    path = os.path.join(run_dir, "full_supervision.json")
    cached = read_json(path) if args.resume else None
    schedule = {"num_epochs": args.num_epochs, "epoch_length": args.epoch_length, "dice_weight": args.dice_weight}
    if cached and all(cached.get(k) == v for k, v in schedule.items()):
        return cached
    loop = make_loop(data, "random", seed, run_dir, args)
    t0 = time.time()
    loss = loop.train(0, [c["label"].astype(np.int64) for c in loop.pool])
    dice, iou, per_class = loop.evaluate()
    rec = {
        "seed": seed,
        **schedule,
        "dice": dice,
        "dice_per_class": per_class,
        "iou": iou,
        "train_loss": loss,
        "pool_voxels": int(sum(np.prod(c["image"].shape[1:]) for c in loop.pool)),
        "seconds": time.time() - t0,
    }
    atomic_write_json(path, rec)
    return rec


def run_curve(data: dict, strategy: str, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    csv_path = os.path.join(run_dir, f"learning_curve_{strategy}.csv")
    if not args.resume and os.path.isfile(csv_path):
        raise SystemExit(f"{csv_path} exists: pass --resume to continue it, or choose another --work_dir.")
    loop = make_loop(data, strategy, seed, run_dir, args)
    rows = loop.run(args.rounds)
    labels = np.concatenate([loop.state(c).labels.ravel() for c in loop.pool])
    counts = np.bincount(labels[labels != loop.ignore_value].astype(np.int64), minlength=data["num_classes"])
    return {
        "annotated_class_fractions": [float(c) for c in counts / max(int(counts.sum()), 1)],
        "strategy": strategy,
        "seed": seed,
        "annotated_voxels": [int(r["annotated_voxels"]) for r in rows],
        "queried_voxels": [int(r["queried_voxels"]) for r in rows],
        "dice": [float(r["dice"]) for r in rows],
        "iou": [float(r["iou"]) for r in rows],
        "dice_per_class": [[float(v) for v in (r.get("dice_per_class") or "").split()] for r in rows],
        "seconds": float(sum(float(r["seconds"]) for r in rows)),
    }


# ---- metrics ---------------------------------------------------------------------------------------------------
def budget_grid(ds: str, args: argparse.Namespace) -> np.ndarray:
    return args.budget[ds] * np.arange(1, args.rounds + 1, dtype=np.float64)


def curve_area(x: list[int], y: list[float], grid: np.ndarray) -> float:
    """Trapezoid area of Dice over the budget grid (curve interpolated there), divided by the grid range."""
    yi = np.interp(grid, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return float(np.sum((yi[1:] + yi[:-1]) / 2 * np.diff(grid)) / (grid[-1] - grid[0]))


def budget_to_reach(x: list[int], y: list[float], target: float) -> int | None:
    for xi, yi in zip(x, y, strict=True):
        if yi >= target:
            return int(xi)
    return None


def _stat(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "spread": float(v.max() - v.min()), "values": [float(a) for a in v]}


def class_areas(runs: list[dict], grid: np.ndarray) -> list[dict] | None:
    """Curve area of each foreground class's Dice (runs that recorded ``dice_per_class`` in every round)."""
    if not all(r.get("dice_per_class") and all(r["dice_per_class"]) for r in runs):
        return None
    n = len(runs[0]["dice_per_class"][0])
    return [
        _stat([curve_area(r["annotated_voxels"], [d[k] for d in r["dice_per_class"]], grid) for r in runs])
        for k in range(n)
    ]


def summarise(ds: str, runs: list[dict], refs: dict[int, dict], args: argparse.Namespace) -> dict:
    grid = budget_grid(ds, args)
    pool = next(iter(refs.values()))["pool_voxels"]
    out = {
        "full_supervision_dice": _stat([r["dice"] for r in refs.values()]),
        "full_supervision_dice_per_class": [
            _stat([r["dice_per_class"][k] for r in refs.values()])
            for k in range(len(next(iter(refs.values()))["dice_per_class"]))
        ],
        "target_fraction": 0.9,
        "pool_voxels": pool,
        "compute_seconds": float(sum(r["seconds"] for r in runs) + sum(r["seconds"] for r in refs.values())),
        "strategies": {},
    }
    for strategy in args.strategies:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            continue
        reach = [budget_to_reach(r["annotated_voxels"], r["dice"], 0.9 * refs[r["seed"]]["dice"]) for r in mine]
        hit = [b for b in reach if b is not None]
        out["strategies"][strategy] = {
            "seeds": [r["seed"] for r in mine],
            "area": _stat([curve_area(r["annotated_voxels"], r["dice"], grid) for r in mine]),
            "area_per_class": class_areas(mine, grid),
            "annotated_class_fractions": [
                _stat([r["annotated_class_fractions"][k] for r in mine])["mean"]
                for k in range(len(mine[0].get("annotated_class_fractions", [])))
            ],
            "final_dice": _stat([r["dice"][-1] for r in mine]),
            "final_dice_per_class": [
                _stat([r["dice_per_class"][-1][k] for r in mine]) for k in range(len(mine[0]["dice_per_class"][-1]))
            ],
            "final_annotated_voxels": _stat([r["annotated_voxels"][-1] for r in mine]),
            "budget_90_per_seed": reach,
            "budget_90_reached": f"{len(hit)}/{len(mine)}",
            "budget_90_mean_voxels": float(np.mean(hit)) if hit else None,
            "budget_90_mean_fraction": float(np.mean(hit)) / pool if hit else None,
            "seconds": _stat([r["seconds"] for r in mine]),
            "mean_curve": {
                "budget": [float(g) for g in grid],
                "dice": [
                    float(v) for v in np.mean([np.interp(grid, r["annotated_voxels"], r["dice"]) for r in mine], 0)
                ],
            },
        }
    return out


def print_table(ds: str, summary: dict, args: argparse.Namespace) -> None:
    ref = summary["full_supervision_dice"]
    print(
        f"\n{ds}: fully supervised Dice {ref['mean']:.3f} ± {ref['spread']:.3f} (pool {summary['pool_voxels']} "
        f"voxels; 90 % target per seed); {args.rounds} rounds x {args.budget[ds]} voxels, "
        f"{args.num_epochs} x {args.epoch_length} iterations, seeds {args.seeds}; "
        f"runs + references {summary['compute_seconds']:.0f} s"
    )
    per_ref = ", ".join(
        f"class {k + 1} {a['mean']:.3f} ± {a['spread']:.3f}"
        for k, a in enumerate(summary["full_supervision_dice_per_class"])
    )
    print(f"fully supervised per-class Dice: {per_ref}")
    print(f"{'strategy':<16} {'area (mean Dice)':>18} {'final Dice':>16} {'budget to 90 %':>30} {'s/run':>7}")
    for strategy, s in summary["strategies"].items():
        b = s["budget_90_mean_voxels"]
        reach = "not reached" if b is None else f"{b:.0f} ({100 * s['budget_90_mean_fraction']:.2f} %)"
        reach += f" [{s['budget_90_reached']}]"
        print(
            f"{strategy:<16} {s['area']['mean']:>10.3f} ± {s['area']['spread']:.3f} "
            f"{s['final_dice']['mean']:>8.3f} ± {s['final_dice']['spread']:.3f} {reach:>30} "
            f"{s['seconds']['mean']:>7.0f}"
        )
        if s["area_per_class"] and len(s["area_per_class"]) > 1:
            per = ", ".join(
                f"class {k + 1} {a['mean']:.3f} ± {a['spread']:.3f}" for k, a in enumerate(s["area_per_class"])
            )
            fr = ", ".join(f"{100 * f:.1f} %" for f in s["annotated_class_fractions"])
            fin = ", ".join(
                f"class {k + 1} {a['mean']:.3f} ± {a['spread']:.3f}" for k, a in enumerate(s["final_dice_per_class"])
            )
            print(f"{'':<16} per-class area: {per}; final per-class Dice: {fin}; annotated voxels per class: {fr}")
    if ds == "isbi2012_em" and "geometric_plane" in args.strategies:
        print(f"{'geometric_plane':<16} = geometric (2D: the loop queries geometric regions; not run)")


def plot_summary(ds: str, summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (strategy, s) in enumerate(summary["strategies"].items()):
        x = np.asarray(s["mean_curve"]["budget"])
        ax.plot(x, s["mean_curve"]["dice"], "o-", color=f"C{i}", label=f"{strategy} ({s['area']['mean']:.3f})")
    ref = summary["full_supervision_dice"]["mean"]
    ax.axhline(ref, color="k", lw=1, label=f"fully supervised ({ref:.3f})")
    ax.axhline(0.9 * ref, color="k", lw=1, ls="--", label="90 % of fully supervised")
    ax.set_xlabel("annotated voxels")
    ax.set_ylabel("held-out Dice (mean over seeds)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{ds}: learning curves (legend: curve area)")
    try:
        atomic_write_figure(path, fig)
    finally:
        plt.close(fig)


# ---- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = bundle_config()
    bundle_keys = ("roi_size", "batch_size", "num_samples", "learning_rate", "flip_prob", "intensity_prob")
    results = {"args": vars(args), "bundle": {k: cfg[k] for k in bundle_keys}, "datasets": {}}
    t_all = time.time()
    for ds in args.datasets:
        data = default_cases() if ds == "default" else em_cases(args)
        strategies = [s for s in args.strategies if not (s == "geometric_plane" and data["spatial_dims"] == 2)]
        runs, refs = [], {}
        entry = results["datasets"].setdefault(ds, {})
        entry.update(
            {
                "pool": [c["image"] for c in data["pool"]],
                "heldout": [c["image"] for c in data["heldout"]],
                "skipped": [s for s in args.strategies if s not in strategies],
            }
        )
        for seed in args.seeds:
            run_dir = os.path.join(args.work_dir, ds, f"seed{seed}")
            os.makedirs(run_dir, exist_ok=True)
            refs[seed] = full_reference(data, seed, run_dir, args)
            print(f"[{ds} seed {seed}] fully supervised Dice {refs[seed]['dice']:.4f} ({refs[seed]['seconds']:.0f} s)")
            for strategy in strategies:
                run = run_curve(data, strategy, seed, run_dir, args)
                runs.append(run)
                print(
                    f"[{ds} seed {seed}] {strategy}: voxels {run['annotated_voxels']} Dice "
                    f"{[round(d, 3) for d in run['dice']]} ({run['seconds']:.0f} s)",
                    flush=True,
                )
                entry.update({"runs": runs, "full_supervision": list(refs.values())})
                results["wall_seconds"] = time.time() - t_all
                atomic_write_json(args.out, results)
        entry["summary"] = summarise(ds, runs, refs, args)
        results["wall_seconds"] = time.time() - t_all
        atomic_write_json(args.out, results)
        plot_summary(ds, entry["summary"], os.path.splitext(args.out)[0] + f"_{ds}.png")
    for ds, entry in results["datasets"].items():
        print_table(ds, entry["summary"], args)
    print(f"\nwall time {results['wall_seconds']:.0f} s; results: {args.out}")


if __name__ == "__main__":
    main()
