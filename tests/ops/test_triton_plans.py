"""Launch plans of the Triton backend: built once per call signature (shape, strides /
layout, dtype, device and the op's other arguments), kernels launched with positional
arguments, no re-specialisation when only the batch changes."""
from __future__ import annotations

import pytest
import torch

from hanet.ops import reference as ref
from op_cases import KERNELS, close, namespace, needs_triton, x_

pytestmark = needs_triton
T = namespace("triton") if "triton" in KERNELS else None


def _mods():
    from hanet.ops.triton import attention_rescale as ar, common, height_interp as hi, width_pool as wp

    return common, ar, hi, wp


@pytest.fixture(autouse=True)
def fresh_caches():
    # earlier tests may have planned the same signatures
    from hanet.ops.triton import clear_plan_caches

    clear_plan_caches()
    yield


def _misses(fn) -> int:
    return fn.cache_info().misses


def test_second_call_reuses_the_plan():
    common, ar, _, _ = _mods()
    feat = x_((2, 3, 7, 5), seed=11)
    logits = x_((2, 3, 4), seed=12)
    m0 = _misses(ar.plan_attention_rescale)
    b0 = ar._FWD_CALLS.builds
    out1 = T.attention_rescale(feat, logits)
    assert _misses(ar.plan_attention_rescale) == m0 + 1
    assert ar._FWD_CALLS.builds == b0 + 1
    out2 = T.attention_rescale(feat, logits)
    out3 = T.attention_rescale(x_((2, 3, 7, 5), seed=13), logits)  # same signature, new data
    assert _misses(ar.plan_attention_rescale) == m0 + 1, "the plan was built again"
    assert ar._FWD_CALLS.builds == b0 + 1, "the call was checked and planned again"
    assert out2 is not out1 and out2.data_ptr() != out1.data_ptr(), "outputs are fresh tensors"
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)
    close(out3, ref.attention_rescale(x_((2, 3, 7, 5), seed=13), logits), torch.float32)
    info = common.plan_cache_info()
    assert info["plan_attention_rescale"]["misses"] == m0 + 1
    assert info["call:attention_rescale"]["builds"] == b0 + 1


def test_other_shape_dtype_or_layout_gets_its_own_plan():
    _, ar, _, _ = _mods()
    logits = x_((2, 3, 4), seed=2)
    base = x_((2, 3, 9, 5), seed=1)
    T.attention_rescale(base, logits)
    m = _misses(ar.plan_attention_rescale)
    variants = [
        (x_((2, 3, 10, 5), seed=1), logits),                               # shape
        (base.double(), logits.double()),                                  # dtype
        (x_((2, 3, 9, 5), channels_last=True, seed=1), logits),            # layout
    ]
    plans = set()
    for feat, lg in variants:
        out = T.attention_rescale(feat, lg)
        m += 1
        assert _misses(ar.plan_attention_rescale) == m, "a new signature must get a new plan"
        close(out, ref.attention_rescale(feat, lg), feat.dtype)
        T.attention_rescale(feat, lg)
        assert _misses(ar.plan_attention_rescale) == m
    # the plans themselves differ, and the plan functions return the cached object
    p1 = ar.plan_attention_rescale(2, 3, 9, 5, 4, torch.float32, "nchw")
    assert ar.plan_attention_rescale(2, 3, 9, 5, 4, torch.float32, "nchw") is p1
    for args in ((2, 3, 10, 5, 4, torch.float32, "nchw"), (2, 3, 9, 5, 4, torch.float64, "nchw"),
                 (2, 3, 9, 5, 4, torch.float32, "nhwc")):
        plans.add(id(ar.plan_attention_rescale(*args)))
    assert len(plans) == 3 and id(p1) not in plans


def test_strided_input_is_its_own_signature():
    # Same shape, strides of a non-dense view: a different call entry, which copies the
    # input on every call (also on the cached path) and gives the right result.
    _, _, _, wp = _mods()
    big = x_((2, 3, 8, 12), seed=3)
    view = big[..., ::2]  # (2, 3, 8, 6), not dense
    dense = view.contiguous()
    for mode in ("mean", "max"):
        b0 = wp._FWD_CALLS.builds
        want = T.width_pool(dense, 4, mode)
        got1 = T.width_pool(view, 4, mode)
        got2 = T.width_pool(view, 4, mode)
        assert wp._FWD_CALLS.builds == b0 + 2
        for got in (got1, got2):
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
            torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    # transposed logits, (B, C, h) with h first in memory
    _, ar, _, _ = _mods()
    feat = x_((2, 3, 6, 5), seed=4)
    lg = x_((2, 4, 3), seed=5).transpose(1, 2)
    for _ in range(2):
        close(T.attention_rescale(feat, lg), ref.attention_rescale(feat, lg), torch.float32)


def test_every_op_reuses_its_plan():
    common, ar, hi, wp = _mods()
    x = x_((1, 2, 6, 4), seed=6)
    xc = x_((1, 2, 6, 4), channels_last=True, seed=6)
    g = x_((1, 2, 3), seed=7)
    a = x_((1, 2, 3), seed=8)
    ga = x_((1, 2, 6), seed=9)
    calls = [
        (wp.plan_width_pool, lambda: T.width_pool(x, 3, "max")),
        (wp.plan_width_pool, lambda: T.width_pool(xc, 3, "mean")),
        (wp.plan_width_pool_backward, lambda: T.width_pool_backward(
            g, torch.zeros((1, 2, 3), dtype=torch.int64), 6, 4, "max", True)),
        (hi.plan_height_interp, lambda: T.height_interp(a, 6)),
        (hi.plan_height_interp_backward, lambda: T.height_interp_backward(ga, 3)),
        (ar.plan_attention_rescale_backward, lambda: T.attention_rescale_backward(x, x, a)),
    ]
    for plan_fn, call in calls:
        first = call()
        m = _misses(plan_fn)
        second = call()
        assert _misses(plan_fn) == m, plan_fn.__name__
        for u, v in zip(first if isinstance(first, tuple) else (first,),
                        second if isinstance(second, tuple) else (second,)):
            torch.testing.assert_close(u, v, rtol=0, atol=0)
            assert u.stride() == v.stride()


def test_empty_batch_is_cached_and_launches_nothing():
    _, ar, _, _ = _mods()
    feat = torch.empty((0, 3, 4, 5))
    logits = torch.empty((0, 3, 2))
    for _ in range(2):
        out = T.attention_rescale(feat, logits)
        assert out.shape == feat.shape
    key = (feat.shape, feat.stride(), feat.dtype, feat.device,
           logits.shape, logits.stride(), logits.dtype, logits.device)
    assert ar._FWD_CALLS.get(key).plan is None


def test_invalid_calls_are_not_cached():
    _, ar, _, _ = _mods()
    feat = x_((2, 3, 4, 5))
    bad = x_((2, 4, 2))  # channel mismatch
    for _ in range(2):
        with pytest.raises(RuntimeError, match="channel"):
            T.attention_rescale(feat, bad)


def test_meta_tensors_are_not_cached():
    _, ar, _, _ = _mods()
    b0 = ar._FWD_CALLS.builds
    feat = torch.empty((2, 3, 4, 5), device="meta")
    logits = torch.empty((2, 3, 2), device="meta")
    out = T.attention_rescale(feat, logits)
    assert out.device.type == "meta" and out.shape == feat.shape
    assert ar._FWD_CALLS.builds == b0


def test_launches_are_positional():
    from hanet.ops.triton import KERNELS as TK

    seen = []
    kernels = list({id(k): k for k in TK.values()}.values())
    for k in kernels:
        real = k.run

        def spy(*args, _real=real, _k=k, **kwargs):
            seen.append((_k, args, kwargs))
            return _real(*args, **kwargs)

        k.run = spy
    try:
        feat = x_((1, 2, 4, 3), seed=1)
        logits = x_((1, 2, 2), seed=2)
        T.attention_rescale_backward(feat, feat, logits)
        T.attention_rescale_backward(feat, feat, logits)  # the cached path
    finally:
        for k in kernels:
            del k.run
    assert len(seen) == 4
    for k, args, kwargs in seen:
        assert set(kwargs) == {"grid", "warmup", "num_warps"}, kwargs
        assert len(args) == len(k.arg_names)


def _do_not_specialize(kernel):
    names = getattr(kernel, "do_not_specialize", None)
    if names is None:  # the interpreter keeps triton.jit's arguments
        names = getattr(kernel, "kwargs", {}).get("do_not_specialize") or []
    return set(names)


def _specialisation(launch):
    """What Triton's runtime specialises a launch on (besides pointer alignment): the
    constexprs, num_warps, and per integer argument its width and, unless marked
    do_not_specialize, whether it is 1 and whether it is a multiple of 16."""
    dns = _do_not_specialize(launch.kernel)
    ints = tuple((n, -(2**31) <= v < 2**31) + (() if n in dns else (v == 1, v % 16 == 0))
                 for n, v in launch.scalars.items())
    return (launch.name, tuple(sorted((k, repr(v)) for k, v in launch.constexprs.items())),
            launch.num_warps, ints)


@pytest.mark.parametrize("batch", [1, 4])
def test_batch_change_does_not_respecialise(batch):
    # At the R101-OS8 sites, a batch of 1 or 4 runs the kernels compiled for a batch of 2.
    from hanet.ops.triton import aot

    def configs(b):
        return aot.launch_configs(torch.float32, [(b,) + s[1:] for s in aot.POOL_SHAPES],
                                  [(b,) + s[1:] for s in aot.RESCALE_SHAPES])

    two, other = configs(2), configs(batch)
    assert [l for l, _ in two] == [l.replace(f"{batch}x", "2x", 1) for l, _ in other]
    for (label, a), (_, b) in zip(two, other):
        assert _specialisation(a) == _specialisation(b), label


def test_direct_kernels_skip_the_triton_op_wrapper(monkeypatch):
    # The launchers are the ops' device kernels: an eager call launches positionally
    # without asking whether wrap_triton is enabled (triton_op's kernel would).
    from hanet.ops import triton as tri
    from hanet.ops.triton import common

    if not tri.DIRECT_KERNELS:
        pytest.skip("HANET_TRITON_DIRECT=0")
    for name in tri.OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"hanet_triton::{name}", "CPU"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"hanet_triton::{name}", "CUDA"), name
    asked = []
    monkeypatch.setattr(common, "_wrap_enabled", lambda: asked.append(1) or False)
    a = x_((2, 3, 4), seed=3)
    for _ in range(2):
        close(T.height_interp(a, 7), ref.height_interp(a, 7), torch.float32)
    assert asked == []


def test_without_direct_kernels(tmp_path):
    # HANET_TRITON_DIRECT=0: triton_op's own kernel runs the launchers (same results).
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = (
        "import torch, hanet.ops as hops\n"
        "from hanet.ops import reference as ref, triton as tri\n"
        "assert not tri.DIRECT_KERNELS\n"
        "assert not torch._C._dispatch_has_kernel_for_dispatch_key('hanet_triton::attention_rescale', 'CPU')\n"
        "g = torch.Generator().manual_seed(0)\n"
        "f = torch.randn(2, 3, 6, 5, generator=g); l = torch.randn(2, 3, 4, generator=g)\n"
        "for _ in range(2):\n"
        "    torch.testing.assert_close(hops.attention_rescale(f, l, backend='triton'),\n"
        "                               ref.attention_rescale(f, l), rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n")
    env = dict(os.environ, TRITON_INTERPRET="1", HANET_TRITON_DIRECT="0")
    env["PYTHONPATH"] = os.pathsep.join([str(repo)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-4000:]


def test_host_bench_runs_and_restores_the_kernels():
    from hanet.bench import triton_host_bench as hb
    from hanet.ops.triton import KERNELS as TK

    rows = hb.run(device="cpu", calls=2, repeats=1, ops=["height_interp"], layouts=("nchw",))
    ops = {r["op"] for r in rows}
    assert ops == {"triton_op floor (empty_like)", "height_interp"}
    for r in rows:
        assert r["op_us"] > 0 and r["alloc_us"] > 0
        assert r["op"] == "triton_op floor (empty_like)" or r["api_us"] > 0
    assert all("run" not in k.__dict__ for k in TK.values()), "a kernel's run was left patched"
