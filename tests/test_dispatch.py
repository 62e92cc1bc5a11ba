"""Backend selection: defaults, HANET_BACKEND, and clear errors."""
from __future__ import annotations

import os

import pytest
import torch

import hanet.ops as hops
from hanet.ops import dispatch


def test_available_backends_lists_what_runs_here():
    names = hops.available_backends()
    assert names[0] == "reference"
    assert "cuda" not in hops.available_backends("cpu")
    if hops._extension.extension_loaded():
        assert "cpu" in names


def test_default_is_fastest_available(monkeypatch):
    monkeypatch.delenv("HANET_BACKEND", raising=False)
    expected = "cpu" if "cpu" in hops.available_backends("cpu") else "reference"
    assert dispatch.resolve(None, torch.device("cpu")) == expected


def test_env_overrides_default(monkeypatch):
    monkeypatch.setenv("HANET_BACKEND", "reference")
    assert dispatch.resolve(None, torch.device("cpu")) == "reference"
    # An explicit argument still wins over the environment.
    if "cpu" in hops.available_backends("cpu"):
        assert dispatch.resolve("cpu", torch.device("cpu")) == "cpu"


def test_env_with_bad_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HANET_BACKEND", "tpu")
    with pytest.raises(hops.BackendUnavailableError, match="HANET_BACKEND='tpu' is not a hanet backend"):
        hops.attention_rescale(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2))


def test_unavailable_backend_is_a_clear_error():
    with pytest.raises(hops.BackendUnavailableError, match="cuda backend runs on CUDA tensors"):
        hops.width_pool(torch.randn(1, 1, 2, 2), 2, backend="cuda")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = dispatch._why_unavailable("triton", "cpu")
    assert reason is not None and "TRITON_INTERPRET=1" in reason


def test_interpreter_flag_is_set_for_this_session():
    assert os.environ.get("TRITON_INTERPRET") == "1"


# ---- the import-time probe of the CUDA kernels (no GPU needed) -------------------


@pytest.mark.parametrize("cap,tag,ok", [
    ((8, 0), "80_90_100ptx", True), ((8, 6), "80_90_100ptx", True),   # sm_80 cubin runs on 8.6
    ((9, 0), "80_90_100ptx", True), ((10, 0), "80_90_100ptx", True),
    ((10, 3), "80_90_100ptx", True), ((12, 0), "80_90_100ptx", True),  # compute_100 PTX JIT
    ((7, 5), "80_90_100ptx", False),                                   # older than every target
    ((10, 0), "80_90", False), ((12, 0), "80_90", False),              # no cubin, no PTX
    ((8, 0), "", False),
])
def test_kernel_image_rule(cap, tag, ok):
    from hanet.ops import _extension

    assert _extension.runs_on(cap, tag) is ok


_PROBE = r"""
import warnings, torch
# a GPU the extension has no kernel image for (sm_70), seen before hanet is imported
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.get_device_capability = lambda i=0: (7, 0)
torch.cuda.get_device_name = lambda i=0: "Fake V100"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import hanet.ops as hops
print("WARNINGS", sum("no kernel image" in str(w.message) for w in caught))
print("DEFAULT", hops.dispatch.resolve(None, torch.device("cuda")))
try:
    hops.dispatch.resolve("cuda", torch.device("cuda"))
except hops.BackendUnavailableError as e:
    print("EXPLICIT", e)
"""


def test_cuda_kernels_without_an_image_for_the_gpu_fall_back_with_one_warning(tmp_path):
    """Built with CUDA but run on a GPU the cubins/PTX do not cover: importing hanet.ops
    warns once, the default backend becomes triton (or the reference), and asking for
    cuda names the reason, instead of a "no kernel image" error at the first call."""
    import os
    import subprocess
    import sys

    from hanet.ops import _extension

    if not _extension.has_kernel("attention_rescale", "CUDA"):
        pytest.skip("hanet._C built without CUDA kernels")
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    # cwd outside the repository: `python -c` puts the cwd first on sys.path, and the source
    # tree's hanet/ has no built extension; the child must import the hanet this process did.
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert out["WARNINGS"] == "1", proc.stdout
    assert out["DEFAULT"] in ("triton", "reference"), proc.stdout
    assert "no kernel image" in out["EXPLICIT"] and "sm_70" in out["EXPLICIT"], proc.stdout
