"""The benchmarks run and report what their columns promise (tiny shapes; no timing
is asserted: speed goals are shown by running the benches, not by tests)."""
from __future__ import annotations

import torch

from hanet.bench import ops_bench
from hanet.bench.timing import interleaved_ms


def test_interleaved_rounds_time_every_candidate_each_round():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    ms = interleaved_ms(fns, torch.device("cpu"), rounds=4, warmup=1)
    assert set(ms) == {"a", "b", "c"} and all(v >= 0 for v in ms.values())
    timed = calls[3:]  # after one warm-up call each
    assert [timed[i:i + 3] for i in range(0, 12, 3)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_ops_bench_rows_and_physical_columns():
    cpu = torch.device("cpu")
    for op in ("attention_rescale", "width_pool", "width_pool_acc", "width_pool_max"):
        rows = ops_bench._bench_case(op, (1, 4, 8, 8), torch.float32, ["cpu"], cpu, False, 2,
                                     copy_bps=1e9)
        assert [r.backend for r in rows] == ["eager reference", "cpu"]
        for r in rows:
            assert r.fwd_ms > 0 and r.fwd_bwd_ms > 0 and r.host_us > 0
            assert r.kernel_fwd_ms is None  # CUDA graphs only
            # % copy = minimum bytes / fwd+bwd time / copy bandwidth
            el = {"attention_rescale": 5, "width_pool_acc": 3}.get(op, 2) * 4 * 8 * 8 * 4
            assert abs(r.frac_copy_bw - el / (r.fwd_bwd_ms * 1e-3) / 1e9) < 1e-9
            line = ops_bench.format_row(r)
            assert line.split()[:4] == [op, "1x4x8x8", "float32", r.backend.split()[0]]
            assert f"{100 * r.frac_copy_bw:.1f}%" in line


def test_pool_acc_case_adds_into_the_existing_gradient():
    c = ops_bench._case("width_pool_acc", (1, 2, 4, 3), torch.float64, torch.device("cpu"))
    x = c["inputs"][0]
    step = ops_bench._fwd_bwd(c["ours"]("cpu"), c["inputs"], c["grad"], c["accumulate"])
    step()
    first = x.grad.clone()
    step()
    torch.testing.assert_close(x.grad, 2 * first)  # accumulated, not replaced
    # 16 bins over 4 rows: each row is in 4 bins of one row each; mean over 3 columns
    g = c["grad"]
    torch.testing.assert_close(first[0, :, 0, 0], g[0, :, 0:4].sum(-1) / 3)


def test_paired_overhead_literal_values():
    from hanet.bench.stats import paired_overhead

    base = [100.0, 102.0, 98.0, 101.0, 99.0]
    variant = [b + 5.0 for b in base]  # exactly 5 ms more in every round
    o = paired_overhead(base, variant)
    assert o.pct == 5.0 and o.rounds == 5  # 5 ms over the median base of 100 ms
    # resampled rounds: the base median moves between 98 and 102 ms
    assert 100 * 5 / 102 <= o.low <= 5.0 <= o.high <= 100 * 5 / 98
    noisy = paired_overhead([100.0] * 40, [100.0 + (i % 5) for i in range(40)])
    assert noisy.pct == 2.0 and noisy.low <= 2.0 <= noisy.high and noisy.high - noisy.low <= 2.0
    import pytest

    with pytest.raises(ValueError, match="equally long"):
        paired_overhead([1.0, 2.0], [1.0])


def test_resize_bench_times_both_paths_at_every_shape(capsys):
    from hanet.bench import resize_bench

    results = resize_bench.main(["--rounds", "1", "--dtypes", "float32"])
    assert [(r["shape"], r["size"]) for r in results] == resize_bench.SHAPES
    assert all(r["interpolate"] > 0 and r["matmul"] > 0 for r in results)
    assert "16x19x16x16" in capsys.readouterr().out  # the demo's logits


def test_infer_bench_times_fused_and_reference_in_each_mode(tmp_path):
    import json

    from hanet.bench import infer_bench

    out = tmp_path / "infer.json"
    results = infer_bench.main(["--arch", "deeplabv3plus_shufflenetv2_os16", "--device", "cpu", "--height", "32",
                                "--width", "64", "--crop", "32", "--reps", "1", "--json", str(out)])
    assert [(r["mode"], r["ops"]) for r in results] == [
        ("whole", "fused"), ("whole", "reference"), ("sliding", "fused"), ("sliding", "reference")]
    assert all(r["images_per_s"] > 0 for r in results)
    assert json.loads(out.read_text())["results"] == results
