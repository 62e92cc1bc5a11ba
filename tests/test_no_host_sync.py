"""No device-to-host sync in a HANet forward + backward (issue 13): on meta tensors
(no data, so any `.item()`, `bool(tensor)` or `.any()` in Python raises) the site and
the whole model run; on a GPU, CUDA's sync debug mode turns any sync into an error."""
from __future__ import annotations

import pytest
import torch

from hanet.models import HANet, build_model


def _site(device):
    return HANet(in_channels=64, out_channels=32, kernel_size=3, r_factor=16, layers=3, pos_injection=2,
                 pos_encoding="sinusoid", pos_rfactor=8, pooling="mean", dropout=0.1, pos_noise=0.5).to(device)


def _model(device):
    return build_model("deeplabv3plus_shufflenetv2_os16", hanet=[1, 1, 1, 1, 1], hanet_set=[3, 16, 3],
                       dropout=0.1, pos_noise=0.5, aux_loss=True).to(device)


def test_hanet_site_needs_no_tensor_values_on_the_host():
    site = _site("meta").train()
    x_low = torch.randn(2, 64, 24, 24, device="meta", requires_grad=True)
    x_high = torch.randn(2, 32, 24, 24, device="meta", requires_grad=True)
    out = site(x_low, x_high, torch.zeros(2, 24, dtype=torch.long, device="meta"))
    out.sum().backward()
    assert x_low.grad.shape == x_low.shape and x_high.grad.shape == x_high.shape


def test_model_step_needs_no_tensor_values_on_the_host():
    model = _model("meta").train()
    logits, aux, _ = model(torch.randn(2, 3, 64, 128, device="meta"), pos_h=torch.zeros(2, 64, dtype=torch.long,
                                                                                          device="meta"))
    (logits.sum() + aux.sum()).backward()
    assert logits.shape == (2, 19, 64, 128)


def test_cpu_positions_out_of_range_are_still_a_clear_error():
    site = _site("cpu").eval()
    x = torch.randn(1, 64, 8, 8)
    with pytest.raises(ValueError, match=r"pos_h // 8 must lie in \[0, 16\].*\[0, 200\]"):
        site(x, torch.randn(1, 32, 8, 8), torch.tensor([[0] * 7 + [200]]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_makes_no_sync():
    model = _model("cuda").train()
    x = torch.randn(2, 3, 128, 256, device="cuda")
    pos = torch.arange(128, device="cuda").repeat(2, 1) // 1
    model(x, pos_h=pos)  # warm-up: lazy initialisation may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        logits, aux, _ = model(x, pos_h=pos)
        (logits.sum() + aux.sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
