"""The segmenter recipe: train and evaluate a supervised segmenter on any decathlon folder, wired from MONAI parts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader, DistributedSampler
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    CheckpointLoader,
    LrScheduleHandler,
    MeanDice,
    MeanIoUHandler,
    MetricsSaver,
    StatsHandler,
    from_engine,
)
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.transforms import AsDiscreted, Compose, RandSpatialCropd, SpatialPadd

from ..data.loaders import MultiStreamLoader
from ..handlers.checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader
from ..handlers.figures import LearningCurveWriter, OverlayPNGSaver
from ..handlers.progress import ProgressBar
from ..handlers.validation import OptionalValidationHandler
from ..settings import as_switch

__all__ = ["SegmenterRecipe", "choose"]


def choose(choices: Mapping[str, Any], name: str, key: str) -> Any:
    """
    The entry ``name`` of a config's menu of components (e.g. ``segment::networks`` picked by ``head``,
    ``segment::criteria`` picked by ``criterion``). The entries that were not picked carry
    ``"_disabled_": "$@head != '<their name>'"``, so MONAI's config parser never builds them: ``choices`` holds only
    the picked entry (or none when ``name`` is unknown).

    Raises:
        ValueError: ``name`` is not among ``choices``.
    """
    if name not in choices:
        raise ValueError(
            f"`{key}` is '{name}', which is not one of the choices this config defines (see the bundle docs for the "
            f"values of `{key}`)."
        )
    return choices[name]


def _is_rank0() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() > 0)


def _plain_module(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (whose forward would wait for the other ranks)."""
    return network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network


def _image_meta(batch: Sequence[Mapping]) -> list:
    """``MetricsSaver`` batch transform: the image meta data of each decollated item (names the per-case rows)."""
    return [item["image"].meta for item in batch]


class SegmenterRecipe:
    """
    Train a segmenter on labelled images and score it on held-out ones: the last step of every pipeline that ends
    with "train a segmenter on these labels" (synthetic pairs, pseudo-labels, retraining, fine-tuning). It only wires
    MONAI parts: :py:class:`monai.engines.SupervisedTrainer` with resumable atomic checkpoints
    (:py:class:`~monai_wsss.handlers.ResumeCheckpointLoader`, :py:class:`~monai_wsss.handlers.AtomicCheckpointSaver`),
    a progress bar and a learning curve; :py:class:`monai.engines.SupervisedEvaluator` with ``MeanDice`` (mean over
    foreground classes, ``dice``, and per class, ``dice_per_class``), ``MeanIoUHandler`` (foreground, ``jaccard``;
    background included, ``miou``), ``MetricsSaver`` and an overlay PNG per case (``save_overlays``).

    The downstream segmenter of Bailo, Ham, Shin, "Red blood cell image generation for data augmentation using
    conditional generative adversarial networks" (CVPR Workshops 2019) and of Lee, Kim, Yoon, "Anti-Adversarially
    Manipulated Attributions for Weakly and Semi-Supervised Semantic Segmentation" (CVPR 2021); any network and loss
    drop in (by ``_target_`` in a bundle's ``segment::network_def`` / ``segment::loss``).

    Training batches: ``preprocessing`` then ``augment`` then, when ``roi_size`` is given, a pad to ``roi_size``
    and a random ``roi_size`` crop (so images of any size batch together); ``batch_size`` items per iteration,
    ``epoch_length`` iterations per epoch (the loader cycles), ``num_epochs`` epochs. Evaluation: ``preprocessing``
    only, a sliding window of ``roi_size`` (whole images with ``SimpleInferer`` when ``roi_size`` is None), argmax,
    metrics against the label; it runs after the last epoch (every ``val_interval`` epochs when given).

    Files: ``ckpt_dir/checkpoint_epoch=N.pt`` (resumable: model, optimiser, trainer; the last ``n_saved`` are
    kept), ``ckpt_dir/model.pt`` (the final state dict) and, with ``save_best``, ``ckpt_dir/model_best.pt`` (the
    state dict at the evaluation with the best ``dice`` on ``test_data``; its score in ``ckpt_dir/model_best.json``, so
    a resumed training replaces it only with a better one), written on rank 0 only;
    ``output_dir/learning_curve.{csv,png}``, ``output_dir/metrics.csv`` and, with ``save_overlays``,
    ``output_dir/<case>_overlay.png``. :py:meth:`evaluation` builds the same evaluation for a saved ``model.pt``.

    Args:
        network: the segmenter (logits, ``num_classes`` channels), already on ``device``.
        train_data: training items (``{"image": ..., "label": ...}``).
        test_data: held-out items with labels.
        preprocessing: deterministic transforms (loading, intensity scaling) shared by training and evaluation.
        num_classes: classes including background.
        ckpt_dir: folder of the checkpoints.
        output_dir: folder of the learning curve, metrics and overlays.
        augment: random transforms of training items (after ``preprocessing``).
        roi_size: training crop and sliding-window size; None trains and infers on whole images.
        num_epochs: epochs of training.
        epoch_length: iterations per epoch.
        batch_size: training items per iteration.
        learning_rate: Adam's learning rate when ``optimizer`` is None.
        loss: called as ``loss(logits, label)``; default ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        optimizer: default ``Adam(network.parameters(), learning_rate)``.
        val_interval: evaluate every this many epochs; default: once, after the last epoch.
        eval_batch_size: held-out items per evaluation batch.
        sw_batch_size: windows per forward pass of the sliding window.
        overlap: overlap of the sliding windows.
        device: where training and inference run.
        resume: continue from the newest checkpoint in ``ckpt_dir``.
        amp: mixed precision in ``SupervisedTrainer`` / ``SupervisedEvaluator``.
        num_workers: data loader workers.
        save_overlays: write the overlay PNGs.
        stream_name: name of the training images in error messages.
        n_saved: how many interval checkpoints ``checkpoint_epoch=N.pt`` are kept (the newest).
        save_best: also keep ``model_best.pt``, the weights at the best ``dice`` of the evaluations (which run on
            ``test_data``, so the choice is made on the scored data; ``model.pt`` stays the final state).
        handlers: more training handlers (e.g. :py:class:`~monai_wsss.handlers.RunSummary`), attached first.
        lr_scheduler: stepped every iteration (MONAI ``LrScheduleHandler``) and kept in the resumable checkpoints,
            e.g. the poly decay of the OCR paper; None keeps the learning rate constant.
        distributed: training under ``torchrun``: each rank draws its share of ``train_data`` through MONAI's
            ``DistributedSampler`` (``network`` is then the ``DistributedDataParallel`` wrapper; checkpoints hold the
            plain module's weights); every rank evaluates the whole held-out list with the plain module (MONAI's
            metrics gather across ranks), figures, overlays and checkpoints are written on rank 0 only.

    Raises:
        ValueError: ``num_classes`` < 2, ``num_epochs``, ``epoch_length`` or ``batch_size`` < 1, or an empty
            ``train_data`` or ``test_data``.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        train_data: Sequence[Mapping],
        test_data: Sequence[Mapping],
        preprocessing: Sequence[Callable],
        num_classes: int,
        ckpt_dir: str,
        output_dir: str,
        augment: Sequence[Callable] = (),
        roi_size: Sequence[int] | None = None,
        num_epochs: int = 20,
        epoch_length: int = 20,
        batch_size: int = 8,
        learning_rate: float = 1e-3,
        loss: Callable | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        val_interval: int | None = None,
        eval_batch_size: int = 1,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        device: str | torch.device = "cpu",
        resume: bool = True,
        amp: bool = False,
        num_workers: int = 0,
        save_overlays: bool = True,
        stream_name: str = "training images",
        n_saved: int = 1,
        save_best: bool = False,
        handlers: Sequence[Any] = (),
        distributed: bool = False,
        lr_scheduler: Any = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"`num_classes` must count background and at least one class, got {num_classes}.")
        for name, value in (("num_epochs", num_epochs), ("epoch_length", epoch_length), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"`{name}` must be positive, got {value}.")
        if len(train_data) == 0:
            raise ValueError("`train_data` is empty: the segmenter has nothing to train on.")
        if len(test_data) == 0:
            raise ValueError(
                "`test_data` is empty: the segmenter has no held-out case to be scored on; give the data folder's "
                "dataset.json a `test` list with labels (or hold out part of the labelled cases, e.g. `--val_fraction "
                "0.2` where the bundle has that key)."
            )
        self.network = network
        self.train_data, self.test_data = list(train_data), list(test_data)
        self.preprocessing, self.augment = list(preprocessing), list(augment)
        self.num_classes = int(num_classes)
        self.ckpt_dir, self.output_dir = ckpt_dir, output_dir
        self.roi_size = None if roi_size is None else [int(s) for s in roi_size]
        self.num_epochs, self.epoch_length, self.batch_size = int(num_epochs), int(epoch_length), int(batch_size)
        self.loss = loss if loss is not None else DiceCELoss(to_onehot_y=True, softmax=True)
        if optimizer is None:
            optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        self.optimizer = optimizer
        self.val_interval = int(val_interval or num_epochs)
        self.eval_batch_size, self.sw_batch_size, self.overlap = int(eval_batch_size), int(sw_batch_size), overlap
        self.device = torch.device(device)
        self.resume, self.amp = as_switch(resume, "resume"), as_switch(amp, "amp")  # a command line passes "false"
        self.num_workers = int(num_workers)
        self.save_overlays, self.stream_name = as_switch(save_overlays, "save_overlays"), stream_name
        self.n_saved, self.save_best = int(n_saved), as_switch(save_best, "save_best")
        self.handlers, self.distributed = list(handlers), as_switch(distributed, "distributed")
        self.lr_scheduler = lr_scheduler
        self.logger = logging.getLogger(__name__)

    # ----------------------------------------------------------------------------------------------- training
    def train_transform(self) -> Compose:
        """``preprocessing + augment`` (+ pad and random crop to ``roi_size``)."""
        transforms = self.preprocessing + self.augment
        if self.roi_size is not None:
            keys = ["image", "label"]
            transforms += [
                SpatialPadd(keys, spatial_size=self.roi_size),
                RandSpatialCropd(keys, roi_size=self.roi_size, random_size=False),
            ]
        return Compose(transforms)

    @cached_property
    def train_loader(self) -> MultiStreamLoader:
        dataset = CacheDataset(self.train_data, self.train_transform(), cache_rate=1.0, num_workers=self.num_workers)
        sampler = DistributedSampler(dataset, even_divisible=True, shuffle=True) if self.distributed else None
        loader = DataLoader(
            dataset, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler, num_workers=self.num_workers
        )
        return MultiStreamLoader({"": loader}, epoch_length=self.epoch_length, names={"": self.stream_name})

    @cached_property
    def train_state(self) -> dict:
        """What the interval checkpoints hold and a resume restores: model, optimiser, lr scheduler."""
        state = {"model": self.network, "optimizer": self.optimizer}
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler
        return state

    @cached_property
    def resume_loader(self) -> ResumeCheckpointLoader:
        """Continues from the newest checkpoint in ``ckpt_dir`` (``resume``); its ``path`` says whether it did."""
        return ResumeCheckpointLoader(
            self.ckpt_dir, self.train_state, load_engine_as="trainer", enabled=self.resume, map_location=self.device
        )

    def train_handlers(self) -> list:
        """Resume, evaluation, progress bar, learning curve, checkpoints (the writers on rank 0 only)."""
        state = self.train_state
        handlers: list[Any] = self.handlers + [self.resume_loader]
        if self.lr_scheduler is not None:
            handlers.append(LrScheduleHandler(self.lr_scheduler, print_lr=False, epoch_level=False))
        # every rank evaluates the whole held-out list with the plain module: MONAI's metrics gather their buffers
        # across ranks (duplicates leave the means unchanged), and only rank 0 writes
        handlers.append(
            OptionalValidationHandler(validator=self.evaluator, interval=self.val_interval, epoch_level=True)
        )
        if _is_rank0():
            handlers += [
                ProgressBar(output_keys=["loss"]),
                LearningCurveWriter(self.output_dir, output_keys=["loss"]),
                AtomicCheckpointSaver(
                    self.ckpt_dir,
                    state,
                    save_engine_as="trainer",
                    save_interval=1,
                    epoch_level=True,
                    n_saved=self.n_saved,
                ),
                AtomicCheckpointSaver(
                    self.ckpt_dir,
                    {"model": self.network},
                    save_final=True,
                    final_filename="model.pt",
                    save_interval=0,
                ),
            ]
        return handlers

    @cached_property
    def trainer(self) -> SupervisedTrainer:
        """MONAI's ``SupervisedTrainer`` over the training loader, with :py:meth:`train_handlers`."""
        return SupervisedTrainer(
            device=self.device,
            max_epochs=self.num_epochs,
            epoch_length=self.epoch_length,
            train_data_loader=self.train_loader,
            network=self.network,
            optimizer=self.optimizer,
            loss_function=self.loss,
            train_handlers=self.train_handlers(),
            amp=self.amp,
        )

    # --------------------------------------------------------------------------------------------- evaluation
    def inferer(self) -> Inferer:
        """Sliding window of ``roi_size``, or the whole image when ``roi_size`` is None."""
        if self.roi_size is None:
            return SimpleInferer()
        return SlidingWindowInferer(self.roi_size, sw_batch_size=self.sw_batch_size, overlap=self.overlap)

    def metrics(self) -> tuple[dict, dict]:
        """``(key metric, additional metrics)``: Dice (foreground mean), per-class Dice, IoU, mIoU."""
        out = from_engine(["pred", "label"])
        key = {"dice": MeanDice(include_background=False, output_transform=out)}
        extra = {
            "dice_per_class": MeanDice(include_background=False, reduction="mean_batch", output_transform=out),
            "jaccard": MeanIoUHandler(include_background=False, output_transform=out),
            "miou": MeanIoUHandler(include_background=True, output_transform=out),
        }
        return key, extra

    def evaluation(
        self,
        output_dir: str,
        ckpt_path: str | None = None,
        metric_details: bool = False,
        save_overlays: bool | None = None,
    ) -> SupervisedEvaluator:
        """
        A ``SupervisedEvaluator`` of the network on ``test_data`` writing into ``output_dir``.

        Args:
            output_dir: folder of ``metrics.csv`` (and the overlays).
            ckpt_path: load this ``model.pt`` into the network before evaluating (a saved segmenter).
            metric_details: also write per-case ``*_raw.csv`` and ``*_summary.csv`` (``MetricsSaver``).
            save_overlays: write ``<case>_overlay.png``; default: the recipe's ``save_overlays``.
        """
        dataset = CacheDataset(
            self.test_data, Compose(self.preprocessing), cache_rate=1.0, num_workers=self.num_workers
        )
        loader = DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)
        network = _plain_module(self.network)
        handlers: list[Any] = []
        if ckpt_path is not None:
            load = {"model": network}
            handlers.append(CheckpointLoader(load_path=ckpt_path, load_dict=load, map_location=self.device))
        details = "*" if metric_details else None
        handlers += [
            StatsHandler(iteration_log=False),
            MetricsSaver(
                save_dir=output_dir,
                metrics="*",
                metric_details=details,
                batch_transform=_image_meta if metric_details else (lambda x: x),
                summary_ops="*" if metric_details else None,
            ),
        ]
        if (self.save_overlays if save_overlays is None else save_overlays) and _is_rank0():
            handlers.append(OverlayPNGSaver(output_dir, mask_keys=["label", "pred"]))
        post = AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=self.num_classes)
        key, extra = self.metrics()
        return SupervisedEvaluator(
            device=self.device,
            val_data_loader=loader,
            network=network,
            inferer=self.inferer(),
            postprocessing=post,
            key_val_metric=key,
            additional_metrics=extra,
            val_handlers=handlers,
            amp=self.amp,
        )

    @cached_property
    def evaluator(self) -> SupervisedEvaluator:
        """The evaluation run by the trainer (``output_dir``, no per-case tables; ``save_best``: ``model_best.pt``)."""
        evaluator = self.evaluation(self.output_dir)
        if self.save_best and _is_rank0():
            AtomicCheckpointSaver(
                self.ckpt_dir,
                {"model": _plain_module(self.network)},
                save_key_metric=True,
                key_metric_filename="model_best.pt",
                key_metric_n_saved=1,
                resume_best=self.resume_loader.resumed,
            ).attach(evaluator)
        return evaluator

    def run(self) -> dict[str, Any]:
        """Train (evaluating every ``val_interval`` epochs and at the end) and return the evaluator's metrics."""
        self.trainer.run()
        return dict(self.evaluator.state.metrics)
