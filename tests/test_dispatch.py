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
