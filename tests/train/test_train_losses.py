"""Training losses and mask bookkeeping against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samadapter.modeling.classifier import classification_logits
from samadapter.train.losses import (
    compose_mixed,
    consistency_loss,
    mask_ce_loss,
    mask_iou,
    match_by_iou,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mask_iou_by_hand() -> None:
    a = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2, :2] = True  # 4 px
    a[1, :, :] = True  # 16 px
    b = np.zeros((3, 4, 4), dtype=bool)
    b[0, :2, :] = True  # 8 px, overlaps a0 in 4
    b[1, 2:, 2:] = True  # 4 px, disjoint from a0
    # b[2] empty
    iou = mask_iou(a, b)
    expected = [[4 / 8, 0.0, 0.0], [8 / 16, 4 / 16, 0.0]]
    np.testing.assert_allclose(iou.numpy(), expected)
    assert mask_iou(np.zeros((1, 3, 3), bool), np.zeros((1, 3, 3), bool)).item() == 0.0


def test_match_keeps_only_pairs_above_threshold() -> None:
    iou = torch.tensor(
        [
            [0.90, 0.10],
            [0.71, 0.20],
            [0.70, 0.00],  # exactly 0.7: not above the threshold
            [0.20, 0.95],
            [0.50, 0.69],
        ]
    )
    pairs = match_by_iou(iou, gen(), thresh=0.7, max_pairs=8)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0), (1, 0), (3, 1)]
    assert all(iou[p, g] > 0.7 for p, g in pairs.tolist())


def test_match_picks_at_most_max_pairs_at_random() -> None:
    iou = torch.full((20, 3), 0.1)
    iou[:, 1] = torch.linspace(0.72, 0.99, 20)  # all 20 are candidates for GT 1
    iou[5, 1] = 0.3  # ... except prediction 5
    picks = set()
    for seed in range(5):
        pairs = match_by_iou(iou, gen(seed))
        assert pairs.shape == (8, 2)
        assert len(set(pairs[:, 0].tolist())) == 8
        assert (pairs[:, 1] == 1).all() and 5 not in pairs[:, 0].tolist()
        assert (iou[pairs[:, 0], pairs[:, 1]] > 0.7).all()
        picks.add(tuple(sorted(pairs[:, 0].tolist())))
    assert len(picks) > 1  # a random pick, not the first 8
    assert match_by_iou(iou, gen(0), max_pairs=3).shape == (3, 2)
    assert match_by_iou(torch.zeros((0, 4)), gen()).shape == (0, 2)
    assert match_by_iou(torch.full((4, 2), 0.5), gen()).shape == (0, 2)


@pytest.mark.parametrize(
    ("num_gt", "num_pairs", "gt_only", "pairs"),
    [
        (20, 8, 16, 8),  # the paper's 16 GT + 8 predicted + 8 matched GT = 32
        (20, 12, 16, 8),  # more candidates than 8: 8 pairs
        (30, 3, 26, 3),  # fewer matches: free pair slots go to GT masks, still 32
        (20, 3, 20, 3),  # ... as many as there are: 20 + 3 + 3 = 26
        (40, 0, 32, 0),  # no match: 32 GT masks
        (5, 2, 5, 2),  # fewer GT masks than slots: each once, 5 + 2 + 2 = 9
        (0, 0, 0, 0),
    ],
)
def test_mixed_composition(num_gt: int, num_pairs: int, gt_only: int, pairs: int) -> None:
    cand = torch.stack([torch.arange(num_pairs), torch.arange(num_pairs) % max(num_gt, 1)], 1)
    comp = compose_mixed(num_gt, cand, gen())
    assert len(comp.gt_only) == gt_only and len(comp.pairs) == pairs
    assert comp.size == gt_only + 2 * pairs <= 32
    assert len(set(comp.gt_only.tolist())) == gt_only  # drawn without replacement
    assert all(0 <= g < num_gt for g in comp.gt_only)
    rows = comp.gt_indices()
    assert len(rows) == comp.size
    np.testing.assert_array_equal(comp.pred_rows(), gt_only + np.arange(pairs))
    np.testing.assert_array_equal(comp.matched_rows(), gt_only + pairs + np.arange(pairs))
    # a predicted mask's target is its matched GT's
    np.testing.assert_array_equal(rows[comp.pred_rows()], rows[comp.matched_rows()])
    np.testing.assert_array_equal(rows[comp.pred_rows()], comp.pairs[:, 1])


def test_mixed_composition_is_random_but_seeded() -> None:
    a = compose_mixed(30, torch.zeros((0, 2), dtype=torch.long), gen(1)).gt_only
    b = compose_mixed(30, torch.zeros((0, 2), dtype=torch.long), gen(1)).gt_only
    c = compose_mixed(30, torch.zeros((0, 2), dtype=torch.long), gen(2)).gt_only
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_classification_logits_by_hand() -> None:
    emb = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # class 0; class 1 = names 1, 2
    void = torch.tensor([[-1.0, 0.0]])
    logits = classification_logits(emb, text, [0, 1, 1], 2, void, math.log(10.0))
    np.testing.assert_allclose(logits.numpy(), [[10.0, 6.0, -10.0], [0.0, 10.0, 0.0]], atol=1e-5)
    # exp(logit_scale) is capped at 100, as CLIP does
    capped = classification_logits(emb, text, [0, 1, 1], 2, None, math.log(1000.0))
    np.testing.assert_allclose(capped.numpy(), [[100.0, 60.0], [0.0, 100.0]], atol=1e-4)


def test_ce_weighting_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # K = 2 classes + void
    targets = torch.tensor([0, 1])
    one = -math.log(math.exp(2) / (math.exp(2) + 2))
    two = math.log(3)
    assert mask_ce_loss(logits, targets).item() == pytest.approx((one + two) / 2, rel=1e-6)
    assert mask_ce_loss(logits, targets, weight=2.0).item() == pytest.approx(one + two, rel=1e-6)
    empty = torch.zeros((0, 3), requires_grad=True)
    loss = mask_ce_loss(empty, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()


def test_consistency_loss_values() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    assert consistency_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert consistency_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    ortho = torch.tensor([[3.0, -1.5, 0.0], [5.0, 0.0, 2.0]])  # each row orthogonal to a's
    assert consistency_loss(a, ortho).item() == pytest.approx(1.0, abs=1e-6)
    assert consistency_loss(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    assert consistency_loss(a, ortho, weight=5.0).item() == pytest.approx(5.0, abs=1e-5)
    assert consistency_loss(torch.zeros((0, 3)), torch.zeros((0, 3))).item() == 0.0


def test_consistency_loss_detaches_the_ground_truth_side() -> None:
    pred = torch.tensor([[1.0, 0.5]], requires_grad=True)
    gt = torch.tensor([[0.2, 1.0]], requires_grad=True)
    consistency_loss(pred, gt).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert gt.grad is None
