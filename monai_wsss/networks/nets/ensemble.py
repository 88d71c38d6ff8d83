"""An ensemble of S segmentation networks, as trained by co-training."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from monai.transforms import MeanEnsemble
from torch import nn

__all__ = ["SegmentationEnsemble"]

OUTPUT_MODES = ("mean", "members", "logits")


def _reinitialise(module: nn.Module) -> None:
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


class SegmentationEnsemble(nn.Module):
    """
    S segmentation networks behind one module (one ``state_dict``, one ``network_def``).

    ``forward(x)`` returns the soft vote of the members, the mean of their softmax maps (MONAI's
    :py:class:`monai.transforms.MeanEnsemble`), so ``verify_net_in_out``, Slicer and MONAI Label see one prediction;
    ``forward(x, member=i)`` returns member i's logits (the trainer calls members this way, so a
    ``DistributedDataParallel`` wrapper around the ensemble still sees every forward pass).

    Args:
        network: a segmentation network (any MONAI network giving logits (B, C, spatial...)); it is copied
            ``num_models`` times and every copy is re-initialised (``reset_parameters`` of each layer), so members
            start from different weights. Give either ``network`` or ``members``.
        num_models: S >= 2.
        members: the S networks themselves.
        output: what ``forward(x)`` returns: ``"mean"`` (mean softmax, (B, C, ...)), ``"members"`` (softmax of each
            member, (S, B, C, ...)) or ``"logits"`` (each member's logits, (S, B, C, ...)).

    Raises:
        ValueError: fewer than two members, or an unknown ``output``.
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        num_models: int = 2,
        members: Sequence[nn.Module] | None = None,
        output: str = "mean",
    ) -> None:
        super().__init__()
        if (network is None) == (members is None):
            raise ValueError("Give exactly one of `network` (copied `num_models` times) or `members`.")
        if members is None:
            if int(num_models) < 2:
                raise ValueError(f"A co-training ensemble needs num_models >= 2, got {num_models}.")
            copies = []
            for _ in range(int(num_models)):
                m = copy.deepcopy(network)
                _reinitialise(m)
                copies.append(m)
            members = copies
        if len(members) < 2:
            raise ValueError(f"A co-training ensemble needs at least 2 members, got {len(members)}.")
        if output not in OUTPUT_MODES:
            raise ValueError(f"Unknown output '{output}'; use one of {OUTPUT_MODES}.")
        self.members = nn.ModuleList(members)
        self.output = output
        self._mean = MeanEnsemble()

    @property
    def num_models(self) -> int:
        return len(self.members)

    def param_groups(self) -> list[dict]:
        """One optimiser parameter group per member (``[{"params": ...}, ...]``), for per-member settings."""
        return [{"params": list(m.parameters())} for m in self.members]

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        if member is not None:
            return self.members[member](x)
        logits = torch.stack([m(x) for m in self.members], dim=0)
        if self.output == "logits":
            return logits
        probs = torch.softmax(logits, dim=2) if logits.shape[2] > 1 else torch.sigmoid(logits)
        if self.output == "members":
            return probs
        return self._mean(probs)
