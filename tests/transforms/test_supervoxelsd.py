from __future__ import annotations

import numpy as np

from monai_wsss.transforms import Supervoxels, SupervoxelsD, Supervoxelsd, SupervoxelsDict


def test_dict_matches_array():
    rng = np.random.default_rng(1)
    img = rng.random((1, 16, 16)).astype(np.float32)
    out = Supervoxelsd(keys="image", n_segments=6, compactness=0.1)({"image": img, "label": 1})
    assert set(out) == {"image", "label", "image_supervoxels"}
    np.testing.assert_array_equal(out["image_supervoxels"], Supervoxels(n_segments=6, compactness=0.1)(img))
    assert SupervoxelsD is SupervoxelsDict is Supervoxelsd
