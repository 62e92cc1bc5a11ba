"""hanet.bench model: peak memory per variant from a fresh process that does not
inherit the parent's peak, and the CLI's JSON on a tiny CPU configuration."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hanet.bench import model_bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--arch", "deeplabv3plus_shufflenetv2_os16", "--device", "cpu", "--batch", "1", "--height", "32",
        "--width", "64"]


def _vm(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith(field + ":"))


def test_a_variants_memory_is_its_own_not_the_parents_peak():
    """ru_maxrss survives fork + exec on Linux: a child started while this process holds
    a large buffer read at least this process's peak, so every variant showed the same
    number.  The child's figure must stay well below it."""
    try:
        _vm("VmHWM")
    except OSError:
        pytest.skip("no /proc/self/status")
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\1" * (len(ballast) // 4096)  # touch every page: resident
    parent_rss = _vm("VmRSS")
    args = SimpleNamespace(arch="deeplabv3plus_shufflenetv2_os16", device="cpu", batch=1, height=32, width=64)
    peak = model_bench.memory_in_subprocess("baseline", args)
    del ballast
    assert 50 < peak < parent_rss - 300, (peak, parent_rss)


def test_cli_json_on_a_tiny_cpu_configuration(tmp_path, monkeypatch):
    calls = []

    def fake_memory(variant, args):
        calls.append((variant, args.arch, args.device, args.batch, args.height, args.width))
        return {"baseline": 100.0, "hanet_reference": 110.0, "hanet_fused": 105.0}[variant]

    monkeypatch.setattr(model_bench, "memory_in_subprocess", fake_memory)
    out = tmp_path / "model.json"
    model_bench.main(TINY + ["--reps", "1", "--json", str(out)])
    assert calls == [(v, "deeplabv3plus_shufflenetv2_os16", "cpu", 1, 32, 64) for v in model_bench.VARIANTS]
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "results"}
    assert data["meta"] | {"threads": None, "torch": None} == {
        "arch": "deeplabv3plus_shufflenetv2_os16", "device": "cpu", "batch": 1, "height": 32, "width": 64,
        "cuda_graph": False, "threads": None, "torch": None}
    res = data["results"]
    assert list(res) == ["baseline", "hanet_reference", "hanet_fused"]
    assert [res[v]["peak_mb"] for v in res] == [100.0, 110.0, 105.0]
    assert set(res["baseline"]) == {"step_ms", "runs_ms", "peak_mb", "held_mb"}
    for v in ("hanet_reference", "hanet_fused"):
        assert set(res[v]) == {"step_ms", "runs_ms", "peak_mb", "held_mb", "overhead_pct"}
    # HANet adds activations; the fused rescale keeps its output in place of x_high
    held = {v: res[v]["held_mb"] for v in res}
    assert held["baseline"] < held["hanet_fused"] < held["hanet_reference"], held
    assert all(len(r["runs_ms"]) == 1 and r["step_ms"] > 0 for r in res.values())
    # --no-memory: no measurement, no peak_mb
    calls.clear()
    model_bench.main(TINY + ["--reps", "1", "--no-memory", "--json", str(out)])
    assert calls == [] and all("peak_mb" not in r for r in json.loads(out.read_text())["results"].values())


def test_held_for_backward_counts_each_saved_storage_once_without_parameters():
    # conv keeps its input (1x3x8x8 fp32: 768 B) and its weight (a parameter: not
    # counted); the in-place ReLU keeps its output (1x4x8x8: 1024 B), the conv's output
    # storage, once; the view's base is the same storage.
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(inplace=True))
    x = torch.randn(1, 3, 8, 8)
    assert model_bench.held_for_backward_mb(model, x) * 2**20 == 768 + 1024
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Sigmoid())
    assert model_bench.held_for_backward_mb(model, x) * 2**20 == 768 + 1024 + 1024


def test_cli_reports_the_overhead_with_its_interval(tmp_path):
    out = tmp_path / "model.json"
    model_bench.main(TINY + ["--reps", "3", "--no-memory", "--json", str(out)])
    res = json.loads(out.read_text())["results"]
    for v in ("hanet_reference", "hanet_fused"):
        low, high = res[v]["overhead_ci95_pct"]
        assert low <= res[v]["overhead_pct"] <= high
        assert len(res[v]["runs_ms"]) == 3
