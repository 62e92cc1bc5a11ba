"""Fake (meta) kernels and autograd of the custom ops, both read from the op contract
(:mod:`hanet.ops.contract`).

The C++ ops (``torch.ops.hanet.*``) and the Triton ops (``torch.ops.hanet_triton.*``)
share schemas, so one set of autograd formulas serves both namespaces: each forward
op's backward calls the ``*_backward`` op of its own namespace.
"""
from __future__ import annotations

import torch

from . import contract


def is_channels_last(t: torch.Tensor) -> bool:
    return contract.kept_format(t) == torch.channels_last


def register_fakes(ns: str) -> None:
    """Fake kernels for ops defined in C++ (triton_op ops get theirs from tracing): the
    contract's checks (so that a call the real kernels reject fails on meta/fake
    tensors too, and tensors on different devices raise instead of returning an
    uninitialised tensor) and its outputs."""
    for spec in contract.OPS.values():

        def fake(*args, _spec=spec, **kwargs):
            v = _spec.bind(args, kwargs)
            _spec.check(v, contract.SymbolicChecker(f"{ns}.{_spec.name}"))
            return _spec.outputs(**v)

        torch.library.register_fake(f"{ns}::{spec.name}", fake)


def register_autograd(ns: str) -> None:
    ops = getattr(torch.ops, ns)
    for spec in contract.OPS.values():
        if spec.grad is None:
            continue

        def backward(ctx, *grads, _spec=spec):
            return _spec.grad(ops, ctx, *grads)

        torch.library.register_autograd(f"{ns}::{spec.name}", backward, setup_context=spec.setup)
