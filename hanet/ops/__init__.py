"""The three HANet hot ops, fused, as autograd-aware PyTorch custom ops.

    width_pool(x, rows, mode="mean")   (B, C, H, W) -> (B, C, rows)
    height_interp(a, size)             (B, C, h)    -> (B, C, size)
    attention_rescale(feat, logits)    (B, C, H, W), (B, C, h) -> (B, C, H, W)
    relu_attention_rescale(feat, logits)   attention_rescale(relu(feat), logits), the ReLU
                                       fused into its autograd node (keeps less memory)

Each takes ``backend=None | "reference" | "cpu" | "cuda" | "triton"`` (see
:mod:`hanet.ops.dispatch`).  The C++/CUDA kernels are ``torch.ops.hanet.*`` and the
Triton kernels ``torch.ops.hanet_triton.*``; both have fake kernels and autograd,
so code calling them compiles under ``torch.compile(fullgraph=True)`` and exports
with ``torch.export``.  :mod:`hanet.ops.reference` is the pure-PyTorch truth.
"""
from __future__ import annotations

from . import reference
from .dispatch import BACKENDS, BackendUnavailableError, available_backends
from .functional import attention_rescale, height_interp, relu_attention_rescale, width_pool

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "attention_rescale",
    "available_backends",
    "height_interp",
    "reference",
    "relu_attention_rescale",
    "width_pool",
]
