"""Each MONAI internal monai_wsss touches (monai_wsss.compat) behaves as relied on; a moved one fails loudly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.handlers import CheckpointSaver
from monai.networks.nets import ResNetFeatures, UNet

from monai_wsss.compat import (
    DecoderDropoutUNet,
    MonaiInternalsChanged,
    checkpoint_filename_regex,
    checkpoint_objects,
    make_checkpoint_saver_atomic,
    set_saved_checkpoints,
    unstride_resnet_block,
)


def test_checkpoint_saver_disk_savers_are_replaced(tmp_path):
    net = nn.Linear(2, 2)
    saver = CheckpointSaver(str(tmp_path), {"net": net}, save_final=True, final_filename="model.pt", save_interval=1)
    handlers = [saver._final_checkpoint.save_handler, saver._interval_checkpoint.save_handler]
    assert [h._atomic for h in handlers] == [False, False]  # MONAI's default, the reason for the helper
    make_checkpoint_saver_atomic(saver, lambda dirname, filename: (dirname, filename))
    assert saver._final_checkpoint.save_handler == (str(tmp_path), "model.pt")
    assert saver._interval_checkpoint.save_handler == (str(tmp_path), None)
    assert saver._key_metric_checkpoint is None


def test_checkpoint_filename_regex_and_saved_list(tmp_path):
    saver = CheckpointSaver(str(tmp_path), {"net": nn.Linear(2, 2)}, save_interval=1, epoch_level=False, n_saved=2)
    ckpt = checkpoint_objects(saver)["interval"]
    regex = checkpoint_filename_regex(ckpt, "net")
    assert regex.fullmatch("net_iteration=12.pt").group(1) == "12"
    assert regex.fullmatch("net_iteration=12.pt.tmp") is None and regex.fullmatch("checkpoint_iteration=1.pt") is None
    set_saved_checkpoints(ckpt, [(12, "net_iteration=12.pt"), (3, "net_iteration=3.pt")])
    assert [(it.priority, it.filename) for it in ckpt._saved] == [
        (3, "net_iteration=3.pt"),
        (12, "net_iteration=12.pt"),
    ]


def test_checkpoint_saver_without_the_internals_fails_loudly():
    with pytest.raises(MonaiInternalsChanged, match="_final_checkpoint"):
        make_checkpoint_saver_atomic(object(), lambda d, f: None)
    with pytest.raises(MonaiInternalsChanged, match="_saved"):
        set_saved_checkpoints(object(), [])
    with pytest.raises(MonaiInternalsChanged, match="_get_filename_pattern"):
        checkpoint_filename_regex(object(), "checkpoint")


def _dropout_rates(module: nn.Module) -> list[float]:
    return [m.p for m in module.modules() if isinstance(m, nn.Dropout) and m.p > 0]


def test_decoder_dropout_unet_puts_dropout_in_inner_decoder_layers_only():
    kw = dict(spatial_dims=2, in_channels=2, out_channels=1, channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    net = DecoderDropoutUNet(**kw, decoder_dropout=0.5)
    assert _dropout_rates(UNet(**kw)) == []
    # levels: model = [down_top, SkipConnection(inner), up_top]; inner = [down, SkipConnection(bottom), up]
    top_down, inner, top_up = net.model[0], net.model[1].submodule, net.model[2]
    assert _dropout_rates(top_down) == [] and _dropout_rates(top_up) == []
    assert _dropout_rates(inner[0]) == []  # encoder: no dropout
    assert _dropout_rates(inner[2]) == [0.5]  # the inner up-sampling layer
    assert net(torch.zeros(1, 2, 16, 16)).shape == (1, 1, 16, 16)


def test_decoder_dropout_unet_fails_loudly_when_the_hook_moved(monkeypatch):
    monkeypatch.delattr(UNet, "_get_up_layer")
    with pytest.raises(MonaiInternalsChanged, match="_get_up_layer"):
        DecoderDropoutUNet(2, 1, 1, channels=(4, 8), strides=(2,))


@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_unstride_resnet_block_halves_the_output_stride(model_name):
    net = ResNetFeatures(model_name, pretrained=False, spatial_dims=2, in_channels=1).eval()
    x = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        before = net(x)[-1].shape[-1]
        unstride_resnet_block(net.layer4[0], spatial_dims=2)
        after = net(x)[-1].shape[-1]
    assert (before, after) == (2, 4)


def test_unstride_resnet_block_fails_loudly_on_an_unknown_block():
    with pytest.raises(MonaiInternalsChanged, match="conv1"):
        unstride_resnet_block(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2)), spatial_dims=2)
