"""FeatureEmbedding and FeatureDistance: zero for identical images, larger for worse fakes."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.networks.nets import UNet

from monai_wsss.handlers import FeatureDistance
from monai_wsss.networks import FeatureEmbedding


def _embedding():
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    return FeatureEmbedding(net)


def test_embedding_picks_the_bottleneck_and_pools():
    emb = _embedding()
    z = emb(torch.rand(3, 1, 32, 32))
    assert z.shape[0] == 3 and z.ndim == 2
    modules = dict(emb.network.named_modules())
    assert emb.layer in modules
    with pytest.raises(ValueError, match="no module named"):
        FeatureEmbedding(emb.network, layer="nope")(torch.rand(1, 1, 32, 32))


def _run(metric: FeatureDistance, batches) -> float:
    engine = Engine(lambda e, b: b)
    metric.attach(engine, "fd")
    engine.run(batches, max_epochs=1)
    return engine.state.metrics["fd"]


def test_paired_distance_by_hand_and_ordering():
    emb = _embedding()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(6, 1, 32, 32, generator=g)
    batches = [{"label": real[:3], "pred": real[:3]}, {"label": real[3:], "pred": real[3:]}]
    assert _run(FeatureDistance(emb, "paired"), batches) == pytest.approx(0.0, abs=1e-6)
    slightly = [{"label": b["label"], "pred": b["label"] + 0.05} for b in batches]
    noise = [{"label": b["label"], "pred": torch.rand(3, 1, 32, 32, generator=g) * 4} for b in batches]
    d_small = _run(FeatureDistance(emb, "paired"), slightly)
    d_large = _run(FeatureDistance(emb, "paired"), noise)
    assert 0 < d_small < d_large
    # by hand: mean paired distance over mean distance between different real images
    zr, zf = emb(real), emb(torch.cat([b["pred"] for b in slightly]))
    between = torch.cdist(zr, zr).sum() / (6 * 5)
    assert d_small == pytest.approx(float((zr - zf).norm(dim=1).mean() / between), rel=1e-4)


def test_fid_mode_and_shape_check():
    emb = _embedding()
    real = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert _run(FeatureDistance(emb, "fid"), [{"label": real, "pred": real}]) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="differ"):
        _run(FeatureDistance(emb), [{"label": real, "pred": real[:, :, :16]}])
    with pytest.raises(ValueError, match="mode"):
        FeatureDistance(emb, "cosine")
