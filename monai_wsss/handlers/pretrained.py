"""The handler behind every bundle's ``pretrained_weights`` key: initialise a network from a weights file."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..networks.utils import load_pretrained_weights
from ..settings import as_switch
from .checkpoint import latest_checkpoint

__all__ = ["PretrainedWeightsLoader"]


class PretrainedWeightsLoader:
    """
    Training handler behind ``pretrained_weights``: when attached, initialise ``network`` with
    :py:func:`~monai_wsss.networks.load_pretrained_weights`, unless the run resumes from a checkpoint in
    ``ckpt_dir`` (the checkpoint's weights win; pre-trained weights are never loaded over them), in which case it
    logs that it skips.

    Args:
        path: the weights file; ``None`` or ``""``: nothing to do.
        network: the network to initialise.
        prefix, strip_prefix, map_location: see :py:func:`~monai_wsss.networks.load_pretrained_weights`.
        ckpt_dir: where the run's resumable checkpoints are (``None``: never skip).
        resume: whether the run resumes (the bundle's ``resume`` key); ``False``: always load.
        pattern: glob of the checkpoint names (as :py:class:`ResumeCheckpointLoader`).
        name: logger name.

    Attributes:
        report: what :py:func:`~monai_wsss.networks.load_pretrained_weights` returned (``None`` when skipped or
            disabled).
        skipped_for: the checkpoint the run resumes from when loading was skipped, else ``None``.

    Raises:
        SettingsError: at attach, see :py:func:`~monai_wsss.networks.load_pretrained_weights`.
    """

    def __init__(
        self,
        path: str | None,
        network: torch.nn.Module,
        prefix: str | Sequence[str] = "",
        strip_prefix: str = "",
        ckpt_dir: str | None = None,
        resume: bool = True,
        pattern: str = "*checkpoint*.pt",
        map_location: str | torch.device = "cpu",
        name: str | None = None,
    ) -> None:
        self.path, self.network = path, network
        self.prefix, self.strip_prefix, self.map_location = prefix, strip_prefix, map_location
        self.ckpt_dir, self.resume, self.pattern = ckpt_dir, as_switch(resume, "resume"), pattern  # "false" too
        self.logger = logging.getLogger(name or __name__)
        self.report: dict[str, list[str]] | None = None
        self.skipped_for: str | None = None

    def attach(self, engine=None) -> None:
        if self.path is None or str(self.path) == "":
            return
        if self.resume and self.ckpt_dir is not None:
            found = latest_checkpoint(self.ckpt_dir, self.pattern)  # the one ResumeCheckpointLoader continues from
            if found is not None:
                self.skipped_for = found
                self.logger.info(
                    f"Pretrained weights {self.path} not loaded: the run resumes from a checkpoint in {self.ckpt_dir}."
                )
                return
        self.report = load_pretrained_weights(
            self.network, self.path, self.prefix, self.strip_prefix, self.map_location, self.logger
        )
