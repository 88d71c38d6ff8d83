"""
Seeds of weakly supervised segmentation from image-level tags: CAM, AdvCAM, PRM, group-wise mining and MCOF (plus the
tag-only reference), the segmenter trained on each method's pseudo-labels, and the cost of batched AdvCAM.
Run through the bundle ``bundles/weakly_supervised_seg`` itself (``train_classifier.json`` and
``make_seeds.json`` with overrides, loaded exactly as ``python -m monai.bundle run`` loads them), so what is measured
is what users run.

    - CAM: Zhou, Khosla, Lapedriza, Oliva, Torralba. Learning Deep Features for Discriminative Localization.
      CVPR 2016.
    - AdvCAM: Lee, Kim, Lee, Shim. Anti-Adversarially Manipulated Attributions for Weakly and Semi-Supervised
      Semantic Segmentation. CVPR 2021.
    - PRM: Zhou, Zhu, Ye, Qiu, Jiao. Weakly Supervised Instance Segmentation using Class Peak Response. CVPR 2018.
    - Group-wise: Li, Zhou, Li, Zhou, Zhang. Group-Wise Semantic Mining for Weakly Supervised Semantic Segmentation.
      AAAI 2021.
    - MCOF: Wang, You, Li, Ma. Weakly-Supervised Semantic Segmentation by Iteratively Mining Common Object Features.
      CVPR 2018.

Protocol, per dataset and classifier seed, each stage in a fresh subprocess (so wall time and peak RSS are its own):

1. ``train``: the bundle's multi-label classifier (``train_classifier.json``: ResNet-18 CAM classifier, 128x128
   input, Adam 1e-3, batch 16) trained on the image-level tags of the training list, ``seed`` = the classifier seed;
2. ``seeds_cam`` / ``seeds_advcam`` / ``seeds_prm`` / ``seeds_prm_maps``: ``make_seeds.json`` with ``seed_method`` =
   the method (the key of its ``seeds::methods`` component: ``CAMSeeds``, ``AdvCAMSeeds``, ``PRMSeeds`` of
   ``monai_wsss.attribution``), all from the SAME trained classifier, with the bundle's seed settings (background
   score 0.15; AdvCAM T = 8, xi = 0.08, lambda = 7, tau = 0.5, scale 1 + flip; PRM window 3; ``prm`` = peaks + instance
   retrieval from superpixel-hierarchy proposals, the bundle default; ``prm_maps`` = the summed peak response maps
   without retrieval). ``monai_wsss.apps.PseudoLabelWriter`` thresholds the
   seed of every training image and scores it against the image's real mask (pixel truth is used only here);
   ``seeds_groupwise`` after ``train_groupwise`` (``train_groupwise.json`` merged over ``train_classifier.json``: the
   group-wise network initialised from the plain classifier, its online maps; ``--groupwise_epochs``, bundle 3);
   ``seeds_mcof``: MCOF's rounds with the bundle's ``mcof::`` settings (2 rounds from the CAM seeds), per round
   ``outputs/mcof/rounds.json`` (seed and region mIoU, the round segmenter's test mIoU / Dice, seconds);
3. ``segment_<method>`` (and ``segment_tags``: the tag-only pseudo-labels, written from the CAM folder's list):
   ``segment.json`` with ``--dataset_dir`` = that method's pseudo-label folder (its ``test`` list holds the real test
   images and masks), ``segment::num_epochs`` x ``segment::epoch_length`` = ``--seg_epochs`` x
   ``--seg_epoch_length`` (default 10 x 12), seed = the classifier seed; test mIoU / Dice / IoU read from the
   ``metrics.csv`` that the recipe writes. These are MONAI's per-image means (not pooled like the seed IoUs):
   ``dice`` and ``jaccard`` (the table's "fg IoU") over the foreground classes of the images that contain them;
   ``miou`` with the background included, so a negative image counts with its background IoU alone and a segmenter
   that predicts little foreground scores a high mIoU with a low Dice (PRM on la2018).

Seed metrics (the writer's ``seed_metrics.json``; IoU pooled over all training images, each seed resized to its
image's own size):

    - ``seed_iou``: per class, pixels labelled c by the pseudo-label vs pixels of class c in the truth;
    - ``seed_fg_iou``: foreground IoU over all classes (any class vs background; for ``blood_smear``: cell vs not);
    - ``seed_miou``: mean of the background IoU and the per-class IoUs (the papers' seed mIoU);
    - ``best_threshold``: the best foreground IoU over background scores 0.05..0.95 (chosen on the same masks, so
      optimistic; reported, never used to pick settings);
    - ``seconds``: the seed step's wall time (image loading and writing included), and the stage's wall time and
      peak RSS (``os.wait4``) with start-up;
    - ``tag_only_baseline`` (per dataset): the same IoUs for the trivial seed that labels every pixel of a tagged
      image with its tag and every pixel of a negative image background; a method localises only where it beats it.

Speed and equality of AdvCAM (``speed_*`` stages, classifier of the first seed, bundle AdvCAM settings, the first
``--speed_batch`` positive training images after the bundle's inference preprocessing):

    - ``batched``: one ``AdvCAM.__call__`` on the batch with its tags (all (image, flip, class) instances attacked at
      once);
    - ``reference``: ``advcam_reference`` per (image, present class) instance, one at a time, batch size 1;
    - both after one untimed warm-up call on one image; images per second, the maximum absolute difference of the
      two ``(B, K, H, W)`` maps (both normalised to [0, 1]) in float32, and again in float64 on the first
      ``--float64_images`` images (``float64`` stage); peak memory: on CPU the subprocess's peak RSS and its growth
      during the timed call (``ru_maxrss`` after minus before); on CUDA ``torch.cuda.max_memory_allocated`` of the
      timed call (peak statistics reset after the warm-up).

Datasets
    - ``default``: the bundle's default data, ``monai_wsss.data.TAGGED_NUCLEI_DATASET`` (stardist fluorescence
      nuclei, 32x32 tiles, one class ``nucleus``; 192 training tiles, 145 tagged nucleus, 47 negative); the bundle's
      default schedule (15 epochs x 12 iterations).
    - ``blood_smear``: ``../shared/data/blood_smear`` (Zheng et al., Micron 2018: 116 RGB smears of one white blood
      cell each, 120x120 or 300x300, masks 0/128/255). It is converted into a tagged folder under
      ``<work_dir>/blood_smear_tagged`` (the shared folder is never written): ``classes`` = the WBC classes that occur
      in the data (neutrophil, lymphocyte, monocyte, eosinophil; no basophil image is included, and a class without
      pixels would score IoU 0 in the writer's mean), ``class_labels`` = ``[wbc_class]``, image = the original PNG,
      label = a PNG with 0 = background and (class index + 1) on the whole cell (mask >= 64: cytoplasm and nucleus;
      the stray values below 64 are background). Split: 20 % of each subset (dataset1 / dataset2) held out as
      ``test`` with ``--split_seed`` (same split for every classifier seed; seeds are scored on the training list
      only). Images are resized to 128x128 for the classifier by the bundle's preprocessing, seeds are resized
      back. Schedule: ``--blood_smear_epochs`` (default 36) x 5 iterations of 16 = 180 iterations, the default
      data's iteration count.
    - ``la2018``: ``../shared/data/la2018`` (40 left-atrium LGE MR volumes, grey levels 0..255) turned into axial slice
      tags by ``monai_wsss.data.build_slice_tag_dataset`` under ``<work_dir>/la2018_slices`` (min_pixels 50, cases
      1-32 training, 33-40 test, every ``--la2018_slice_step``-th slice, default 4); 1-channel 2D NIfTI slices (about
      91x70), read by the bundle's own loaders with its intensity range 0..255; classifier epochs
      ``--la2018_epochs`` (default: the bundle's 15) x (training slices // 16) iterations.

How to run (from the repository root; 1 thread per stage)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cam_seeds.py --threads 1              # three datasets, 2 seeds
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cam_seeds.py --resume --threads 1     # continue / re-aggregate
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cam_seeds.py --smoke --threads 1      # plumbing only
    .venv/bin/python benchmarks/cam_seeds.py --device cuda --threads 4                  # on a GPU

Results: ``--out`` (default ``benchmarks/results/cam_seeds.json``, ``cam_seeds_smoke.json`` with ``--smoke``),
rewritten atomically after every run: arguments, per dataset its settings, per run the seed metrics of each method,
its segmenter's test metrics, MCOF per round and every stage's wall seconds and peak RSS, the mean and spread
(max - min) over seeds, and the speed / equality records. With ``--resume`` the datasets of an earlier invocation
that this one does not run are kept in the file (so datasets can be run one invocation each). Per run,
``<work_dir>/<dataset>/seed<seed>/`` holds the bundle's outputs (``models/model.pt``, ``outputs/`` with the learning
curve, the pseudo-label folders with their ``seed_metrics.json`` and the seed panels, ``models/groupwise/``,
``outputs/mcof/``, ``eval/segmenter_<method>/``), one log and one JSON record per stage (``--resume`` reuses them);
``<work_dir>/<dataset>/speed/`` the speed records and maps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import time

import numpy as np
from _common import read_json, run_stage_process

from monai_wsss.utils import atomic_path, atomic_write_json, atomic_write_torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "bundles", "weakly_supervised_seg")
CONFIGS = os.path.join(BUNDLE, "configs")
DATASETS = ("default", "blood_smear", "la2018")
METHODS = ("cam", "advcam", "prm", "groupwise", "mcof", "prm_maps")
DEFAULT_METHODS = ("cam", "advcam", "prm", "groupwise", "mcof")
# method -> make_seeds.json overrides: "prm" = PRM with instance retrieval (the bundle default), "prm_maps" = summed
# peak response maps without retrieval
METHOD_OVERRIDES = {
    "cam": {"seed_method": "cam"},
    "advcam": {"seed_method": "advcam"},
    "prm": {"seed_method": "prm", "prm_instances": True},
    "prm_maps": {"seed_method": "prm", "prm_instances": False},
    "groupwise": {"seed_method": "groupwise"},
    "mcof": {"seed_method": "mcof"},
}
# the la2018 slice-tag set (cases 1-32 training, 33-40 test)
LA2018_MIN_PIXELS = 50
LA2018_NUM_TEST = 8
# smoke-only MCOF schedule (the real run keeps the bundle's MCOF settings)
MCOF_SMOKE = {
    "mcof::num_rounds": 1,
    "mcof::region_epochs": 2,
    "mcof::segmenter::num_epochs": 1,
    "mcof::segmenter::epoch_length": 2,
}
WBC_CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")
SPEED_MODES = ("batched", "reference", "float64")


def bundle_default(key: str, config: str) -> object:
    with open(os.path.join(CONFIGS, config)) as f:
        return json.load(f)[key]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="classifier seeds (1337 2024; smoke: 1337)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--blood_smear_dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "blood_smear"))
    p.add_argument("--la2018_dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "la2018"))
    p.add_argument("--la2018_slice_step", type=int, default=4, help="keep every k-th axial slice of each la2018 case")
    p.add_argument("--la2018_epochs", type=int, default=None, help="classifier epochs, la2018 (default: the bundle's)")
    p.add_argument("--groupwise_epochs", type=int, default=None, help="group-wise training epochs (bundle: 3)")
    p.add_argument("--seg_epochs", type=int, default=10, help="final segmenter epochs (segment::num_epochs)")
    p.add_argument("--seg_epoch_length", type=int, default=12, help="final segmenter iterations per epoch")
    p.add_argument("--skip_segment", action="store_true", help="no final segmenter stages")
    p.add_argument("--skip_tags_segment", action="store_true", help="no segmenter on the tag-only pseudo-labels")
    p.add_argument("--split_seed", type=int, default=0, help="seed of the blood_smear train / test split")
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs, default data (bundle: 15)")
    p.add_argument("--blood_smear_epochs", type=int, default=36, help="classifier epochs, blood_smear")
    p.add_argument("--epoch_length", type=int, default=None, help="iterations per epoch (bundle: training // 16)")
    p.add_argument("--advcam_steps", type=int, default=None, help="AdvCAM steps T (bundle default 8)")
    p.add_argument("--speed_batch", type=int, default=None, help="images of the AdvCAM speed test (default 32)")
    p.add_argument("--float64_images", type=int, default=None, help="images of the float64 check (default 4)")
    p.add_argument("--skip_speed", action="store_true", help="no AdvCAM speed / equality test")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one seed, 1 epoch x 2 iterations, AdvCAM T = 1, 1 MCOF round, segmenters 1 x 2, 2 speed images",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:0 (default: the bundle's choice)")
    p.add_argument("--threads", type=int, default=1, help="OMP / torch threads of each stage subprocess")
    p.add_argument("--work_dir", default=None, help="default /tmp/cam_seeds_bench (/tmp/cam_seeds_bench_smoke)")
    p.add_argument("--out", default=None, help="default benchmarks/results/cam_seeds.json (_smoke with --smoke)")
    p.add_argument("--resume", action="store_true", help="reuse finished stages (their JSON records)")
    p.add_argument("--markdown", action="store_true", help="print the docs' tables from --out and exit")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.seeds = args.seeds or ([1337] if args.smoke else [1337, 2024])
    if args.smoke:
        args.epochs = args.epochs or 1
        args.blood_smear_epochs = 1
        args.epoch_length = args.epoch_length or 2
        args.advcam_steps = 1 if args.advcam_steps is None else args.advcam_steps
        args.speed_batch = args.speed_batch or 2
        args.float64_images = args.float64_images or 1
        args.la2018_slice_step = max(args.la2018_slice_step, 8)
        args.la2018_epochs = 1
        args.groupwise_epochs = args.groupwise_epochs or 2
        args.seg_epochs, args.seg_epoch_length = 1, 2
    args.epochs = args.epochs or int(bundle_default("num_epochs", "train_classifier.json"))  # type: ignore[arg-type]
    args.la2018_epochs = args.la2018_epochs or args.epochs
    args.speed_batch = args.speed_batch or 32
    args.float64_images = args.float64_images or 4
    tail = "_smoke" if args.smoke else ""
    args.work_dir = args.work_dir or f"/tmp/cam_seeds_bench{tail}"
    args.out = args.out or os.path.join(REPO, "benchmarks", "results", f"cam_seeds{tail}.json")
    return args


# ---------------------------------------------------------------- data


def blood_smear_tagged(src: str, out_dir: str, split_seed: int) -> str:
    """
    Write a tagged copy of ``blood_smear`` into ``out_dir`` (``dataset.json`` + ``labels/*.png``; images stay where
    they are): tag = the image's ``wbc_class``, label = (class index + 1) on the whole cell (mask >= 64).
    """
    from PIL import Image

    with open(os.path.join(src, "dataset.json")) as f:
        meta = json.load(f)
    items = meta["training"]
    classes = [c for c in WBC_CLASSES if any(i["wbc_class"] == c for i in items)]
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    rng = np.random.default_rng(split_seed)
    test_names: set[str] = set()
    for subset in sorted({i["subset"] for i in items}):
        names = sorted(i["image"] for i in items if i["subset"] == subset)
        test_names.update(rng.permutation(names)[: int(round(0.2 * len(names)))].tolist())
    lists: dict[str, list] = {"training": [], "test": []}
    for item in sorted(items, key=lambda i: i["image"]):
        mask = np.asarray(Image.open(os.path.join(src, item["label"])))
        if mask.ndim == 3:
            mask = mask[..., 0]
        label = ((mask >= 64) * (classes.index(item["wbc_class"]) + 1)).astype(np.uint8)
        label_path = os.path.join(out_dir, "labels", os.path.basename(item["label"]))
        with atomic_path(label_path, ".png") as tmp:
            Image.fromarray(label, mode="L").save(tmp, format="PNG")
        entry = {
            "image": os.path.abspath(os.path.join(src, item["image"])),
            "label": os.path.abspath(label_path),
            "class_labels": [item["wbc_class"]],
            "subset": item["subset"],
        }
        lists["test" if item["image"] in test_names else "training"].append(entry)
    tagged = {
        "name": "blood_smear tagged by white-cell class",
        "description": (
            f"{src} with image-level tags = wbc_class; label: 0 background, class index + 1 on the whole cell "
            f"(mask >= 64); 20 % of each subset held out as test (split seed {split_seed})."
        ),
        "tensorImageSize": "2D",
        "labels": {"0": "background", **{str(c + 1): name for c, name in enumerate(classes)}},
        "classes": classes,
        "numTraining": len(lists["training"]),
        "numTest": len(lists["test"]),
        **lists,
    }
    atomic_write_json(os.path.join(out_dir, "dataset.json"), tagged)
    return out_dir


def dataset_dir(name: str, args: argparse.Namespace) -> str:
    if name == "blood_smear":
        if not os.path.isfile(os.path.join(args.blood_smear_dir, "dataset.json")):
            raise SystemExit(f"{args.blood_smear_dir}: no dataset.json (set --blood_smear_dir).")
        return blood_smear_tagged(
            os.path.abspath(args.blood_smear_dir), os.path.join(args.work_dir, "blood_smear_tagged"), args.split_seed
        )
    if name == "la2018":
        return la2018_slices(args)
    from monai_wsss.data import TAGGED_NUCLEI_DATASET, default_dataset_dir

    return default_dataset_dir(TAGGED_NUCLEI_DATASET)


def la2018_slices(args: argparse.Namespace) -> str:
    """
    The la2018 slice-tag set (``monai_wsss.data.build_slice_tag_dataset``: axial slices, tag = left atrium where the
    real mask has >= 50 pixels, last 8 cases = test, every ``--la2018_slice_step``-th slice) under ``<work_dir>``;
    reused when its tagging settings match.
    """
    from monai_wsss.data import build_slice_tag_dataset

    src = os.path.abspath(args.la2018_dir)
    if not os.path.isfile(os.path.join(src, "dataset.json")):
        raise SystemExit(f"{src}: no dataset.json (set --la2018_dir).")
    out = os.path.join(args.work_dir, "la2018_slices")
    want = {"min_pixels": LA2018_MIN_PIXELS, "num_test": LA2018_NUM_TEST, "slice_step": args.la2018_slice_step}
    old = read_json(os.path.join(out, "dataset.json")) or {}
    if old.get("benchmark_affine") == "identity" and all(old.get("tagging", {}).get(k) == v for k, v in want.items()):
        return out
    build_slice_tag_dataset(src, out, **want)
    # the 2026-12-02 figures were measured on slices rewritten with the identity affine (pixel grid and values
    # unchanged, spacing dropped), because PseudoLabelWriter then wrote NIfTI labels without their image's affine;
    # the writer keeps it since, and the rewrite stays so those figures reproduce
    import nibabel as nib

    from monai_wsss.utils import atomic_write_nifti

    meta = read_json(os.path.join(out, "dataset.json")) or {}
    for item in meta["training"] + meta["test"]:
        for key in ("image", "label"):
            path = os.path.join(out, item[key])
            atomic_write_nifti(path, np.asarray(nib.load(path).dataobj), np.eye(4))
    meta["benchmark_affine"] = "identity"
    atomic_write_json(os.path.join(out, "dataset.json"), meta)
    return out


def tag_only_folder(cam_dir: str, out_dir: str) -> str:
    """
    A pseudo-label folder like the writer's (same images, tags and real test list as ``cam_dir``) whose labels are
    the tag-only seed: every pixel of a tagged image = its (first) tagged class, a negative image all background.
    """
    import torch
    from monai.transforms import LoadImage

    from monai_wsss.utils import atomic_write_image

    meta = read_json(os.path.join(cam_dir, "dataset.json"))
    if meta is None:
        raise SystemExit(f"{cam_dir}: no dataset.json (the CAM seeds stage must run first).")
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    for item in meta["training"]:
        tags = np.asarray(item["class_labels"])
        value = int(np.argmax(tags)) + 1 if tags.sum() > 0 else 0
        size = tuple(loader(item["image"]).shape[1:])
        atomic_write_image(os.path.join(out_dir, item["label"]), torch.full((1, *size), value, dtype=torch.uint8))
    meta.update(name="pseudo-labels (tag-only)", seed_method="tags")
    meta["description"] = "Tag-only pseudo-labels: the whole image = its tagged class; test: real images and masks."
    atomic_write_json(os.path.join(out_dir, "dataset.json"), meta)
    return out_dir


def tag_only_baseline(data_dir: str) -> dict:
    """
    Seed metrics of the trivial seed that uses the tags only: every pixel of a tagged image gets its (first) tagged
    class, every pixel of a negative image background, scored like the writer scores seeds (IoU pooled over the
    training images). A seed method has learned to localise only where it beats this.
    """
    from monai.transforms import LoadImage

    from monai_wsss.data import load_tagged_datalist

    tagged = load_tagged_datalist(data_dir)
    classes, loader = tagged["classes"], LoadImage(image_only=True, ensure_channel_first=True)
    inter, union = np.zeros(len(classes) + 1), np.zeros(len(classes) + 1)
    for item in tagged["training"]:
        truth = np.asarray(loader(item["label"]))[0].round().astype(np.int64)
        tags = np.asarray(item["class_labels"])
        pred = np.full_like(truth, int(np.argmax(tags)) + 1 if tags.sum() > 0 else 0)
        for c in range(len(classes) + 1):
            inter[c] += float(((pred == c) & (truth == c)).sum())
            union[c] += float(((pred == c) | (truth == c)).sum())
    iou = inter / np.maximum(union, 1)
    return {
        "seed_iou": {name: float(iou[c + 1]) for c, name in enumerate(classes)},
        "seed_background_iou": float(iou[0]),
        "seed_miou": float(iou.mean()),
        "seed_fg_iou": float(inter[1:].sum() / max(union[1:].sum(), 1)),
    }


# ---------------------------------------------------------------- stages (subprocesses)


def _workflow(configs: tuple[str, ...], overrides: dict):
    from monai.bundle.scripts import create_workflow

    return create_workflow(config_file=[os.path.join(CONFIGS, c) for c in configs], bundle_root=BUNDLE, **overrides)


def _loss_by_epoch(csv_path: str, epoch_length: int) -> list[float]:
    with open(csv_path, newline="") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]
    return [float(np.mean(loss[i : i + epoch_length])) for i in range(0, len(loss), epoch_length)]


def run_train(spec: dict) -> dict:
    wf = _workflow(tuple(spec.get("configs", ("train_classifier.json",))), spec["overrides"])
    trainer = wf.parser.get_parsed_content("train::trainer")  # data cached, network built: not timed
    start = time.perf_counter()
    wf.run()
    seconds = time.perf_counter() - start
    wf.finalize()
    epoch_length = int(wf.parser.get_parsed_content("epoch_length"))
    curve = os.path.join(wf.parser.get_parsed_content("output_dir"), "classifier_learning_curve.csv")
    loss = _loss_by_epoch(curve, epoch_length)
    return {
        "iterations": int(trainer.state.iteration),
        "epoch_length": epoch_length,
        "train_seconds": seconds,
        "seconds_per_iteration": seconds / max(1, trainer.state.iteration),
        "loss_first_epoch": loss[0],
        "loss_last_epoch": loss[-1],
        "num_training": len(wf.parser.get_parsed_content("tagged")["training"]),
    }


def run_seeds(spec: dict) -> dict:
    wf = _workflow(("train_classifier.json", "make_seeds.json"), spec["overrides"])
    wf.parser.get_parsed_content("seeds::writer")  # classifier loaded: not timed
    start = time.perf_counter()
    wf.run()
    seconds = time.perf_counter() - start
    wf.finalize()
    metrics = read_json(os.path.join(wf.parser.get_parsed_content("pseudo_label_dir"), "seed_metrics.json"))
    if not metrics or "seed_miou" not in metrics:
        raise RuntimeError("the seed writer scored no image (do the training items have a 'label'?)")
    record = {"metrics": metrics, "run_seconds": seconds}
    record["pseudo_label_dir"] = wf.parser.get_parsed_content("pseudo_label_dir")
    if spec["overrides"].get("seed_method") == "mcof":
        record["mcof_rounds"] = read_json(os.path.join(wf.parser.get_parsed_content("mcof::output_dir"), "rounds.json"))
    return record


def _read_metrics_csv(path: str) -> dict:
    """MONAI ``MetricsSaver``'s ``metrics.csv`` (``name<TAB>value`` lines) as floats where they parse."""
    out: dict = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2:
                    try:
                        out[parts[0]] = float(parts[1])
                    except ValueError:
                        out[parts[0]] = parts[1]
    return out


def run_segment(spec: dict) -> dict:
    """``segment.json`` on one pseudo-label folder: train, evaluate on its real test list, read ``metrics.csv``."""
    from monai_wsss.utils import to_jsonable

    wf = _workflow(("segment.json",), spec["overrides"])
    trainer = wf.parser.get_parsed_content("segment::trainer")
    start = time.perf_counter()
    wf.run()
    seconds = time.perf_counter() - start
    state = to_jsonable(dict(wf.parser.get_parsed_content("segment::evaluator").state.metrics))
    wf.finalize()
    out_dir = wf.parser.get_parsed_content("segment::output_dir")
    written = _read_metrics_csv(os.path.join(out_dir, "metrics.csv"))
    metrics = {k: written.get(k, state.get(k)) for k in ("dice", "jaccard", "miou")}
    return {
        "metrics": metrics,
        "metrics_csv": written,
        "evaluator_metrics": state,
        "train_seconds": seconds,
        "iterations": int(trainer.state.iteration),
        "num_test": len(wf.parser.get_parsed_content("segment::test_data")),
        "num_training": len(wf.parser.get_parsed_content("segment::train_data")),
    }


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_speed(spec: dict) -> dict:
    """One AdvCAM mode on the first positive training images; maps saved to ``spec['maps']``."""
    import torch

    from monai_wsss.attribution import advcam_reference

    wf = _workflow(("train_classifier.json", "make_seeds.json"), spec["overrides"])
    advcam = wf.parser.get_parsed_content("advcam")
    device = torch.device(wf.parser.get_parsed_content("device"))
    pre = wf.parser.get_parsed_content("infer_preprocessing")
    items = [i for i in wf.parser.get_parsed_content("tagged")["training"] if np.asarray(i["class_labels"]).sum() > 0]
    items = items[: spec["num_images"]]
    x = torch.stack([torch.as_tensor(pre({"image": i["image"]})["image"]) for i in items]).float().to(device)
    tags = torch.stack([torch.as_tensor(np.asarray(i["class_labels"], dtype=np.float32)) for i in items]).to(device)
    mode = spec["mode"]
    if mode == "float64":
        advcam.model.double()
        x = x.double()
    pos = [(int(b), int(k)) for b, k in torch.nonzero(tags > 0).tolist()]

    def batched() -> torch.Tensor:
        return advcam(x, tags).detach()

    def reference() -> torch.Tensor:
        out = x.new_zeros((x.shape[0], tags.shape[1], *x.shape[2:]))
        for b, k in pos:
            out[b, k] = advcam_reference(advcam, x[b], k).detach()
        return out

    record: dict = {"mode": mode, "num_images": len(items), "num_instances": len(pos), "device": str(device)}
    record["input_shape"] = list(x.shape)
    record["dtype"] = str(x.dtype).replace("torch.", "")
    if mode == "float64":  # equality only, both ways on the same images
        maps_b, maps_r = batched(), reference()
        record["max_abs_diff"] = float((maps_b - maps_r).abs().max())
        record["nonzero_fraction"] = float((maps_b > 0).double().mean())
        return record
    if mode == "batched":  # warm-up, untimed
        advcam(x[:1], tags[:1])
    else:
        advcam_reference(advcam, x[0], pos[0][1])
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    start = time.perf_counter()
    maps = batched() if mode == "batched" else reference()
    _sync(device)
    seconds = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    record.update(
        seconds=seconds,
        images_per_second=len(items) / seconds,
        instances_per_second=len(pos) / seconds,
        peak_rss_before_mb=rss_before,
        peak_rss_mb=rss_after,
        peak_rss_growth_mb=rss_after - rss_before,
        nonzero_fraction=float((maps > 0).float().mean()),  # an all-zero map would make the equality check void
    )
    if device.type == "cuda":
        record["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    atomic_write_torch(spec["maps"], maps.cpu())
    return record


def run_stage(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    kind = spec["stage"].split("_")[0]
    record = {"train": run_train, "seeds": run_seeds, "speed": run_speed, "segment": run_segment}[kind](spec)
    record.update(stage=spec["stage"], overrides=spec["overrides"])
    atomic_write_json(spec["result"], record)


# ---------------------------------------------------------------- orchestration


def launch(name: str, spec: dict, run_dir: str, threads: int) -> dict:
    """Run one stage in a fresh subprocess; return its record with wall seconds and peak RSS (``os.wait4``)."""
    spec_path = os.path.join(run_dir, f"stage_{name}_spec.json")
    atomic_write_json(spec_path, spec)
    seconds, rss = run_stage_process(__file__, spec_path, os.path.join(run_dir, f"stage_{name}.log"), threads, name)
    record = read_json(spec["result"]) or {}
    record.update(stage_seconds=seconds, stage_peak_rss_mb=rss)
    atomic_write_json(spec["result"], record)
    return record


def base_overrides(ds: str, data_dir: str, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    """Every path the bundle writes to is moved under ``run_dir``; nothing is written into the bundle folder."""
    over: dict = {
        "dataset_dir": data_dir,
        "seed": seed,
        "num_epochs": {"blood_smear": args.blood_smear_epochs, "la2018": args.la2018_epochs}.get(ds, args.epochs),
        "ckpt_dir": os.path.join(run_dir, "models"),
        "output_dir": os.path.join(run_dir, "outputs"),
        "resume": False,
    }
    if args.epoch_length:
        over["epoch_length"] = args.epoch_length
    if args.device:
        over["device"] = f"$torch.device('{args.device}')"
    return over


def stage(name: str, over: dict, run_dir: str, args: argparse.Namespace, redo: bool, **extra) -> tuple[dict, bool]:
    """Run or reuse (``--resume``, same overrides and extras, no earlier stage redone) one stage."""
    result = os.path.join(run_dir, f"stage_{name}.json")
    spec = {"stage": name, "overrides": over, "threads": args.threads, "result": result, **extra}
    old = None if redo or not args.resume else read_json(result)
    if old is not None and old.get("overrides") == over and all(old.get(f"_{k}") == v for k, v in extra.items()):
        return old, False
    tag = os.path.relpath(run_dir, args.work_dir)
    print(f"[{tag}] {name} ...", flush=True)
    record = launch(name, spec, run_dir, args.threads)
    record.update({f"_{k}": v for k, v in extra.items()})
    atomic_write_json(result, record)
    print(f"[{tag}] {name}: {record['stage_seconds']:.1f} s, peak RSS {record['stage_peak_rss_mb']:.0f} MB", flush=True)
    return record, True


def _seed_entry(rec: dict) -> dict:
    m = rec["metrics"]
    entry = {
        k: m[k] for k in ("seed_miou", "seed_fg_iou", "seed_background_iou", "seed_iou", "best_threshold", "seconds")
    }
    entry.update(
        images_per_second=m["images_per_second"],
        stage_seconds=rec["stage_seconds"],
        stage_peak_rss_mb=rec["stage_peak_rss_mb"],
        num_images=m["num_images"],
        num_positive=m["num_positive"],
    )
    for k in ("groupwise_accumulated", "groupwise_computed"):
        if k in m:
            entry[k] = m[k]
    return entry


def _mcof_rounds(rounds: dict | None) -> dict | None:
    """Per MCOF round: seed / region mIoU and fg IoU on the training images, segmenter test mIoU / Dice, seconds."""
    if not rounds:
        return None
    out = []
    for r in rounds.get("rounds", []):
        seg = r.get("segmenter", {})
        out.append(
            {
                "round": r["round"],
                "seeds_from": r.get("seeds_from"),
                "seed_miou": r.get("seeds", {}).get("seed_miou"),
                "seed_fg_iou": r.get("seeds", {}).get("seed_fg_iou"),
                "region_miou": r.get("regions", {}).get("seed_miou"),
                "region_fg_iou": r.get("regions", {}).get("seed_fg_iou"),
                "segmenter_miou": seg.get("miou"),
                "segmenter_dice": seg.get("dice"),
                "region_counts": r.get("region_counts"),
                "seconds": r.get("seconds"),
            }
        )
    return {"rounds": out, "final": rounds.get("final")}


def segment_overrides(pl_dir: str, method: str, seed: int, run_dir: str, args: argparse.Namespace) -> dict:
    over: dict = {
        "dataset_dir": pl_dir,
        "seed": seed,
        "segment::num_epochs": args.seg_epochs,
        "segment::epoch_length": args.seg_epoch_length,
        "segment::ckpt_dir": os.path.join(run_dir, "models", f"segmenter_{method}"),
        "segment::output_dir": os.path.join(run_dir, "eval", f"segmenter_{method}"),
        "resume": False,
    }
    if args.device:
        over["device"] = f"$torch.device('{args.device}')"
    return over


def run_seed(ds: str, data_dir: str, seed: int, args: argparse.Namespace) -> dict:
    """One classifier seed: classifier, each method's seeds (group-wise after its own training), each segmenter."""
    run_dir = os.path.join(args.work_dir, ds, f"seed{seed}")
    os.makedirs(run_dir, exist_ok=True)
    over = base_overrides(ds, data_dir, seed, run_dir, args)
    train, redo = stage("train", over, run_dir, args, False)
    result: dict = {"dataset": ds, "seed": seed, "run_dir": run_dir, "classifier": train, "methods": {}, "stages": {}}
    result["segmenters"] = {}

    def note(name: str, rec: dict) -> None:
        result["stages"][name] = {"seconds": rec["stage_seconds"], "peak_rss_mb": rec["stage_peak_rss_mb"]}

    def segment(method: str, pl_dir: str, redo_seg: bool) -> None:
        if args.skip_segment:
            return
        rec, _ = stage(f"segment_{method}", segment_overrides(pl_dir, method, seed, run_dir, args), run_dir, args,
                       redo_seg)  # fmt: skip
        note(f"segment_{method}", rec)
        m = rec["metrics"]
        result["segmenters"][method] = {
            **m,
            "train_seconds": rec["train_seconds"],
            "stage_seconds": rec["stage_seconds"],
            "stage_peak_rss_mb": rec["stage_peak_rss_mb"],
            "num_test": rec["num_test"],
        }
        print(f"[{ds}/seed{seed}] segmenter on {method}: mIoU {m['miou']:.4f}, Dice {m['dice']:.4f}", flush=True)
        atomic_write_json(os.path.join(run_dir, "run.json"), result)

    note("train", train)
    for method in args.methods:
        o = dict(over, **METHOD_OVERRIDES[method])
        if args.advcam_steps is not None:
            o["advcam_steps"] = args.advcam_steps
        if args.smoke:
            o["panel_samples"] = 2
        redo_m = redo
        if method == "groupwise":
            go = {k: over[k] for k in ("dataset_dir", "seed", "resume") if k in over}
            go.update(
                ckpt_dir=os.path.join(run_dir, "models", "groupwise"),
                output_dir=os.path.join(run_dir, "outputs", "groupwise"),
                pretrained_weights=os.path.join(run_dir, "models", "model.pt"),
            )
            for k in ("epoch_length", "device"):
                if k in over:
                    go[k] = over[k]
            if args.groupwise_epochs:
                go["num_epochs"] = args.groupwise_epochs
            gw, ran = stage("train_groupwise", go, run_dir, args, redo, configs=["train_classifier.json",
                            "train_groupwise.json"])  # fmt: skip
            note("train_groupwise", gw)
            result["groupwise_training"] = gw
            redo_m = redo or ran
            o["groupwise::ckpt_dir"] = go["ckpt_dir"]
        if method == "mcof" and args.smoke:
            o.update(MCOF_SMOKE)
        rec, ran_seeds = stage(f"seeds_{method}", o, run_dir, args, redo_m)
        note(f"seeds_{method}", rec)
        entry = _seed_entry(rec)
        if method == "mcof":
            entry["mcof"] = _mcof_rounds(rec.get("mcof_rounds"))
        result["methods"][method] = entry
        m = rec["metrics"]
        print(
            f"[{ds}/seed{seed}] {method}: seed mIoU {m['seed_miou']:.4f}, fg IoU {m['seed_fg_iou']:.4f}, "
            f"per class {json.dumps({k: round(v, 4) for k, v in m['seed_iou'].items()})}, {m['seconds']:.1f} s",
            flush=True,
        )
        atomic_write_json(os.path.join(run_dir, "run.json"), result)
        segment(method, rec["pseudo_label_dir"], redo_m or ran_seeds)
        if method == "cam" and not args.skip_tags_segment:
            tags_dir = tag_only_folder(rec["pseudo_label_dir"], os.path.join(run_dir, "outputs", "pseudo_labels_tags"))
            segment("tags", tags_dir, redo_m or ran_seeds)
    atomic_write_json(os.path.join(run_dir, "run.json"), result)
    return result


def run_speed_test(ds: str, data_dir: str, seed: int, args: argparse.Namespace) -> dict:
    """Batched vs one-at-a-time AdvCAM on the classifier of ``seed`` (trained by :py:func:`run_seed`)."""
    import torch

    run_dir = os.path.join(args.work_dir, ds, "speed")
    os.makedirs(run_dir, exist_ok=True)
    over = base_overrides(ds, data_dir, seed, os.path.join(args.work_dir, ds, f"seed{seed}"), args)
    over.update(seed_method="advcam", output_dir=os.path.join(run_dir, "outputs"))
    if args.advcam_steps is not None:
        over["advcam_steps"] = args.advcam_steps
    # the classifier's own training record: a retrained classifier invalidates the cached speed records
    trained = read_json(os.path.join(args.work_dir, ds, f"seed{seed}", "stage_train.json")) or {}
    records = {}
    for mode in SPEED_MODES:
        n = args.float64_images if mode == "float64" else args.speed_batch
        maps = os.path.join(run_dir, f"maps_{mode}.pt")
        records[mode], _ = stage(
            f"speed_{mode}", over, run_dir, args, False, mode=mode, num_images=n, maps=maps,
            classifier_seconds=trained.get("stage_seconds"),
        )  # fmt: skip
    b, r = records["batched"], records["reference"]
    diff = (torch.load(b["_maps"], weights_only=True) - torch.load(r["_maps"], weights_only=True)).abs().max()
    out = {
        "dataset": ds,
        "classifier_seed": seed,
        "device": b["device"],
        "num_images": b["num_images"],
        "num_instances": b["num_instances"],
        "input_shape": b["input_shape"],
        "advcam_settings": {
            k: over.get(k, bundle_default(k, "make_seeds.json"))
            for k in ("advcam_steps", "advcam_step_size", "advcam_reg_weight", "advcam_scales", "advcam_flip")
        },
        "batched_images_per_second": b["images_per_second"],
        "reference_images_per_second": r["images_per_second"],
        "speedup": r["seconds"] / b["seconds"],
        "batched_seconds": b["seconds"],
        "reference_seconds": r["seconds"],
        "max_abs_diff_float32": float(diff),
        "max_abs_diff_float64": records["float64"]["max_abs_diff"],
        "float64_images": records["float64"]["num_images"],
        "nonzero_fraction_batched": b.get("nonzero_fraction"),
        "nonzero_fraction_float64": records["float64"].get("nonzero_fraction"),
        "batched_peak_rss_mb": b["peak_rss_mb"],
        "reference_peak_rss_mb": r["peak_rss_mb"],
        "batched_peak_rss_growth_mb": b["peak_rss_growth_mb"],
        "reference_peak_rss_growth_mb": r["peak_rss_growth_mb"],
    }
    for name, rec in (("batched", b), ("reference", r)):
        if "cuda_peak_allocated_mb" in rec:
            out[f"{name}_cuda_peak_allocated_mb"] = rec["cuda_peak_allocated_mb"]
    return out


def _mean_spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "spread": float(np.ptp(values)) if len(values) > 1 else None}


def summarise(runs: list[dict]) -> dict:
    """Mean and spread (max - min) over the classifier seeds of every seed metric, segmenter metric and stage."""
    summary: dict = {}
    methods = list(runs[0]["methods"]) if runs else []
    for method in methods:
        ms = [r["methods"][method] for r in runs if method in r["methods"]]
        s: dict = {"seeds": [r["seed"] for r in runs if method in r["methods"]]}
        for key in ("seed_miou", "seed_fg_iou", "seed_background_iou", "seconds", "stage_peak_rss_mb"):
            s[key] = _mean_spread([m[key] for m in ms])
        s["best_threshold_fg_iou"] = _mean_spread([m["best_threshold"]["fg_iou"] for m in ms])
        s["seed_iou"] = {c: _mean_spread([m["seed_iou"][c] for m in ms]) for c in ms[0]["seed_iou"]}
        if method == "mcof" and all(m.get("mcof") for m in ms):
            n = min(len(m["mcof"]["rounds"]) for m in ms)
            s["mcof_rounds"] = [
                {
                    "round": i + 1,
                    **{
                        k: _mean_spread([m["mcof"]["rounds"][i][k] for m in ms])
                        for k in ("seed_miou", "region_miou", "segmenter_miou", "segmenter_dice", "seconds")
                        if all(m["mcof"]["rounds"][i].get(k) is not None for m in ms)
                    },
                }
                for i in range(n)
            ]
        summary[method] = s
    segs = sorted({k for r in runs for k in r.get("segmenters", {})})
    summary["segmenters"] = {}
    for method in segs:
        ss = [r["segmenters"][method] for r in runs if method in r.get("segmenters", {})]
        summary["segmenters"][method] = {
            k: _mean_spread([x[k] for x in ss])
            for k in ("miou", "dice", "jaccard", "train_seconds", "stage_seconds", "stage_peak_rss_mb")
            if all(x.get(k) is not None for x in ss)
        }
        summary["segmenters"][method]["seeds"] = [r["seed"] for r in runs if method in r.get("segmenters", {})]
    names = [n for n in (runs[0].get("stages", {}) if runs else {})]
    summary["stages"] = {
        n: {
            k: _mean_spread([r["stages"][n][k] for r in runs if n in r.get("stages", {})])
            for k in ("seconds", "peak_rss_mb")
        }
        for n in names
    }
    if runs:
        summary["classifier_train_seconds"] = _mean_spread([r["classifier"]["train_seconds"] for r in runs])
    return summary


def _ms(d: dict, digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f}" + (f" ±{d['spread'] / 2:.{digits}f}" if d["spread"] is not None else "")


def print_tables(report: dict) -> None:
    for ds, rep in report["datasets"].items():
        summ = rep.get("summary")
        if not summ:
            continue
        print(f"\n{ds}: seeds on {rep['num_training']} training images, mean over seeds {rep['seeds']} (± half range)")
        classes = rep["classes"]
        head = f"{'method':<10}{'seed mIoU':>16}{'fg IoU':>16}{'best-thr fg':>16}" + "".join(
            f"{c[:12]:>16}" for c in classes
        )
        print(head + f"{'seconds':>10}{'RSS MB':>8}")
        for method in (m for m in METHODS if m in summ):
            s = summ[method]
            row = f"{method:<10}{_ms(s['seed_miou']):>16}{_ms(s['seed_fg_iou']):>16}"
            row += f"{_ms(s['best_threshold_fg_iou']):>16}"
            row += "".join(f"{_ms(s['seed_iou'][c]):>16}" for c in classes)
            print(row + f"{s['seconds']['mean']:>10.1f}{s['stage_peak_rss_mb']['mean']:>8.0f}")
        base = rep["tag_only_baseline"]
        row = f"{'tags':<10}{base['seed_miou']:>16.3f}{base['seed_fg_iou']:>16.3f}{'':>16}"
        print(row + "".join(f"{base['seed_iou'][c]:>16.3f}" for c in classes) + "   (tag-only seed: whole image)")
        if summ.get("segmenters"):
            print(f"\n{ds}: final segmenter (segment.json) on each method's pseudo-labels, real test images")
            cols = f"{'test mIoU':>16}{'test Dice':>16}{'test fg IoU':>16}"
            print(f"{'trained on':<12}{cols}{'train s':>10}{'RSS MB':>8}")
            for method, s in summ["segmenters"].items():
                fg = _ms(s["jaccard"]) if "jaccard" in s else "-"
                print(
                    f"{method:<12}{_ms(s['miou']):>16}{_ms(s['dice']):>16}{fg:>16}{s['train_seconds']['mean']:>10.1f}"
                    f"{s['stage_peak_rss_mb']['mean']:>8.0f}"
                )
        if summ.get("mcof", {}).get("mcof_rounds"):
            print(f"\n{ds}: MCOF per round (seed / region mIoU on training images, segmenter on the test images)")
            print(f"{'round':<6}{'seed mIoU':>16}{'region mIoU':>16}{'seg mIoU':>16}{'seg Dice':>16}{'seconds':>10}")
            for r in summ["mcof"]["mcof_rounds"]:
                cells = [_ms(r[k]) if k in r else "-" for k in ("seed_miou", "region_miou", "segmenter_miou")]
                cells.append(_ms(r["segmenter_dice"]) if "segmenter_dice" in r else "-")
                secs = f"{r['seconds']['mean']:.1f}" if "seconds" in r else "-"
                print(f"{r['round']:<6}" + "".join(f"{c:>16}" for c in cells) + f"{secs:>10}")
        print(f"\n{ds}: stages (mean over seeds): wall seconds, peak RSS MB")
        for name, st in summ.get("stages", {}).items():
            print(f"  {name:<20}{_ms(st['seconds'], 1):>16}{_ms(st['peak_rss_mb'], 0):>12}")
    speeds = [rep["speed"] for rep in report["datasets"].values() if rep.get("speed")]
    if speeds:
        print("\nAdvCAM batched vs one instance at a time (advcam_reference)")
        print(
            f"{'dataset':<12}{'device':>8}{'images':>8}{'inst':>6}{'batched img/s':>15}{'ref img/s':>11}"
            f"{'speed-up':>10}"
            f"{'max|d| f32':>12}{'max|d| f64':>12}{'RSS b/r MB':>14}{'growth b/r MB':>15}"
        )
        for s in speeds:
            print(
                f"{s['dataset']:<12}{s['device']:>8}{s['num_images']:>8}{s['num_instances']:>6}"
                f"{s['batched_images_per_second']:>15.2f}{s['reference_images_per_second']:>11.2f}{s['speedup']:>10.2f}"
                f"{s['max_abs_diff_float32']:>12.2e}{s['max_abs_diff_float64']:>12.2e}"
                f"{s['batched_peak_rss_mb']:>7.0f}/{s['reference_peak_rss_mb']:<6.0f}"
                f"{s['batched_peak_rss_growth_mb']:>8.0f}/{s['reference_peak_rss_growth_mb']:<6.0f}"
            )
            if "batched_cuda_peak_allocated_mb" in s:
                print(
                    f"{'':<12}CUDA peak allocated: batched {s['batched_cuda_peak_allocated_mb']:.0f} MB, "
                    f"reference {s['reference_cuda_peak_allocated_mb']:.0f} MB"
                )


def _md(d: dict | None, digits: int = 3) -> str:
    if not d:
        return "-"
    return f"{d['mean']:.{digits}f}" + (f" ± {d['spread'] / 2:.{digits}f}" if d["spread"] is not None else "")


def markdown_tables(report: dict) -> str:
    """The docs' tables (mean ± half range over the seeds) from a results JSON."""
    lines: list[str] = []
    for ds, rep in report["datasets"].items():
        summ = rep.get("summary")
        if not summ:
            continue
        classes = rep["classes"]
        seeds = summ.get("cam", {}).get("seeds", rep["seeds"])
        lines += [
            f"**{ds}** ({rep.get('num_training')} training images, {rep.get('num_test')} test images; seeds {seeds}):",
            "",
            "| seeds | seed mIoU | fg IoU | " + " | ".join(f"IoU {c}" for c in classes) + " | seed step (s) |",
            "| --- | --- | --- | " + " | ".join("---" for _ in classes) + " | --- |",
        ]
        for method in (m for m in METHODS if m in summ):
            s = summ[method]
            cells = [_md(s["seed_miou"]), _md(s["seed_fg_iou"]), *(_md(s["seed_iou"][c]) for c in classes)]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {s['seconds']['mean']:.0f} |")
        base = rep["tag_only_baseline"]
        cells = [
            f"{base['seed_miou']:.3f}",
            f"{base['seed_fg_iou']:.3f}",
            *(f"{base['seed_iou'][c]:.3f}" for c in classes),
        ]
        lines += ["| tag-only | " + " | ".join(cells) + " | - |", ""]
        if summ.get("segmenters"):
            lines += [
                "| segmenter trained on | test mIoU | test Dice | test fg IoU | training (s) |",
                "| --- | --- | --- | --- | --- |",
            ]
            for method, s in summ["segmenters"].items():
                cells = [_md(s.get(k)) for k in ("miou", "dice", "jaccard")] + [_md(s.get("train_seconds"), 0)]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
        if summ.get("mcof", {}).get("mcof_rounds"):
            lines += [
                "| MCOF round | seed mIoU | region mIoU | round segmenter test mIoU | test Dice | seconds |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for r in summ["mcof"]["mcof_rounds"]:
                keys = ("seed_miou", "region_miou", "segmenter_miou", "segmenter_dice")
                cells = [_md(r.get(k)) for k in keys] + [_md(r.get("seconds"), 0)]
                lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
            lines.append("")
        if summ.get("stages"):
            lines += ["| stage | wall (s) | peak RSS (MB) |", "| --- | --- | --- |"]
            for name, st in summ["stages"].items():
                lines.append(f"| {name} | {_md(st['seconds'], 0)} | {_md(st['peak_rss_mb'], 0)} |")
            lines.append("")
    return "\n".join(lines)


def dataset_settings(ds: str, args: argparse.Namespace) -> dict:
    """The schedule choices of one dataset's runs (recorded in the JSON next to its results)."""
    out = {
        "classifier_epochs": {"blood_smear": args.blood_smear_epochs, "la2018": args.la2018_epochs}.get(
            ds, args.epochs
        ),
        "classifier_epoch_length": args.epoch_length or "bundle default (training images // 16)",
        "groupwise_epochs": args.groupwise_epochs or bundle_default("num_epochs", "train_groupwise.json"),
        "advcam_steps": args.advcam_steps or bundle_default("advcam_steps", "make_seeds.json"),
        "mcof": "smoke: " + json.dumps(MCOF_SMOKE) if args.smoke else "bundle defaults (make_seeds.json mcof::)",
        "segmenter": None
        if args.skip_segment
        else {"num_epochs": args.seg_epochs, "epoch_length": args.seg_epoch_length},
        "speed_test": not args.skip_speed,
        "threads": args.threads,
        "methods": list(args.methods),
    }
    if ds == "la2018":
        out.update(
            la2018_slice_step=args.la2018_slice_step,
            la2018_min_pixels=LA2018_MIN_PIXELS,
            la2018_num_test_cases=LA2018_NUM_TEST,
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.stage:
        with open(args.stage) as f:
            run_stage(json.load(f))
        return
    if args.markdown:
        print(markdown_tables(read_json(args.out) or {"datasets": {}}))
        return
    t0 = time.perf_counter()
    previous = (read_json(args.out) or {}) if args.resume else {}
    report: dict = {
        "benchmark": "cam_seeds",
        "references": [
            "CAM: Zhou, Khosla, Lapedriza, Oliva, Torralba. CVPR 2016",
            "AdvCAM: Lee, Kim, Lee, Shim. CVPR 2021",
            "PRM: Zhou, Zhu, Ye, Qiu, Jiao. CVPR 2018",
            "Group-wise semantic mining: Li, Zhou, Li, Zhou, Zhang. AAAI 2021",
            "MCOF: Wang, You, Li, Ma. CVPR 2018",
        ],
        "args": {k: v for k, v in vars(args).items() if k != "stage"},
        # datasets of earlier invocations (--resume) are kept; the ones run now are replaced
        "datasets": {k: v for k, v in previous.get("datasets", {}).items() if k not in args.datasets},
    }

    def write() -> None:
        report["wall_seconds_total"] = sum(r.get("wall_seconds", 0.0) for r in report["datasets"].values())
        atomic_write_json(args.out, report)

    for ds in args.datasets:
        t_ds = time.perf_counter()
        data_dir = dataset_dir(ds, args)
        meta = read_json(os.path.join(data_dir, "dataset.json")) or {}
        rep: dict = {"dataset_dir": data_dir, "classes": meta.get("classes"), "seeds": args.seeds, "runs": []}
        rep["settings"] = dataset_settings(ds, args)
        if meta.get("tagging"):
            rep["tagging"] = meta["tagging"]
        rep["num_test"] = len(meta.get("test", []))
        rep["tag_only_baseline"] = tag_only_baseline(data_dir)
        report["datasets"][ds] = rep
        for seed in args.seeds:
            run = run_seed(ds, data_dir, seed, args)
            rep["runs"].append(run)
            rep["num_training"] = run["classifier"]["num_training"]
            rep["summary"] = summarise(rep["runs"])
            rep["wall_seconds"] = time.perf_counter() - t_ds
            write()
        if not args.skip_speed:
            rep["speed"] = run_speed_test(ds, data_dir, args.seeds[0], args)
            s = rep["speed"]
            print(
                f"[{ds}] AdvCAM {s['num_images']} images: batched {s['batched_images_per_second']:.2f} img/s, "
                f"one at a time {s['reference_images_per_second']:.2f} img/s (x{s['speedup']:.2f}); max |diff| "
                f"float32 {s['max_abs_diff_float32']:.2e}, float64 {s['max_abs_diff_float64']:.2e}",
                flush=True,
            )
        rep["wall_seconds"] = time.perf_counter() - t_ds
        write()
    print_tables(report)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s (this invocation); written: {args.out}")


if __name__ == "__main__":
    main()
