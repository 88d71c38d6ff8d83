"""Multi-stream batches: labelled and unlabelled samples drawn from their own loaders into one batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from torch.utils.data import DataLoader

from .schedule import run_length

__all__ = ["MultiStreamLoader", "TwoStreamLoader", "subset_loaders"]


class MultiStreamLoader:
    """
    Iterate ``epoch_length`` batches, each merging one batch of every loader in ``streams`` into one dict; the keys
    of stream ``suffix`` get that suffix (``{"_0": loader_a, "_u": loader_b}`` gives ``image_0``, ``label_0``,
    ``image_u``). Every loader cycles independently and forever (see :py:class:`TwoStreamLoader`, the two-stream
    case); a loader starting a new pass calls ``set_epoch(pass_index)`` on its sampler when it has one.

    Args:
        streams: suffix -> loader of dict batches; a ``None`` loader is skipped.
        epoch_length: iterations per epoch; also ``len(self)``.
        names: suffix -> name used in error messages (default: the suffix).
    """

    def __init__(
        self, streams: Mapping[str, Iterable | None], epoch_length: int, names: Mapping[str, str] | None = None
    ) -> None:
        run_length(1, epoch_length)  # a positive integer, or a ValueError naming `epoch_length`
        if not any(v is not None for v in streams.values()):
            raise ValueError("MultiStreamLoader needs at least one data loader.")
        self.streams = {k: v for k, v in streams.items() if v is not None}
        self.epoch_length = epoch_length
        self._iters: dict[str, Iterator | None] = dict.fromkeys(self.streams)
        self._passes = dict.fromkeys(self.streams, 0)
        self.names = {k: (names or {}).get(k, f"'{k}'") for k in self.streams}

    def __len__(self) -> int:
        return self.epoch_length

    def _next(self, name: str) -> dict:
        loader = self.streams[name]
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
        raise ValueError(f"The {self.names[name]} data loader yields no batch: its dataset is empty on this process.")

    def __iter__(self) -> Iterator[dict]:
        for _ in range(self.epoch_length):
            batch: dict = {}
            for name in self.streams:
                batch.update({f"{k}{name}": v for k, v in self._next(name).items()})
            yield batch


def subset_loaders(
    subsets: Sequence[Sequence[dict]],
    transform: object,
    batch_size: int,
    num_workers: int = 0,
    cache: bool = True,
    distributed: bool = False,
    suffix: str = "_{}",
) -> dict[str, DataLoader]:
    """
    One shuffled :py:class:`monai.data.DataLoader` per subset (e.g. the labelled subsets of an ensemble's members),
    keyed ``suffix.format(i)`` for :py:class:`MultiStreamLoader`. Datasets are :py:class:`monai.data.CacheDataset`
    (``cache=True``) or :py:class:`monai.data.Dataset`; ``distributed=True`` gives each a
    ``DistributedSampler`` (even partition across ranks, as ``monai.data.partition_dataset``).
    """
    from monai.data import CacheDataset, Dataset
    from monai.data import DataLoader as MonaiDataLoader
    from torch.utils.data.distributed import DistributedSampler

    loaders = {}
    for i, data in enumerate(subsets):
        if cache:
            ds = CacheDataset(list(data), transform=transform, cache_rate=1.0, num_workers=num_workers, progress=False)
        else:
            ds = Dataset(list(data), transform=transform)
        sampler = DistributedSampler(ds, shuffle=True) if distributed else None
        loaders[suffix.format(i)] = MonaiDataLoader(
            ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=num_workers
        )
    return loaders


class TwoStreamLoader(MultiStreamLoader):
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
        super().__init__(
            {"": labeled_loader, unlabeled_suffix: unlabeled_loader},
            epoch_length,
            names={"": "labeled", unlabeled_suffix: "unlabeled"},
        )
        self.suffix = unlabeled_suffix
