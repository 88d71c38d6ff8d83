"""The active-learning loop of geometric active learning (Konyushkova, Sznitman, Fua; ICCV 2015, CVIU 2019):
score supervoxels with a query strategy, query regions or planar patches, annotate, retrain through a MONAI engine;
resumable."""

from __future__ import annotations

import copy
import csv
import glob
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
from ignite.engine import Events
from monai.data import CacheDataset, Dataset
from monai.inferers import Inferer
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot
from monai.transforms import DivisiblePad, LoadImage
from monai.utils import look_up_option

from monai_wsss.active import (
    AnnotationState,
    EntropyStrategy,
    FileAnnotator,
    GeometricPlaneStrategy,
    GeometricStrategy,
    MarginStrategy,
    PairwiseEntropyStrategy,
    QueryStrategy,
    RandomStrategy,
    SimulatedAnnotator,
    available_regions,
)
from monai_wsss.handlers import LearningCurveWriter
from monai_wsss.transforms import Supervoxels
from monai_wsss.utils import atomic_write_csv, atomic_write_figure, atomic_write_nifti

__all__ = ["ActiveLearningLoop", "STRATEGIES", "ANNOTATORS", "CURVE_FIELDS", "plot_learning_curves"]

STRATEGIES: dict[str, type[QueryStrategy]] = {
    "random": RandomStrategy,
    "entropy": EntropyStrategy,
    "margin": MarginStrategy,
    "pairwise_entropy": PairwiseEntropyStrategy,
    "geometric": GeometricStrategy,
    "geometric_plane": GeometricPlaneStrategy,
}
"""The library's strategies by name (a name given as ``strategy`` builds the class with its defaults)."""
ANNOTATORS = ("simulated", "file")
CURVE_FIELDS = (
    "round",
    "strategy",
    "case",
    "queried_voxels",
    "annotated_voxels",
    "annotated_fraction",
    "dice",
    "iou",
    "dice_per_class",
    "train_loss",
    "seconds",
)
MODEL_FILE = "model.pt"


def _read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_learning_curves(csv_paths: dict[str, str], path: str, title: str = "") -> None:
    """Dice (solid) and IoU (dashed) against annotated voxels, one colour per curve; saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (name, csv_path) in enumerate(sorted(csv_paths.items())):
        rows = _read_csv(csv_path)
        if not rows:
            continue
        x = [int(r["annotated_voxels"]) for r in rows]
        ax.plot(x, [float(r["dice"]) for r in rows], "o-", color=f"C{i}", label=f"{name} Dice")
        ax.plot(x, [float(r["iou"]) for r in rows], "s--", color=f"C{i}", alpha=0.6, label=f"{name} IoU")
    ax.set_xlabel("annotated voxels")
    ax.set_ylabel("held-out score (mean over foreground classes)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    try:
        atomic_write_figure(path, fig)
    finally:
        plt.close(fig)


class ActiveLearningLoop:
    """
    Pool-based active learning with geometric priors on volumes (3D) or images (2D), after

        Konyushkova, K., Sznitman, R., Fua, P. (2015) Introducing Geometry in Active Learning for Image
        Segmentation. ICCV 2015; (2019) Geometry in Active Learning for Binary and Multi-class Image Segmentation.
        CVIU 2019.

    The loop only orchestrates rounds, annotation state and curves; what it trains with, how it predicts and how
    it queries are handed to it (a bundle config builds them):

    - ``trainer``: a MONAI engine (e.g. :py:class:`monai.engines.SupervisedTrainer`) whose ``network``,
      ``optimizer``, ``loss_function`` (:py:class:`monai_wsss.losses.PartialLabelLoss`, which ignores unannotated
      voxels), handlers (progress bar, :py:class:`monai_wsss.handlers.AtomicCheckpointSaver` of the final weights)
      and schedule (``max_epochs`` epochs of ``epoch_length`` iterations) are those of one round's retraining. Its
      ``data_loader`` reads a :py:class:`monai.data.Dataset` (not a cache dataset) whose ``data`` the loop sets
      each round to the annotated pool cases, as dicts ``{"image": (C, *spatial) float, "label": (1, *spatial)
      int64 with ignore_value on unannotated voxels, "annotated": (1, *spatial) float 0/1}``; the dataset's
      transform does the rest (e.g. ``RandWeightedCropd`` with ``w_key="annotated"``: patches centred on annotated
      voxels, random flips, intensity jitter);
    - ``inferer``: e.g. :py:class:`monai.inferers.SlidingWindowInferer`, used for every prediction (scoring the pool
      and evaluating the held-out cases) on the image padded at the end of each axis to a multiple of
      ``divisible_by`` (edge values), cropped back after;
    - ``strategy``: a :py:class:`monai_wsss.active.QueryStrategy` (or the name of a library one, see
      ``STRATEGIES``).

    Round ``r`` (``0 .. num_rounds - 1``):

    1. **query**: round 0 has no network: its query is :py:class:`monai_wsss.active.RandomStrategy`'s, identical
       for every strategy with the same ``seed``. Later rounds score the available (less than half annotated)
       supervoxels of every pool case with ``strategy.score`` (from the network of round ``r - 1``), pick a case
       with ``strategy.select_case`` (the one holding the best region) and ask ``strategy.propose`` for the query
       under the budget: ``voxels_per_round`` newly annotated voxels (the same for every strategy; the last region
       or planar patch may overshoot by less than its own size) or, when that is ``None``, ``regions_per_round``
       supervoxels (one planar patch for :py:class:`monai_wsss.active.GeometricPlaneStrategy` in 3D).
    2. **annotate**: ``"simulated"`` reveals the ground truth inside the query; ``"file"`` writes the query mask to
       ``<output_dir>/<strategy>/queries/round_RRR_<case>.nii.gz`` and reads a person's label file
       ``<label_dir>/round_RRR_<case>.nii.gz`` (or ``.npy``), checked by :py:class:`monai_wsss.active.FileAnnotator`;
       when that file is missing, :py:meth:`run` stops and says which file it waits for (rerun when it is there).
       The answer is recorded in the case's :py:class:`monai_wsss.active.AnnotationState`
       (``<output_dir>/<strategy>/state/<case>/``), atomically.
    3. **retrain** with ``trainer.run()`` on the annotated pool cases: from the network's initial weights
       (``warm_start=False``, the default) or from the previous round's weights (``warm_start=True``); the
       optimiser state is reset either way, and the random state of the crops / augmentations and of the data
       order is seeded by ``seed + r``. The trainer's handlers write the weights (the bundle:
       ``<output_dir>/<strategy>/model.pt``, atomically); the loop adds a
       :py:class:`monai_wsss.handlers.LearningCurveWriter` per round (``<output_dir>/<strategy>/training/
       round_RRR.{csv,png}``, the loss per iteration).
    4. **evaluate** Dice and IoU (mean over foreground classes, argmax prediction) on the held-out cases and rewrite
       ``<output_dir>/learning_curve_<strategy>.csv`` (one row per round) and ``.png`` atomically.

    Why retraining from scratch is the default: every point of the curve is then a network trained with the same
    schedule on that round's labels only, so the points (and the strategies) differ by their labels and not by how
    much training each network has accumulated, and the fully supervised reference trained once with the same
    schedule is directly comparable to every point; it also makes a resumed run independent of how the previous
    round's training ended. Warm start is cheaper per round (the network keeps what it learnt) but the round-``r``
    network has seen ``r + 1`` schedules.

    Resuming: a round is complete when its CSV row exists; :py:meth:`run` starts at the first missing row. A round
    whose query was recorded before a kill is not queried again (the recorded annotation is kept); a complete round
    is never repeated, so rerunning with a larger ``num_rounds`` continues the curve. The network of the last
    complete round is read back from ``ckpt_path`` (the trainer's final checkpoint) when it exists, else retrained.

    Args:
        trainer: the round's retraining engine (see above); its ``network`` is the loop's network.
        inferer: the prediction inferer (see above).
        pool: pool cases, dicts with ``image`` and (simulated annotator) ``label`` file paths.
        heldout: evaluation cases with ``image`` and ``label``.
        output_dir: folder of the state, curves and (through the trainer's saver) the model.
        strategy: query strategy object, or a name in ``STRATEGIES``.
        num_classes: number of classes (labels ``0..num_classes-1``).
        num_rounds: total number of rounds (including round 0, the random seed).
        regions_per_round: supervoxels per query when ``voxels_per_round`` is None.
        voxels_per_round: matched annotation budget: newly annotated voxels per query, for every strategy;
            ``None`` (default) queries ``regions_per_round`` supervoxels or one planar patch.
        supervoxels: :py:class:`monai_wsss.transforms.Supervoxels` instance (its ``cache_dir`` caches the maps).
        annotator: ``"simulated"`` or ``"file"``.
        label_dir: folder of the person's label files (``"file"`` mode); default
            ``<output_dir>/<strategy>/annotations``.
        ignore_value: label of unannotated voxels; the trainer's loss must ignore the same value.
        divisible_by: padding divisor per spatial axis before the inferer (e.g. ``[4, 4, 1]`` for a UNet with
            strides ``(2, 2, 1)`` twice); an int applies to every axis.
        seed: seed of the random queries and of each round's training.
        warm_start: retrain each round from the previous round's weights instead of the initial ones.
        ckpt_path: the final weights the trainer's saver writes; default ``<output_dir>/<strategy>/model.pt``.

    Raises:
        ValueError: empty pool or held-out list, a non-positive round / region / voxel budget, duplicate pool case
            names, a pool case without ``label`` for the simulated annotator, a loss ignoring another label, or an
            unknown strategy name.
        TypeError: the trainer's dataset is not a plain :py:class:`monai.data.Dataset`.
    """

    def __init__(
        self,
        trainer,
        inferer: Inferer,
        pool: Sequence[dict],
        heldout: Sequence[dict],
        output_dir: str,
        strategy: QueryStrategy | str = "geometric",
        num_classes: int = 2,
        num_rounds: int = 4,
        regions_per_round: int = 10,
        voxels_per_round: int | None = None,
        supervoxels: Supervoxels | None = None,
        annotator: str = "simulated",
        label_dir: str | None = None,
        ignore_value: int = -1,
        divisible_by: Sequence[int] | int = 4,
        seed: int = 0,
        warm_start: bool = False,
        ckpt_path: str | None = None,
    ) -> None:
        if isinstance(strategy, str):
            strategy = look_up_option(strategy, STRATEGIES)()
        for method in ("score", "propose", "select_case"):
            if not callable(getattr(strategy, method, None)):
                raise ValueError(
                    f"`strategy` {strategy!r} has no `{method}` method (see monai_wsss.active.QueryStrategy)."
                )
        self.strategy = strategy
        self.seed_strategy = RandomStrategy()
        self.annotator = look_up_option(annotator, ANNOTATORS)
        if not pool:
            raise ValueError("`pool` is empty: the active-learning loop needs at least one pool case.")
        if not heldout:
            raise ValueError("`heldout` is empty: the learning curve needs at least one labelled held-out case.")
        if num_rounds < 1 or regions_per_round < 1:
            raise ValueError(f"need num_rounds >= 1 and regions_per_round >= 1; got {num_rounds}, {regions_per_round}.")
        if voxels_per_round is not None and voxels_per_round < 1:
            raise ValueError(f"`voxels_per_round` must be None or >= 1, got {voxels_per_round}.")
        dataset = getattr(getattr(trainer, "data_loader", None), "dataset", None)
        if not isinstance(dataset, Dataset) or isinstance(dataset, CacheDataset):
            raise TypeError(
                f"the trainer's data loader must read a monai.data.Dataset whose `data` the loop sets each round, "
                f"got {type(dataset).__name__}."
            )
        self.trainer, self.inferer, self.dataset = trainer, inferer, dataset
        self.network = trainer.network
        self.device = trainer.state.device if trainer.state.device is not None else torch.device("cpu")
        self.initial_state = copy.deepcopy(self.network.state_dict())
        self.initial_optimizer_state = copy.deepcopy(trainer.optimizer.state_dict())
        self.epoch_length = trainer.state.epoch_length or None
        self.max_epochs = int(trainer.state.max_epochs or 1)
        self.output_dir = output_dir
        self.num_classes, self.num_rounds = int(num_classes), int(num_rounds)
        self.regions_per_round = int(regions_per_round)
        self.voxels_per_round = None if voxels_per_round is None else int(voxels_per_round)
        self.supervoxels = supervoxels if supervoxels is not None else Supervoxels(n_segments=200)
        self.work_dir = os.path.join(output_dir, self.strategy.name)
        self.ckpt_path = ckpt_path or os.path.join(self.work_dir, MODEL_FILE)
        self.label_dir = label_dir or os.path.join(self.work_dir, "annotations")
        self.ignore_value = int(ignore_value)
        self.divisible_by = divisible_by
        self.seed = int(seed)
        self.warm_start = bool(warm_start)
        self.loss = trainer.loss_function
        if getattr(self.loss, "ignore_value", self.ignore_value) != self.ignore_value:
            raise ValueError(
                f"`loss` ignores label {self.loss.ignore_value} but the loop marks unannotated voxels with "
                f"{self.ignore_value}: set the same `ignore_value` on both."
            )
        self.logger = logging.getLogger("monai_wsss.active_learning")
        loader = LoadImage(image_only=True, ensure_channel_first=True)
        self.pool = [self._load(c, loader, need_label=self.annotator == "simulated") for c in pool]
        self.heldout = [self._load(c, loader, need_label=True) for c in heldout]
        names = [c["name"] for c in self.pool]
        if len(set(names)) != len(names):
            raise ValueError(f"pool case names must be unique, got {names}.")
        self.spatial_dims = self.pool[0]["image"].ndim - 1
        self._regions: dict[str, np.ndarray] = {}
        self.curve_writer: LearningCurveWriter | None = None

    # ---- data -------------------------------------------------------------------------------------------------
    @staticmethod
    def _load(case: dict, loader: LoadImage, need_label: bool) -> dict:
        image = loader(case["image"])
        out = {
            "name": os.path.basename(str(case["image"])).split(".")[0],
            "image": np.asarray(image, dtype=np.float32),
            "affine": np.asarray(getattr(image, "affine", np.eye(4)), dtype=np.float64),
        }
        if case.get("label") is not None:
            out["label"] = np.asarray(loader(case["label"]))[0].astype(np.int16)
            if out["label"].shape != out["image"].shape[1:]:
                raise ValueError(f"label {case['label']} shape {out['label'].shape} != image {out['image'].shape}.")
        elif need_label:
            raise ValueError(f"case {case['image']} has no `label`; the simulated annotator needs ground truth.")
        return out

    @property
    def curve_path(self) -> str:
        return os.path.join(self.output_dir, f"learning_curve_{self.strategy.name}.csv")

    def state(self, case: dict) -> AnnotationState:
        root = os.path.join(self.work_dir, "state", case["name"])
        # the NIfTI affine of the state must be 4x4; MetaTensor affines of 2D images are 3x3
        affine = case["affine"] if case["affine"].shape == (4, 4) else None
        return AnnotationState.load_or_create(
            root, case["image"].shape[1:], affine, self.ignore_value, self.num_classes
        )

    def regions(self, case: dict) -> np.ndarray:
        if case["name"] not in self._regions:
            self._regions[case["name"]] = np.asarray(self.supervoxels(case["image"]))[0]
        return self._regions[case["name"]]

    # ---- network ----------------------------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> torch.Tensor:
        """Softmax probabilities ``(K, *spatial)`` of one channel-first image, through the inferer on the image
        padded to ``divisible_by`` (edge values, at the end of each axis), cropped back to the image."""
        spatial = image.shape[1:]
        pad = DivisiblePad(k=self.divisible_by, mode="replicate", method="end")
        x = torch.as_tensor(pad(torch.as_tensor(image)), dtype=torch.float32)[None].to(self.device)
        self.network.eval()
        with torch.no_grad():
            logits = self.inferer(x, self.network)[(0, slice(None), *[slice(0, s) for s in spatial])]
        return torch.softmax(torch.as_tensor(logits).float(), 0).cpu()

    def training_data(self, labels: list[np.ndarray]) -> list[dict]:
        """The trainer's dataset items of one round: the pool cases with at least one annotated voxel."""
        items = []
        for case, lab in zip(self.pool, labels, strict=True):
            annotated = np.asarray(lab) != self.ignore_value
            if annotated.any():
                items.append(
                    {
                        "image": case["image"],
                        "label": np.asarray(lab, dtype=np.int64)[None],
                        "annotated": annotated.astype(np.float32)[None],
                    }
                )
        return items

    def train(self, round_index: int, labels: list[np.ndarray]) -> float:
        """Retrain on the partial labels with the trainer (one schedule, see the class docstring); returns the mean
        loss of the last 5 iterations (NaN when nothing is annotated yet)."""
        data = self.training_data(labels)
        if not self.warm_start:
            self.network.load_state_dict(self.initial_state)
        self.trainer.optimizer.load_state_dict(self.initial_optimizer_state)
        if not data:
            return float("nan")
        seed = self.seed + round_index
        torch.manual_seed(seed)
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=seed)
        self.dataset.data = data
        state = self.trainer.state
        state.iteration, state.epoch = 0, 0  # a new schedule on the same engine
        state.max_epochs = self.max_epochs
        state.epoch_length = self.epoch_length or len(self.trainer.data_loader)
        writer = LearningCurveWriter(
            os.path.join(self.work_dir, "training"), ("loss",), name=f"round_{round_index:03d}"
        )
        writer.attach(self.trainer)
        self.curve_writer = writer
        try:
            self.trainer.run()
        finally:
            for event, fn in ((Events.STARTED, writer.resume), (Events.ITERATION_COMPLETED, writer.record)):
                self.trainer.remove_event_handler(fn, event)
            self.trainer.remove_event_handler(writer.write, Events.EPOCH_COMPLETED)
        losses = [r["loss"] for r in writer.rows if "loss" in r]
        return float(np.mean(losses[-5:])) if losses else float("nan")

    def evaluate(self) -> tuple[float, float, list[float]]:
        """Dice and IoU (mean over the foreground classes and the held-out cases) and the Dice of each foreground
        class (mean over the held-out cases; NaN where no case has the class)."""
        dice, iou = DiceMetric(include_background=False), MeanIoU(include_background=False)
        for case in self.heldout:
            pred = self.predict(case["image"]).argmax(0)[None, None]
            y_pred = one_hot(pred, self.num_classes)
            y = one_hot(torch.as_tensor(case["label"].astype(np.int64))[None, None], self.num_classes)
            dice(y_pred, y)
            iou(y_pred, y)
        per_class = [float(v) for v in dice.get_buffer().nanmean(0)]
        return float(dice.aggregate().nanmean()), float(iou.aggregate().nanmean()), per_class

    # ---- query ------------------------------------------------------------------------------------------------
    def query(self, round_index: int, states: list[AnnotationState], rng: np.random.Generator) -> tuple[int, dict]:
        """Pick the case and the query mask of this round; returns ``(case index, record fields with 'mask')``.

        Raises:
            RuntimeError: every supervoxel of the pool is annotated, or the strategy proposed an empty query.
        """
        strategy = self.seed_strategy if round_index == 0 else self.strategy
        avail = [available_regions(self.regions(c), s.annotated) for c, s in zip(self.pool, states, strict=True)]
        if not any(a.any() for a in avail):
            raise RuntimeError("every supervoxel of the pool is already annotated; lower `num_rounds`.")
        scores = []
        for case, a in zip(self.pool, avail, strict=True):
            if not a.any():
                scores.append(np.full(a.shape, -np.inf))
                continue
            probs = self.predict(case["image"]) if getattr(strategy, "needs_probs", True) else None
            s = np.asarray(strategy.score(probs, self.regions(case), case["image"], case["name"], rng), np.float64)
            if s.shape != a.shape:
                raise RuntimeError(f"{strategy!r} returned {s.shape} scores for {a.shape[0]} regions.")
            scores.append(np.where(a, s, -np.inf))
        ci = int(strategy.select_case(scores, rng))
        case = self.pool[ci]
        q = dict(
            strategy.propose(
                self.regions(case), states[ci].annotated, scores[ci], self.voxels_per_round, self.regions_per_round, rng
            )
        )
        q["mask"] = np.asarray(q["mask"], dtype=bool)
        if not q["mask"].any():
            raise RuntimeError(f"{strategy!r} proposed an empty query in round {round_index}.")
        return ci, q

    def annotate(self, round_index: int, case: dict, mask: np.ndarray) -> np.ndarray | None:
        """The answer to a query, or None when the person's label file is not there yet (``"file"`` mode)."""
        if self.annotator == "simulated":
            return SimulatedAnnotator(case["label"], self.ignore_value)(mask)
        stem = f"round_{round_index:03d}_{case['name']}"
        qdir = os.path.join(self.work_dir, "queries")
        os.makedirs(qdir, exist_ok=True)
        affine = case["affine"] if case["affine"].shape == (4, 4) else None
        atomic_write_nifti(os.path.join(qdir, f"{stem}.nii.gz"), mask.astype(np.uint8), affine)
        for ext in (".nii.gz", ".nii", ".npy"):
            path = os.path.join(self.label_dir, stem + ext)
            if os.path.isfile(path):
                return FileAnnotator(mask.shape, self.ignore_value, self.num_classes)(mask, path)
        self.logger.warning(
            f"round {round_index}: waiting for the label file {os.path.join(self.label_dir, stem)}.nii.gz "
            f"(query mask: {os.path.join(qdir, stem)}.nii.gz); rerun when it is there."
        )
        return None

    # ---- loop -------------------------------------------------------------------------------------------------
    def run(self, num_rounds: int | None = None) -> list[dict]:
        """Run (or resume) the loop up to ``num_rounds`` rounds; returns the learning-curve rows."""
        num_rounds = self.num_rounds if num_rounds is None else int(num_rounds)
        os.makedirs(self.work_dir, exist_ok=True)
        rows = _read_csv(self.curve_path)
        states = [self.state(c) for c in self.pool]
        have_model = bool(rows) and os.path.isfile(self.ckpt_path)
        if have_model:
            self.network.load_state_dict(torch.load(self.ckpt_path, map_location=self.device, weights_only=True))
        total = sum(int(np.prod(c["image"].shape[1:])) for c in self.pool)
        for r in range(len(rows), num_rounds):
            t0 = time.time()
            rng = np.random.default_rng([self.seed, r])
            done = [i for i, s in enumerate(states) if any(int(q["round"]) == r for q in s.queries)]
            if done:
                ci = done[0]
                queried = sum(int(q["voxels"]) for q in states[ci].queries if int(q["round"]) == r)
                self.logger.info(f"round {r}: query already recorded in {self.pool[ci]['name']}, resuming.")
            else:
                if r > 0 and not have_model:  # the saved network of round r - 1 is missing: retrain it
                    self.train(r - 1, [s.labels for s in states])
                ci, q = self.query(r, states, rng)
                answer = self.annotate(r, self.pool[ci], q.pop("mask"))
                if answer is None:
                    break
                mask = answer != self.ignore_value
                name = self.strategy.name
                record = states[ci].update(r, mask, answer, strategy=name, case=self.pool[ci]["name"], **q)
                queried = int(record["voxels"])
            loss = self.train(r, [s.labels for s in states])
            have_model = True
            dice, iou, per_class = self.evaluate()
            n = sum(s.n_annotated for s in states)
            rows.append(
                {
                    "round": r,
                    "strategy": self.strategy.name,
                    "case": self.pool[ci]["name"],
                    "queried_voxels": queried,
                    "annotated_voxels": n,
                    "annotated_fraction": f"{n / total:.6f}",
                    "dice": f"{dice:.6f}",
                    "iou": f"{iou:.6f}",
                    "dice_per_class": " ".join(f"{d:.6f}" for d in per_class),
                    "train_loss": f"{loss:.6f}",
                    "seconds": f"{time.time() - t0:.2f}",
                }
            )
            atomic_write_csv(self.curve_path, rows, CURVE_FIELDS)
            self.logger.info(f"round {r} ({self.strategy.name}): {n} annotated voxels, Dice {dice:.4f}, IoU {iou:.4f}")
            self.plot()
        return rows

    def plot(self) -> None:
        """``learning_curve_<strategy>.png`` and ``learning_curves.png`` (every strategy with a CSV here)."""
        name = self.strategy.name
        plot_learning_curves({name: self.curve_path}, self.curve_path[:-4] + ".png", name)
        found = {
            os.path.basename(p)[len("learning_curve_") : -len(".csv")]: p
            for p in sorted(glob.glob(os.path.join(self.output_dir, "learning_curve_*.csv")))
        }
        plot_learning_curves(found, os.path.join(self.output_dir, "learning_curves.png"))
