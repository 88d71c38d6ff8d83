"""MaskToImageGenerator and the MONAI patch discriminators it trains against (2D and 3D)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import MultiScalePatchDiscriminator, PatchDiscriminator

from monai_wsss.networks import MaskToImageGenerator, discriminator_logits


@pytest.mark.parametrize("spatial_dims,size", [(2, (32, 32)), (3, (16, 16, 16))])
def test_generator_shapes_and_range(spatial_dims, size):
    g = MaskToImageGenerator(spatial_dims, num_classes=3, out_channels=2, channels=(4, 8, 8), strides=(2, 2))
    mask = torch.randint(0, 3, (2, 1, *size)).float()
    out = g(mask)
    assert out.shape == (2, 2, *size)
    assert out.min() >= -1 and out.max() <= 1  # tanh
    g_sig = MaskToImageGenerator(spatial_dims, 3, 1, channels=(4, 8), strides=(2,), output_act="sigmoid")
    out = g_sig(mask)
    assert out.shape == (2, 1, *size) and out.min() >= 0 and out.max() <= 1


def test_label_map_and_one_hot_give_the_same_image():
    torch.manual_seed(0)
    g = MaskToImageGenerator(2, num_classes=3, out_channels=1, channels=(4, 8), strides=(2,), dropout=0.0).eval()
    label = torch.randint(0, 3, (1, 1, 16, 16)).float()
    one_hot = torch.cat([(label == c).float() for c in range(3)], dim=1)
    assert torch.equal(g.encode_mask(label), one_hot)
    assert torch.allclose(g(label), g(one_hot))


def test_bad_masks_are_rejected():
    g = MaskToImageGenerator(2, num_classes=2, channels=(4, 8), strides=(2,))
    with pytest.raises(ValueError, match="not integers in"):
        g(torch.full((1, 1, 16, 16), 3.0))
    with pytest.raises(ValueError, match="1 channel"):
        g(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="num_classes"):
        MaskToImageGenerator(2, num_classes=1)


def test_dropout_sits_in_the_inner_decoder_layers_only():
    g = MaskToImageGenerator(2, num_classes=2, channels=(4, 8, 16, 16), strides=(2, 2, 2), dropout=0.5)
    dropped = [n for n, m in g.named_modules() if isinstance(m, torch.nn.Dropout) and m.p == 0.5]
    # three levels below the top: the up-sampling layers of the two inner ones, not the output layer, no encoder
    assert len(dropped) == 2 and all(".adn." in n for n in dropped)
    assert not [n for n, m in g.named_modules() if isinstance(m, torch.nn.Dropout) and 0 < m.p != 0.5]


def test_dropout_is_the_noise_source():
    g = MaskToImageGenerator(2, num_classes=2, channels=(4, 8, 8), strides=(2, 2), dropout=0.5)
    mask = torch.randint(0, 2, (1, 1, 16, 16)).float()
    g.train()
    assert not torch.allclose(g(mask), g(mask))
    g.eval()
    assert torch.allclose(g(mask), g(mask))


@pytest.mark.parametrize("spatial_dims,size", [(2, (64, 64)), (3, (32, 32, 32))])
def test_discriminator_sees_mask_and_image_channels(spatial_dims, size):
    num_classes, image_channels = 3, 1
    d = PatchDiscriminator(spatial_dims, num_layers_d=3, channels=4, in_channels=num_classes + image_channels)
    x = torch.rand(2, num_classes + image_channels, *size)
    logits = discriminator_logits(d(x))
    assert logits.shape[:2] == (2, 1) and logits.ndim == spatial_dims + 2
    with pytest.raises(RuntimeError):  # the image alone is not enough: the mask channels are part of the input
        d(torch.rand(2, image_channels, *size))
    # changing only the mask channels changes the verdict
    x2 = x.clone()
    x2[:, :num_classes] = torch.flip(x2[:, :num_classes], dims=[1])
    assert not torch.allclose(discriminator_logits(d(x2)), logits)


def test_discriminator_logits_unwraps_each_output_form():
    t = torch.rand(1, 1, 4, 4)
    assert discriminator_logits(t) is t
    assert discriminator_logits([torch.rand(1), t]) is t
    md = MultiScalePatchDiscriminator(
        num_d=2, num_layers_d=2, spatial_dims=2, channels=4, in_channels=2, out_channels=1, minimum_size_im=64
    )
    out = discriminator_logits(md(torch.rand(1, 2, 64, 64)))
    assert isinstance(out, list) and len(out) == 2 and all(o.shape[1] == 1 for o in out)
