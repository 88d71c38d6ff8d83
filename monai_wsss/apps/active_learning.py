"""The active-learning loop of geometric active learning (Konyushkova, Sznitman, Fua; ICCV 2015, CVIU 2019):
train on partial labels, score supervoxels, query regions or a planar patch, annotate, retrain; resumable."""

from __future__ import annotations

import copy
import csv
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot
from monai.transforms import LoadImage
from monai.utils import look_up_option

from monai_wsss.active import AnnotationState, FileAnnotator, PlaneSearch, RegionGraph, SimulatedAnnotator, region_mean
from monai_wsss.losses import PartialLabelLoss
from monai_wsss.transforms import Supervoxels, entropy
from monai_wsss.utils import atomic_write_csv, atomic_write_figure, atomic_write_nifti, atomic_write_torch

__all__ = ["ActiveLearningLoop", "STRATEGIES", "ANNOTATORS", "CURVE_FIELDS", "plot_learning_curves"]

STRATEGIES = ("random", "entropy", "geometric", "geometric_plane")
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

    Round ``r`` (``0 .. num_rounds - 1``):

    1. **query**: score the pool with the network of round ``r - 1`` (round 0 has no network: its query is a random
       seed, identical for every strategy with the same ``seed``) and pick the budget in *one* pool case (the one
       holding the best-scoring region): ``regions_per_round`` supervoxels, or for ``"geometric_plane"`` one planar
       patch (:py:class:`monai_wsss.active.PlaneSearch`, branch-and-bound, disc of ``plane_radius`` voxels through
       the centre of the most uncertain supervoxel; 2D data falls back to regions). With ``voxels_per_round`` set,
       the budget is a number of newly annotated voxels instead, the same for every strategy: supervoxels are added
       in score order (random order for ``"random"`` and round 0), and planar patches one after another (each
       through the next most uncertain supervoxel not yet covered), until the query holds at least
       ``voxels_per_round`` unannotated voxels; the last region or patch may overshoot by less than its own size.
       Strategies: ``"random"``, ``"entropy"`` (mean voxel entropy per region), ``"geometric"`` (feature +
       geometric uncertainty on the supervoxel graph, :py:class:`monai_wsss.active.RegionGraph`),
       ``"geometric_plane"``.
    2. **annotate**: ``"simulated"`` reveals the ground truth inside the query; ``"file"`` writes the query mask to
       ``<output_dir>/<strategy>/queries/round_RRR_<case>.nii.gz`` and reads a person's label file
       ``<label_dir>/round_RRR_<case>.nii.gz`` (or ``.npy``), checked by :py:class:`monai_wsss.active.FileAnnotator`;
       when that file is missing, :py:meth:`run` stops and says which file it waits for (rerun when it is there).
       The answer is recorded in the case's :py:class:`monai_wsss.active.AnnotationState`
       (``<output_dir>/<strategy>/state/<case>/``), atomically.
    3. **retrain** the network from its initial weights (seeded) for ``num_iterations`` steps of Adam on every pool
       case with ``loss`` (default :py:class:`monai_wsss.losses.PartialLabelLoss`), and save it atomically to
       ``<output_dir>/<strategy>/model.pt``.
    4. **evaluate** Dice and IoU (mean over foreground classes, argmax prediction) on the held-out cases and rewrite
       ``<output_dir>/learning_curve_<strategy>.csv`` (one row per round) and ``.png`` atomically.

    Resuming: a round is complete when its CSV row exists; :py:meth:`run` starts at the first missing row. A round
    whose query was recorded before a kill is not queried again (the recorded annotation is kept); a complete round
    is never repeated, so rerunning with a larger ``num_rounds`` continues the curve.

    Args:
        network: segmentation network (logits ``BNH[WD]``); reinitialised to its initial weights every round.
        pool: pool cases, dicts with ``image`` and (simulated annotator) ``label`` file paths.
        heldout: evaluation cases with ``image`` and ``label``.
        output_dir: folder of the state, model, curves.
        strategy: one of ``STRATEGIES``.
        num_classes: number of classes (labels ``0..num_classes-1``).
        num_rounds: total number of rounds (including round 0, the random seed).
        regions_per_round: supervoxels per query (all strategies but ``"geometric_plane"`` in 3D); ignored when
            ``voxels_per_round`` is set.
        voxels_per_round: matched annotation budget: newly annotated voxels per query, for every strategy (see
            step 1); ``None`` (default) queries ``regions_per_round`` supervoxels or one planar patch.
        num_iterations: training steps per round.
        learning_rate: Adam learning rate.
        supervoxels: :py:class:`monai_wsss.transforms.Supervoxels` instance (its ``cache_dir`` caches the maps).
        geometric_weight: weight of the geometric term in the combined uncertainty.
        walk_steps: random-walk steps on the region graph.
        plane_radius, plane_thickness, plane_angles: disc radius (voxels), thickness (voxels) and
            ``(n_theta, n_phi)`` orientation grid of the planar patch.
        annotator: ``"simulated"`` or ``"file"``.
        label_dir: folder of the person's label files (``"file"`` mode); default
            ``<output_dir>/<strategy>/annotations``.
        ignore_value: label of unannotated voxels.
        divisor: spatial sizes are padded to a multiple of this per axis before the network (e.g. ``[4, 4, 1]``
            for a UNet with strides ``(2, 2, 1)`` twice).
        device: torch device.
        seed: seed of the random queries and of the training.
        loss: the retraining loss ``(logits, target with ignore_value) -> scalar``; default
            ``PartialLabelLoss(ignore_value=ignore_value)`` (cross-entropy on the annotated voxels). Its ignore value
            must be ``ignore_value``.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        pool: Sequence[dict],
        heldout: Sequence[dict],
        output_dir: str,
        strategy: str = "geometric",
        num_classes: int = 2,
        num_rounds: int = 4,
        regions_per_round: int = 10,
        num_iterations: int = 30,
        learning_rate: float = 1e-2,
        supervoxels: Supervoxels | None = None,
        geometric_weight: float = 1.0,
        walk_steps: int = 1,
        plane_radius: float | None = 12.0,
        plane_thickness: float = 1.0,
        plane_angles: Sequence[int] = (5, 16),
        annotator: str = "simulated",
        label_dir: str | None = None,
        ignore_value: int = -1,
        divisor: Sequence[int] | int = 4,
        device: str | torch.device = "cpu",
        seed: int = 0,
        voxels_per_round: int | None = None,
        loss: torch.nn.Module | None = None,
    ) -> None:
        self.strategy = look_up_option(strategy, STRATEGIES)
        self.annotator = look_up_option(annotator, ANNOTATORS)
        if not pool:
            raise ValueError("`pool` is empty: the active-learning loop needs at least one pool case.")
        if not heldout:
            raise ValueError("`heldout` is empty: the learning curve needs at least one labelled held-out case.")
        if num_rounds < 1 or regions_per_round < 1 or num_iterations < 0:
            raise ValueError(
                f"need num_rounds >= 1, regions_per_round >= 1, num_iterations >= 0; got {num_rounds}, "
                f"{regions_per_round}, {num_iterations}."
            )
        if voxels_per_round is not None and voxels_per_round < 1:
            raise ValueError(f"`voxels_per_round` must be None or >= 1, got {voxels_per_round}.")
        self.device = torch.device(device)
        self.network = network.to(self.device)
        self.initial_state = copy.deepcopy(self.network.state_dict())
        self.output_dir = output_dir
        self.num_classes, self.num_rounds = int(num_classes), int(num_rounds)
        self.regions_per_round, self.num_iterations = int(regions_per_round), int(num_iterations)
        self.voxels_per_round = None if voxels_per_round is None else int(voxels_per_round)
        self.learning_rate = float(learning_rate)
        self.supervoxels = supervoxels if supervoxels is not None else Supervoxels(n_segments=200)
        self.geometric_weight, self.walk_steps = float(geometric_weight), int(walk_steps)
        self.plane_radius, self.plane_thickness = plane_radius, float(plane_thickness)
        self.plane_angles = tuple(int(a) for a in plane_angles)
        self.work_dir = os.path.join(output_dir, self.strategy)
        self.label_dir = label_dir or os.path.join(self.work_dir, "annotations")
        self.ignore_value = int(ignore_value)
        self.divisor = divisor
        self.seed = int(seed)
        self.loss = loss if loss is not None else PartialLabelLoss(ignore_value=self.ignore_value)
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
        self._graphs: dict[str, RegionGraph] = {}

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
        return os.path.join(self.output_dir, f"learning_curve_{self.strategy}.csv")

    def state(self, case: dict) -> AnnotationState:
        root = os.path.join(self.work_dir, "state", case["name"])
        # the NIfTI affine of the state must be 4x4; MetaTensor affines of 2D images are 3x3
        affine = case["affine"] if case["affine"].shape == (4, 4) else None
        return AnnotationState.load_or_create(root, case["image"].shape[1:], affine, self.ignore_value)

    def regions(self, case: dict) -> np.ndarray:
        if case["name"] not in self._regions:
            self._regions[case["name"]] = np.asarray(self.supervoxels(case["image"]))[0]
        return self._regions[case["name"]]

    def graph(self, case: dict) -> RegionGraph:
        if case["name"] not in self._graphs:
            self._graphs[case["name"]] = RegionGraph(self.regions(case), case["image"], steps=self.walk_steps)
        return self._graphs[case["name"]]

    # ---- network ----------------------------------------------------------------------------------------------
    def _pad(self, x: torch.Tensor, value: float = 0.0) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Pad ``BC*spatial`` at the end of each axis to a multiple of ``divisor`` (images: edge values)."""
        spatial = x.shape[2:]
        div = [self.divisor] * len(spatial) if isinstance(self.divisor, int) else list(self.divisor)
        pads = [(-s) % int(d) for s, d in zip(spatial, div, strict=True)]
        flat: list[int] = []
        for p in reversed(pads):
            flat += [0, p]
        if x.is_floating_point():
            return torch.nn.functional.pad(x, flat, mode="replicate"), spatial
        return torch.nn.functional.pad(x, flat, value=value), spatial

    def predict(self, image: np.ndarray) -> torch.Tensor:
        """Softmax probabilities ``(K, *spatial)`` of one channel-first image."""
        self.network.eval()
        with torch.no_grad():
            x, spatial = self._pad(torch.as_tensor(image)[None].to(self.device))
            logits = self.network(x)[(0, slice(None), *[slice(0, s) for s in spatial])]
        return torch.softmax(logits.float(), 0).cpu()

    def train(self, round_index: int, labels: list[np.ndarray]) -> float:
        """Retrain from the initial weights on the partial labels; returns the mean loss of the last 5 steps."""
        torch.manual_seed(self.seed + round_index)
        self.network.load_state_dict(self.initial_state)
        opt = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)
        images = torch.stack([torch.as_tensor(c["image"]) for c in self.pool])
        targets = torch.stack([torch.as_tensor(lab.astype(np.int64))[None] for lab in labels])
        x, _ = self._pad(images.to(self.device))
        y, _ = self._pad(targets.to(self.device), value=self.ignore_value)
        self.network.train()
        losses = []
        for _ in range(self.num_iterations):
            flip = [2 + int(a) for a in torch.nonzero(torch.rand(self.spatial_dims) < 0.5).flatten()]
            xi, yi = (x.flip(flip), y.flip(flip)) if flip else (x, y)
            opt.zero_grad()
            loss = self.loss(self.network(xi), yi)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
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
    def _available(self, case: dict, annotated: np.ndarray) -> np.ndarray:
        """Regions less than half annotated."""
        regions = self.regions(case)
        frac = np.asarray(region_mean(annotated.astype(np.float64)[None], regions[None], int(regions.max()) + 1))
        return frac.reshape(-1) < 0.5

    def _region_scores(self, case: dict, probs: torch.Tensor) -> np.ndarray:
        if self.strategy == "entropy":
            regions = self.regions(case)
            vox = entropy(probs.double(), dim=0).numpy()[None]
            return np.asarray(region_mean(vox, regions[None], int(regions.max()) + 1)).reshape(-1)
        g = self.graph(case)
        return g.combined_uncertainty(g.region_probs(probs.numpy()), self.geometric_weight)

    def _fill_budget(self, case: dict, annotated: np.ndarray, order: Sequence[int]) -> list[int]:
        """The first regions of ``order`` whose unannotated voxels add up to at least ``voxels_per_round``."""
        regions = self.regions(case)
        new = np.bincount(regions[~annotated].ravel(), minlength=int(regions.max()) + 1)
        pick, total = [], 0
        for p in order:
            if total >= self.voxels_per_round:
                break
            pick.append(int(p))
            total += int(new[p])
        return pick

    def _plane_query(self, case: dict, annotated: np.ndarray, scores: np.ndarray) -> dict:
        """Planar patches through the most uncertain supervoxels: one, or (``voxels_per_round``) until the budget."""
        regions = self.regions(case)
        vox_scores = np.clip(np.where(np.isfinite(scores), scores, 0.0), 0, None)[regions]
        taken, mask = annotated.copy(), np.zeros(annotated.shape, dtype=bool)
        s, planes = scores.copy(), []
        while np.isfinite(s).any():
            top = int(np.argmax(s))
            search = PlaneSearch(
                thickness=self.plane_thickness,
                radius=self.plane_radius,
                center=np.argwhere(regions == top).mean(0),
                n_theta=self.plane_angles[0],
                n_phi=self.plane_angles[1],
            )
            result = search(np.where(taken, 0.0, vox_scores))
            if self.voxels_per_round is None:
                return {"mask": result.mask(annotated.shape) & ~annotated, "plane": result.to_dict()}
            patch = result.mask(annotated.shape) & ~taken
            s[top] = -np.inf  # never centre two patches on the same supervoxel
            if patch.any():
                mask |= patch
                taken |= patch
                planes.append(result.to_dict())
                s = np.where(self._available(case, taken), s, -np.inf)
            if int(mask.sum()) >= self.voxels_per_round:
                break
        return {"mask": mask, "plane": planes[0] if planes else None, "planes": planes}

    def query(self, round_index: int, states: list[AnnotationState], rng: np.random.Generator) -> tuple[int, dict]:
        """Pick the case and the query mask of this round; returns ``(case index, record fields with 'mask')``."""
        avail = [self._available(c, s.annotated) for c, s in zip(self.pool, states, strict=True)]
        if not any(a.any() for a in avail):
            raise RuntimeError("every supervoxel of the pool is already annotated; lower `num_rounds`.")
        if round_index == 0 or self.strategy == "random":
            ci = int(rng.choice([i for i, a in enumerate(avail) if a.any()]))
            ids = np.flatnonzero(avail[ci])
            if self.voxels_per_round is None:
                pick = rng.choice(ids, size=min(self.regions_per_round, len(ids)), replace=False)
            else:
                pick = self._fill_budget(self.pool[ci], states[ci].annotated, rng.permutation(ids))
            return ci, {"mask": np.isin(self.regions(self.pool[ci]), pick), "region_ids": sorted(int(p) for p in pick)}
        scores = []
        for c, a in zip(self.pool, avail, strict=True):
            s = self._region_scores(c, self.predict(c["image"]))
            scores.append(np.where(a, s, -np.inf))
        ci = int(np.argmax([s.max() for s in scores]))
        case, s = self.pool[ci], scores[ci]
        if self.strategy == "geometric_plane" and self.spatial_dims == 3:
            return ci, self._plane_query(case, states[ci].annotated, s)
        order = [int(p) for p in np.argsort(-s, kind="stable") if np.isfinite(s[p])]
        if self.voxels_per_round is None:
            pick = order[: self.regions_per_round]
        else:
            pick = self._fill_budget(case, states[ci].annotated, order)
        return ci, {"mask": np.isin(self.regions(case), pick), "region_ids": sorted(pick)}

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
                return FileAnnotator(mask.shape, self.ignore_value)(mask, path)
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
        model_path = os.path.join(self.work_dir, MODEL_FILE)
        have_model = bool(rows) and os.path.isfile(model_path)
        if have_model:
            self.network.load_state_dict(torch.load(model_path, map_location=self.device, weights_only=True))
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
                record = states[ci].update(r, mask, answer, strategy=self.strategy, case=self.pool[ci]["name"], **q)
                queried = int(record["voxels"])
            loss = self.train(r, [s.labels for s in states])
            atomic_write_torch(model_path, self.network.state_dict())
            have_model = True
            dice, iou, per_class = self.evaluate()
            n = sum(s.n_annotated for s in states)
            rows.append(
                {
                    "round": r,
                    "strategy": self.strategy,
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
            self.logger.info(f"round {r} ({self.strategy}): {n} annotated voxels, Dice {dice:.4f}, IoU {iou:.4f}")
            self.plot()
        return rows

    def plot(self) -> None:
        """``learning_curve_<strategy>.png`` and ``learning_curves.png`` (every strategy with a CSV here)."""
        plot_learning_curves({self.strategy: self.curve_path}, self.curve_path[:-4] + ".png", self.strategy)
        found = {s: os.path.join(self.output_dir, f"learning_curve_{s}.csv") for s in STRATEGIES}
        plot_learning_curves(
            {s: p for s, p in found.items() if os.path.isfile(p)}, os.path.join(self.output_dir, "learning_curves.png")
        )
