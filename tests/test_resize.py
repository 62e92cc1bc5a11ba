"""Bilinear resizing by interpolation matrices (hanet.models.resize) against
F.interpolate(mode="bilinear", align_corners=True): values and gradients, per dtype."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hanet.models import resize
from hanet.models.resize import interpolation_matrix, resize_bilinear

# (max abs error allowed relative to the values' scale): float64 and float32 to rounding; bfloat16 to one
# rounding of the result (both compute in float32 and round once)
TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1.6e-2}
CASES = [((2, 3, 32, 32), (128, 128)), ((2, 3, 7, 5), (13, 1)), ((1, 2, 1, 1), (8, 8)), ((2, 3, 9, 9), (9, 9)),
         ((1, 2, 40, 33), (11, 7)), ((1, 1, 2, 3), (5, 200)), ((3, 4, 8, 8), (32, 32))]


def test_matrix_weights_are_the_two_nearest_samples_with_align_corners():
    # 2 -> 3 samples: the ends coincide, the middle output is the mean of both
    assert torch.equal(interpolation_matrix(2, 3), torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    # 3 -> 5: outputs at 0, 0.5, 1, 1.5, 2
    assert torch.equal(interpolation_matrix(3, 5), torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]))
    # one output: the first sample; one input: copied everywhere
    assert torch.equal(interpolation_matrix(4, 1), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(interpolation_matrix(1, 3), torch.ones(3, 1))
    # every row sums to 1 (a constant map stays constant)
    assert torch.allclose(interpolation_matrix(31, 128, torch.float64).sum(1), torch.ones(128, dtype=torch.float64))


@pytest.fixture
def matmul_always(monkeypatch):
    """Every case through the matrix products, whatever its size (large maps otherwise
    take F.interpolate, which these tests compare against)."""
    monkeypatch.setattr(resize, "MATMUL_MAX_TAPS", float("inf"))


@pytest.mark.usefixtures("matmul_always")
@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("shape,size", CASES, ids=[f"{'x'.join(map(str, s))}-{o[0]}x{o[1]}" for s, o in CASES])
def test_resize_equals_interpolate(shape, size, dtype):
    torch.manual_seed(0)
    x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype).requires_grad_()
    truth = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    got = resize_bilinear(x, size)
    assert got.dtype == dtype and got.shape == truth.shape
    g = torch.randn(truth.shape, dtype=torch.float64).to(dtype)
    gt, = torch.autograd.grad(truth, x, g)
    gg, = torch.autograd.grad(got, x, g)
    scale = 3 * max(1.0, truth.abs().max().item() / 3)
    assert (got.double() - truth.double()).abs().max().item() <= TOL[dtype] * scale
    assert (gg.double() - gt.double()).abs().max().item() <= TOL[dtype] * max(1.0, gt.abs().max().item())


def test_autocast_does_not_round_a_float32_map():
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = resize_bilinear(x, (64, 64))
    assert got.dtype == torch.float32
    assert torch.allclose(got, F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=True), atol=2e-6)


def test_channels_last_and_traced_graphs():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    truth = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=True)
    assert torch.allclose(resize_bilinear(x, (20, 20)), truth, atol=2e-6)
    # a traced graph holds the Resize op (F.interpolate), not two matrix products of fixed sizes
    traced = torch.jit.trace(lambda t: resize_bilinear(t, (20, 20)), x)
    assert "upsample_bilinear2d" in str(traced.graph) and "matmul" not in str(traced.graph)


def test_a_size_first_seen_in_inference_mode_still_trains():
    x = torch.randn(1, 2, 5, 7)
    with torch.inference_mode():
        resize_bilinear(x, (17, 29))  # caches the matrices of these sizes
    y = resize_bilinear(x.clone().requires_grad_(), (17, 29))
    y.sum().backward()  # an inference tensor saved for backward would raise here


def test_float32_out_keeps_the_unrounded_result_on_the_cpu():
    """float32_out=True: a bfloat16 map's resize comes back in float32, equal to
    F.interpolate of the float32 map (what the loss would have cast the rounded
    result to); the default still rounds to bfloat16."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8).bfloat16()
    truth = F.interpolate(x.float(), size=(32, 32), mode="bilinear", align_corners=True)
    got = resize_bilinear(x, (32, 32), float32_out=True)
    assert got.dtype == torch.float32
    assert (got - truth).abs().max().item() <= 2e-6
    rounded = resize_bilinear(x, (32, 32))
    assert rounded.dtype == torch.bfloat16 and (rounded.float() - truth).abs().max().item() > 1e-4


def _aten_ops(fn) -> set:
    from hanet.bench.launches import OpCounter

    with OpCounter() as counter:
        fn()
    return set(counter.ops)


def test_large_maps_take_the_cpu_kernel_small_ones_the_matrix_products():
    """The matrix products only where they win (resize.MATMUL_MAX_TAPS): the demo's
    logits 16x16 -> 128x128 (16 + 2 multiply-adds per output) by matmul, R101-OS8's
    192x192 -> 768x768 (192 + 48) by PyTorch's bilinear kernel."""
    small, large = torch.randn(2, 3, 16, 16), torch.randn(1, 2, 192, 192)
    assert "aten.upsample_bilinear2d" not in _aten_ops(lambda: resize_bilinear(small, (128, 128)))
    assert "aten.upsample_bilinear2d" in _aten_ops(lambda: resize_bilinear(large, (768, 768)))
    assert "aten.upsample_bilinear2d" in _aten_ops(lambda: resize_bilinear(small, (20, 3)))  # 16 + 85.3
