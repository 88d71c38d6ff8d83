"""Two-stream batches: labelled and unlabelled samples drawn from their own loaders into one batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch.utils.data import DataLoader

__all__ = ["TwoStreamLoader"]


class TwoStreamLoader:
    """
    Iterate ``epoch_length`` batches, each holding one batch of ``labeled_loader`` (e.g. 2 labelled samples) and
    one of ``unlabeled_loader`` (e.g. 2 unlabelled samples) merged into one dict: the unlabelled stream's keys get
    ``unlabeled_suffix`` (``image`` -> ``image_u``). This is the two-stream sampling of the semi-supervised
    papers (Yu et al., MICCAI 2019; Luo et al., AAAI 2021), built from two ordinary MONAI/PyTorch data loaders so
    that each stream keeps its own dataset, transforms, batch size and (distributed) sampler.

    Both loaders cycle independently and forever: a pass over the labelled cases does not end an "epoch".
    Training is therefore iteration-based; an epoch is ``epoch_length`` iterations, the unit for checkpoints,
    validation and logging. When a loader starts a new pass, ``set_epoch(pass_index)`` is called on its sampler if
    it has one (``DistributedSampler``), so every pass is reshuffled consistently across ranks.

    Args:
        labeled_loader: yields dict batches with image and label.
        unlabeled_loader: yields dict batches with an image; ``None`` yields labelled batches only.
        epoch_length: iterations per epoch; also ``len(self)``.
        unlabeled_suffix: suffix added to the unlabelled stream's keys.
    """

    def __init__(
        self,
        labeled_loader: Iterable,
        unlabeled_loader: Iterable | None,
        epoch_length: int,
        unlabeled_suffix: str = "_u",
    ) -> None:
        if epoch_length < 1:
            raise ValueError(f"`epoch_length` must be positive, got {epoch_length}.")
        self.loaders = {"labeled": labeled_loader, "unlabeled": unlabeled_loader}
        self.epoch_length = epoch_length
        self.suffix = unlabeled_suffix
        self._iters: dict[str, Iterator | None] = {"labeled": None, "unlabeled": None}
        self._passes = {"labeled": 0, "unlabeled": 0}

    def __len__(self) -> int:
        return self.epoch_length

    def _next(self, name: str) -> dict:
        loader = self.loaders[name]
        for _attempt in range(2):
            if self._iters[name] is None:
                sampler = getattr(loader, "sampler", None) if isinstance(loader, DataLoader) else None
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self._passes[name])
                self._passes[name] += 1
                self._iters[name] = iter(loader)
            try:
                return next(self._iters[name])
            except StopIteration:
                self._iters[name] = None
        raise ValueError(f"The {name} data loader yields no batch: its dataset is empty on this process.")

    def __iter__(self) -> Iterator[dict]:
        for _ in range(self.epoch_length):
            batch = dict(self._next("labeled"))
            if self.loaders["unlabeled"] is not None:
                batch.update({f"{k}{self.suffix}": v for k, v in self._next("unlabeled").items()})
            yield batch
