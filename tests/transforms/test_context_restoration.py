"""RandContextShuffle(d): swapped patch pairs keep the voxel values; the dict twin keeps the clean target."""

from __future__ import annotations

import torch

from monai_wsss.transforms import RandContextShuffle, RandContextShuffled


def test_swaps_exchange_two_disjoint_patches():
    img = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 16, 16)
    t = RandContextShuffle(num_swaps=1, patch_size=4)
    t.set_random_state(0)
    out = t(img)
    (a, b) = t._pairs[0]
    sa = (slice(None), slice(a[0], a[0] + 4), slice(a[1], a[1] + 4))
    sb = (slice(None), slice(b[0], b[0] + 4), slice(b[1], b[1] + 4))
    assert torch.equal(out[sa], img[sb]) and torch.equal(out[sb], img[sa])
    assert int((out != img).sum()) == 32  # exactly the two 4x4 patches moved
    assert torch.equal(torch.sort(out.flatten()).values, img.flatten())  # same histogram


def test_dict_twin_3d_target_is_clean():
    img = torch.rand(1, 12, 12, 8)
    t = RandContextShuffled("image", num_swaps=3, patch_size=(4, 4, 2))
    t.set_random_state(1)
    d = t({"image": img})
    assert torch.equal(d["label"], img) and not torch.equal(d["image"], img)
