"""Every use of a MONAI / ignite internal in monai_wsss, in one place.

MONAI does not promise that these names stay: each helper checks the internal it relies on and raises a
:py:class:`MonaiInternalsChanged` naming it, so a MONAI upgrade that moves one fails loudly (and
``tests/test_compat.py`` fails) instead of silently changing behaviour.

- ``monai.handlers.CheckpointSaver``: its ignite ``Checkpoint`` objects (``_final_checkpoint``,
  ``_key_metric_checkpoint``, ``_interval_checkpoint``), their save handler's ``dirname`` / ``filename`` (MONAI's
  fixed-name ``DiskSaver``), and ignite's ``Checkpoint._saved`` list and ``Checkpoint._get_filename_pattern``
  (:py:func:`make_checkpoint_saver_atomic`, :py:func:`checkpoint_filename_regex`, :py:func:`saved_checkpoints`,
  :py:func:`set_saved_checkpoints`);
- ``monai.networks.nets.UNet._get_up_layer``, the hook that builds each decoder level
  (:py:class:`DecoderDropoutUNet`);
- the attributes of ``monai.networks.nets.resnet.ResNetBlock`` / ``ResNetBottleneck`` (``conv1``, ``conv2``,
  ``downsample``, ``stride``) (:py:func:`unstride_resnet_block`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from functools import partial

import torch.nn as nn
from monai.networks.nets import UNet

__all__ = [
    "DecoderDropoutUNet",
    "MonaiInternalsChanged",
    "checkpoint_filename_regex",
    "checkpoint_objects",
    "make_checkpoint_saver_atomic",
    "saved_checkpoints",
    "set_saved_checkpoints",
    "unstride_resnet_block",
]

_CHECKPOINT_ATTRS = ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint")


class MonaiInternalsChanged(RuntimeError):
    """A MONAI / ignite internal that monai_wsss relies on is not where this version expects it."""


def _moved(what: str) -> MonaiInternalsChanged:
    import monai

    return MonaiInternalsChanged(
        f"{what} is not as monai_wsss expects in MONAI {monai.__version__}; update monai_wsss/compat.py."
    )


def checkpoint_objects(saver) -> dict:
    """
    The ignite ``Checkpoint`` objects of a ``monai.handlers.CheckpointSaver`` that are in use, by role:
    ``{"final": ..., "key_metric": ..., "interval": ...}`` (a role the saver does not save is absent).

    Raises:
        MonaiInternalsChanged: the saver has no ``_final_checkpoint`` / ``_key_metric_checkpoint`` /
            ``_interval_checkpoint`` attribute.
    """
    found = {}
    for name in _CHECKPOINT_ATTRS:
        if not hasattr(saver, name):
            raise _moved(f"CheckpointSaver.{name}")
        if getattr(saver, name) is not None:
            found[name[1:].replace("_checkpoint", "")] = getattr(saver, name)
    return found


def make_checkpoint_saver_atomic(saver, make_handler: Callable[[str, str | None], object]) -> None:
    """
    Replace the save handler of every ignite ``Checkpoint`` of a ``monai.handlers.CheckpointSaver`` by
    ``make_handler(dirname, fixed_filename)`` (e.g. :py:class:`monai_wsss.handlers.checkpoint.DurableDiskSaver`):
    MONAI builds its own ignite ``DiskSaver`` objects (``atomic=False``, fixed names for ``model.pt``) and has no
    argument to choose another.

    Raises:
        MonaiInternalsChanged: the saver has no ``_final_checkpoint`` / ``_key_metric_checkpoint`` /
            ``_interval_checkpoint`` attribute, or their save handler has no ``dirname`` / ``filename``.
    """
    for role, ckpt in checkpoint_objects(saver).items():
        handler = getattr(ckpt, "save_handler", None)
        if handler is None or not hasattr(handler, "dirname") or not hasattr(handler, "filename"):
            raise _moved(f"CheckpointSaver {role} checkpoint's save_handler.dirname / .filename (MONAI _DiskSaver)")
        ckpt.save_handler = make_handler(str(handler.dirname), handler.filename)


def checkpoint_filename_regex(ckpt, name: str) -> re.Pattern:
    """
    The names an ignite ``Checkpoint`` with a score function gives its files (``checkpoint_epoch=12.pt``), as a
    regular expression whose group 1 is the integer score; ``name`` is ``"checkpoint"`` or the single key saved.

    Raises:
        MonaiInternalsChanged: ignite's ``Checkpoint._get_filename_pattern`` is gone or renders no score.
    """
    get = getattr(ckpt, "_get_filename_pattern", None)
    if get is None:
        raise _moved("ignite Checkpoint._get_filename_pattern")
    marker = "\x00score\x00"
    rendered = get(None).format(
        filename_prefix=ckpt.filename_prefix,
        ext=ckpt.ext,
        name=name,
        score_name=ckpt.score_name,
        score=marker,
        global_step=None,
    )
    if rendered.count(marker) != 1:
        raise _moved("ignite Checkpoint filename pattern with one {score}")
    head, tail = rendered.split(marker)
    return re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))


def set_saved_checkpoints(ckpt, items: Sequence[tuple[int, str]]) -> None:
    """
    Tell an ignite ``Checkpoint`` that the files ``items`` (``(priority, filename)``) are its own, so that it counts
    them in ``n_saved`` and removes them in turn, e.g. the checkpoints found when a training resumes.

    Raises:
        MonaiInternalsChanged: the checkpoint has no ``_saved`` list or ignite's ``Checkpoint.Item``.
    """
    from ignite.handlers import Checkpoint

    if not isinstance(getattr(ckpt, "_saved", None), list) or not hasattr(Checkpoint, "Item"):
        raise _moved("ignite Checkpoint._saved / Checkpoint.Item")
    ckpt._saved[:] = sorted((Checkpoint.Item(p, f) for p, f in items), key=lambda it: it[0])


def saved_checkpoints(ckpt) -> list:
    """
    The ``(priority, filename)`` items an ignite ``Checkpoint`` counts as saved, best last (its own list).

    Raises:
        MonaiInternalsChanged: the checkpoint has no ``_saved`` list.
    """
    if not isinstance(getattr(ckpt, "_saved", None), list):
        raise _moved("ignite Checkpoint._saved")
    return ckpt._saved


def _check_up_layer_hook() -> None:
    hook = getattr(UNet, "_get_up_layer", None)
    if hook is None or list(inspect.signature(hook).parameters) != [
        "self",
        "in_channels",
        "out_channels",
        "strides",
        "is_top",
    ]:
        raise _moved("UNet._get_up_layer(self, in_channels, out_channels, strides, is_top)")


class DecoderDropoutUNet(UNet):
    """
    MONAI ``UNet`` with dropout in the decoder's inner up-sampling layers only, as in the pix2pix generator (Isola
    et al., CVPR 2017, whose dropout sits in the innermost decoder blocks); MONAI's ``dropout`` would put it in every
    layer. Arguments are ``UNet``'s, plus ``decoder_dropout``.

    Raises:
        MonaiInternalsChanged: ``UNet._get_up_layer`` is gone or has another signature.
    """

    def __init__(self, *args, decoder_dropout: float = 0.5, **kwargs) -> None:
        _check_up_layer_hook()
        self._decoder_dropout = decoder_dropout  # read while super().__init__ builds the layers
        super().__init__(*args, dropout=0.0, **kwargs)

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        encoder_dropout = self.dropout
        self.dropout = 0.0 if is_top else self._decoder_dropout
        try:
            return super()._get_up_layer(in_channels, out_channels, strides, is_top)
        finally:
            self.dropout = encoder_dropout


def unstride_resnet_block(block: nn.Module, spatial_dims: int) -> None:
    """
    Set the stride of a MONAI ResNet block (``ResNetBlock`` / ``ResNetBottleneck``: its strided convolution and its
    shortcut) to 1, in place; the classifier's output stride halves (the AdvCAM / IRN recipe, without dilation).

    Raises:
        MonaiInternalsChanged: the block has no ``conv1`` / ``downsample`` / ``stride`` attribute, or a shortcut of
            a kind this function does not know.
    """
    for name in ("conv1", "downsample", "stride"):
        if not hasattr(block, name):
            raise _moved(f"ResNet block attribute `{name}`")
    one = (1,) * spatial_dims
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if isinstance(conv, nn.modules.conv._ConvNd) and conv.kernel_size != one:
            conv.stride = one
    down = block.downsample
    if isinstance(down, partial):  # shortcut type "A": strided average pooling + zero padding
        block.downsample = partial(down.func, *down.args, **{**down.keywords, "stride": 1})
    elif isinstance(down, nn.Sequential) and isinstance(down[0], nn.modules.conv._ConvNd):  # type "B": 1x1 conv
        down[0].stride = one
    elif down is not None:
        raise _moved(f"ResNet block shortcut of type {type(down).__name__}")
    block.stride = 1
