"""Tests of ``EnsembleDisagreement`` / ``EnsembleDisagreementd``: the members' per-voxel JSD map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_wsss.transforms import EnsembleDisagreement, EnsembleDisagreementd

LOG2 = math.log(2)


def _one_hot_pair():
    """Two 2-class one-hot members (C=2, H=2, W=2) that agree on the first row and disagree on the second."""
    a = np.zeros((2, 2, 2), dtype=np.float32)
    b = np.zeros((2, 2, 2), dtype=np.float32)
    a[0] = 1.0  # member a: class 0 everywhere
    b[0, 0] = 1.0  # member b: class 0 on row 0 ...
    b[1, 1] = 1.0  # ... class 1 on row 1
    return a, b


EXPECTED = np.array([[[0.0, 0.0], [LOG2, LOG2]]], dtype=np.float32)


@pytest.mark.parametrize("as_type", ["tensor_list", "tensor_stacked", "numpy_list", "numpy_stacked"])
def test_agree_zero_disagree_log2(as_type):
    a, b = _one_hot_pair()
    if as_type == "tensor_list":
        img = [torch.from_numpy(a), torch.from_numpy(b)]
    elif as_type == "tensor_stacked":
        img = torch.from_numpy(np.stack([a, b]))
    elif as_type == "numpy_list":
        img = [a, b]
    else:
        img = np.stack([a, b])
    out = EnsembleDisagreement()(img)
    assert out.shape == (1, 2, 2)
    if as_type.startswith("numpy"):
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(out, EXPECTED, atol=1e-6)
    else:
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(torch.as_tensor(out).float(), torch.from_numpy(EXPECTED), atol=1e-6, rtol=0)


def test_single_channel_maps_read_as_two_classes():
    """p = 0.5 vs p = 0.9 (sigmoid maps): the 2-class JSD of [0.5, 0.5] and [0.1, 0.9]; equal maps give 0."""
    p = np.full((1, 1, 3), 0.5, dtype=np.float32)
    q = np.full((1, 1, 3), 0.9, dtype=np.float32)
    q[..., 2] = 0.5
    h = lambda *v: -sum(x * math.log(x) for x in v)  # noqa: E731
    expected = h(0.3, 0.7) - 0.5 * (h(0.5, 0.5) + h(0.1, 0.9))
    out = EnsembleDisagreement()([p, q])
    assert isinstance(out, np.ndarray) and out.shape == (1, 1, 3)
    np.testing.assert_allclose(out[0, 0], [expected, expected, 0.0], atol=1e-6)
    # one-hot binary maps that disagree: log 2
    disagree = EnsembleDisagreement()(torch.tensor([[[[0.0]]], [[[1.0]]]]))
    assert torch.as_tensor(disagree).item() == pytest.approx(LOG2, abs=1e-6)


def test_three_members_max_log3():
    eye = torch.eye(3).view(3, 3, 1, 1)  # member s is one-hot on class s
    out = EnsembleDisagreement()(eye)
    assert torch.as_tensor(out).item() == pytest.approx(math.log(3), abs=1e-6)


def test_dict_version_keys_and_stacked_key():
    a, b = _one_hot_pair()
    data = {"p0": torch.from_numpy(a), "p1": torch.from_numpy(b), "other": 1}
    out = EnsembleDisagreementd(keys=["p0", "p1"], output_key="uncertainty")(data)
    assert out["other"] == 1 and "p0" in out and "p1" in out
    torch.testing.assert_close(
        torch.as_tensor(out["uncertainty"]).float(), torch.from_numpy(EXPECTED), atol=1e-6, rtol=0
    )
    stacked = EnsembleDisagreementd(keys="pred", output_key="unc")({"pred": np.stack([a, b])})
    assert isinstance(stacked["unc"], np.ndarray)
    np.testing.assert_allclose(stacked["unc"], EXPECTED, atol=1e-6)
