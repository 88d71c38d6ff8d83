"""Every use of a MONAI / ignite internal in monai_wsss, in one place.

MONAI does not promise that these names stay: each helper checks the internal it relies on and raises a
:py:class:`MonaiInternalsChanged` naming it, so a MONAI upgrade that moves one fails loudly (and
``tests/test_compat.py`` fails) instead of silently changing behaviour.

- ``monai.handlers.CheckpointSaver``: its ignite ``Checkpoint`` objects (``_final_checkpoint``,
  ``_key_metric_checkpoint``, ``_interval_checkpoint``) and their ``DiskSaver``'s ``_atomic`` flag
  (:py:func:`make_checkpoint_saver_atomic`);
- ``monai.networks.nets.UNet._get_up_layer``, the hook that builds each decoder level
  (:py:class:`DecoderDropoutUNet`);
- the attributes of ``monai.networks.nets.resnet.ResNetBlock`` / ``ResNetBottleneck`` (``conv1``, ``conv2``,
  ``downsample``, ``stride``) (:py:func:`unstride_resnet_block`).
"""

from __future__ import annotations

import inspect
from functools import partial

import torch.nn as nn
from monai.networks.nets import UNet

__all__ = ["DecoderDropoutUNet", "MonaiInternalsChanged", "make_checkpoint_saver_atomic", "unstride_resnet_block"]

_CHECKPOINT_ATTRS = ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint")


class MonaiInternalsChanged(RuntimeError):
    """A MONAI / ignite internal that monai_wsss relies on is not where this version expects it."""


def _moved(what: str) -> MonaiInternalsChanged:
    import monai

    return MonaiInternalsChanged(
        f"{what} is not as monai_wsss expects in MONAI {monai.__version__}; update monai_wsss/compat.py."
    )


def make_checkpoint_saver_atomic(saver) -> None:
    """
    Make every file a ``monai.handlers.CheckpointSaver`` writes atomic (temporary file + rename): MONAI builds its
    ignite ``DiskSaver`` objects with ``atomic=False`` and has no argument to change it.

    Raises:
        MonaiInternalsChanged: the saver has no ``_final_checkpoint`` / ``_key_metric_checkpoint`` /
            ``_interval_checkpoint`` attribute, or their save handler has no ``_atomic`` flag.
    """
    for name in _CHECKPOINT_ATTRS:
        if not hasattr(saver, name):
            raise _moved(f"CheckpointSaver.{name}")
        ckpt = getattr(saver, name)
        if ckpt is None:
            continue
        handler = getattr(ckpt, "save_handler", None)
        if handler is None or not hasattr(handler, "_atomic"):
            raise _moved(f"CheckpointSaver.{name}.save_handler._atomic (ignite DiskSaver)")
        handler._atomic = True


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
