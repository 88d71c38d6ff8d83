"""PRM instance retrieval: superpixel proposals, contour, proposal score by hand, mask NMS, planted blobs."""

from __future__ import annotations

import pytest
import torch

from monai_wsss.attribution import (
    PeakInstanceRetrieval,
    instances_to_maps,
    mask_contour,
    mask_nms,
    proposal_scores,
    superpixel_proposals,
)


def _two_blobs(spatial: tuple[int, ...] = (32, 32)) -> torch.Tensor:
    img = torch.zeros(1, *spatial)
    if len(spatial) == 2:
        img[0, 4:12, 4:12] = 1.0
        img[0, 18:28, 16:28] = 0.6
    else:
        img[0, 3:11, 3:11, 3:11] = 1.0
        img[0, 13:21, 12:20, 13:21] = 0.6
    return img


@pytest.mark.parametrize("spatial", [(32, 32), (24, 24, 24)])
def test_proposals_contain_each_object(spatial):
    img = _two_blobs(spatial)
    props = superpixel_proposals(img, n_segments=(16, 64), min_size=4)
    assert props.dtype == torch.bool and props.shape[1:] == spatial and len(props) > 3
    assert len({p.numpy().tobytes() for p in props}) == len(props)  # no duplicates
    assert int(props.flatten(1).sum(1).min()) >= 4
    for obj in (img[0] == 1.0, img[0] == 0.6):  # some proposal matches each planted object closely
        inter = (props & obj).flatten(1).sum(1).float()
        union = (props | obj).flatten(1).sum(1).float()
        assert float((inter / union).max()) > 0.8


def test_contour_is_the_inner_boundary():
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 1:6, 1:6] = True
    c = mask_contour(m)[0]
    expected = m[0].clone()
    expected[2:5, 2:5] = False
    assert torch.equal(c, expected)
    full = torch.ones(1, 4, 4, dtype=torch.bool)  # the image border counts as outside
    border = torch.ones(4, 4, dtype=torch.bool)
    border[1:3, 1:3] = False
    assert torch.equal(mask_contour(full)[0], border)


def test_score_matches_hand_computation():
    r = torch.zeros(1, 5, 5)
    r[0, 1:4, 1:4] = 2.0
    r[0, 2, 2] = 4.0  # max 4 -> normalised: 0.5 on the ring, 1 at the centre
    s = torch.zeros(2, 5, 5, dtype=torch.bool)
    s[0, 1:4, 1:4] = True  # 3x3: contour = 8 ring pixels, centre inside
    s[1] = True  # whole image: contour = the 16 border pixels (response 0 there)
    q = torch.zeros(5, 5)
    q[0, :] = 1.0  # 5 background pixels, all in proposal 1 only
    alpha, beta = 2.0, 0.5
    got = proposal_scores(r, s, q, alpha, beta)[0]
    inside = 8 * 0.5 + 1.0
    assert got[0].item() == pytest.approx(alpha * inside + 8 * 0.5)
    assert got[1].item() == pytest.approx(alpha * inside + 0.0 - beta * 5)
    assert proposal_scores(r, s)[0, 1].item() == pytest.approx(1.0 * inside)
    with pytest.raises(ValueError, match="spatial size"):
        proposal_scores(r, s[:, :4])


def test_nms_drops_overlaps_above_threshold():
    m = torch.zeros(3, 10, 10, dtype=torch.bool)
    m[0, 0:5, 0:5] = True  # 25 px
    m[1, 0:5, 1:5] = True  # 20 px inside m0: IoU 0.8
    m[2, 6:9, 6:9] = True
    keep = mask_nms(m, torch.tensor([0.5, 0.9, 0.1]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]
    assert mask_nms(m, torch.tensor([0.5, 0.9, 0.1]), iou_threshold=0.9).tolist() == [1, 0, 2]
    assert mask_nms(m[:0], torch.zeros(0)).numel() == 0


def test_retrieval_picks_the_object_under_each_peak():
    img = _two_blobs()
    obj_a, obj_b = img[0] == 1.0, img[0] == 0.6
    # one response map per peak, concentrated on its object (class 0 for a, class 1 for b), plus a duplicate peak on a
    maps = torch.stack([obj_a.float(), obj_b.float() * 3, obj_a.float() * 0.5])
    peaks = torch.tensor([[0, 8, 8], [1, 22, 22], [0, 6, 6]])
    crm = torch.stack([obj_a.float(), obj_b.float()])
    retrieval = PeakInstanceRetrieval(proposals=lambda x: superpixel_proposals(x, n_segments=(16,)))
    out = retrieval(img, {"peaks": peaks, "values": torch.ones(3), "maps": maps}, crm)
    assert sorted(out["classes"].tolist()) == [0, 1]  # the duplicate peak of class 0 is suppressed by NMS
    for k, obj in ((0, obj_a), (1, obj_b)):
        m = out["masks"][out["classes"] == k][0]
        assert float((m & obj).sum()) / float((m | obj).sum()) > 0.8
    sem = instances_to_maps(out, 2, (32, 32))
    assert sem.shape == (2, 32, 32) and set(sem.unique().tolist()) <= {0.0, 1.0}
    none = retrieval(img, {"peaks": peaks[:0], "values": torch.zeros(0), "maps": maps[:0]}, crm)
    assert none["masks"].shape == (0, 32, 32)
    with pytest.raises(ValueError, match="nms_iou"):
        PeakInstanceRetrieval(nms_iou=1.5)
