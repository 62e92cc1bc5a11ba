"""The reference ops (the truth every kernel is compared with) on literal values worked
out by hand, so that the reference itself is checked against something independent."""
from __future__ import annotations

import math

import torch

from hanet.ops import reference


def test_width_pool_mean_and_max_literals():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 9.0]]]])  # (1, 1, 4, 2)
    torch.testing.assert_close(reference.width_pool(x, 2, "mean"), torch.tensor([[[2.5, 6.75]]]))
    # 3 bins over 4 rows: [0, 2), [1, 3), [2, 4)
    torch.testing.assert_close(reference.width_pool(x, 3, "mean"), torch.tensor([[[2.5, 4.5, 6.75]]]))
    torch.testing.assert_close(reference.width_pool(x, 2, "max"), torch.tensor([[[4.0, 9.0]]]))
    # ties: the first maximum in scan order; NaN: the last NaN
    t = torch.tensor([[[[1.0, 3.0], [3.0, 0.0]]]])
    out, idx = reference.width_pool_with_indices(t, 1)
    assert out.item() == 3.0 and idx.item() == 1
    t = torch.tensor([[[[math.nan, 1.0], [math.nan, 0.0]]]])
    out, idx = reference.width_pool_with_indices(t, 1)
    assert math.isnan(out.item()) and idx.item() == 2


def test_width_pool_gradient_literals():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]], requires_grad=True)  # H=3, W=2
    # 2 bins over 3 rows: [0, 2) and [1, 3); row 1 belongs to both
    (g,) = torch.autograd.grad(reference.width_pool(x, 2, "mean"), x, torch.tensor([[[4.0, 8.0]]]))
    torch.testing.assert_close(g, torch.tensor([[[[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]]]]))
    (g,) = torch.autograd.grad(reference.width_pool(x, 2, "max"), x, torch.tensor([[[4.0, 8.0]]]))
    torch.testing.assert_close(g, torch.tensor([[[[0.0, 0.0], [0.0, 4.0], [0.0, 8.0]]]]))


def test_height_interp_literals():
    a = torch.tensor([[[0.0, 1.0]]])
    # align_corners=False: src = (dst + 0.5) * 2/4 - 0.5, clamped at 0 and at the last row
    torch.testing.assert_close(reference.height_interp(a, 4), torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))
    torch.testing.assert_close(reference.height_interp(a, 2), a)  # same size: a copy
    torch.testing.assert_close(reference.height_interp(torch.tensor([[[0.0, 4.0, 8.0, 12.0]]]), 2),
                               torch.tensor([[[2.0, 10.0]]]))
    a = torch.tensor([[[0.0, 1.0]]], requires_grad=True)
    (g,) = torch.autograd.grad(reference.height_interp(a, 4), a, torch.ones(1, 1, 4))
    torch.testing.assert_close(g, torch.tensor([[[2.0, 2.0]]]))  # weights (1, .75, .25, 0) and back


def test_attention_rescale_literals():
    feat = torch.full((1, 1, 4, 3), 2.0, requires_grad=True)
    logits = torch.tensor([[[0.0, math.log(3.0)]]], requires_grad=True)  # sigmoid: 0.5, 0.75
    out = reference.attention_rescale(feat, logits)
    expected_rows = torch.tensor([0.5, 0.5625, 0.6875, 0.75]) * 2.0
    torch.testing.assert_close(out, expected_rows.view(1, 1, 4, 1).expand(1, 1, 4, 3))
    gf, gl = torch.autograd.grad(out.sum(), (feat, logits))
    torch.testing.assert_close(gf, (expected_rows / 2).view(1, 1, 4, 1).expand(1, 1, 4, 3))
    # d/dlogit_j = s_j (1 - s_j) * sum over rows of w(row, j) * (feat summed over the width = 6)
    w0 = torch.tensor([1.0, 0.75, 0.25, 0.0])
    expected = torch.tensor([0.25 * 6 * w0.sum(), 0.1875 * 6 * (1 - w0).sum()])
    torch.testing.assert_close(gl, expected.view(1, 1, 2))
