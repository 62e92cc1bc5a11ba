"""Timing helpers: median wall time on CPU, CUDA events / do_bench on a GPU."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int = 2, reps: int = 7) -> float:
    """Median time of fn() in milliseconds."""
    if device.type == "cuda":
        try:
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        except ImportError:
            pass
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def interleaved_ms(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int = 15,
                   warmup: int = 2) -> dict[str, float]:
    """Median time in ms of each of ``fns``, measured in interleaved rounds: every round
    times each function once, starting from a different one each round, so that a change
    in machine load (another process, turbo, page cache) touches all of them alike.

    On a GPU each round times a function with ``triton.testing.do_bench`` (a few
    repetitions, device time from CUDA events); on CPU one call of wall time.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            times[name].append(_one_ms(fns[name], device))
    return {n: statistics.median(v) for n, v in times.items()}


def _one_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        try:
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=3, rep=10, return_mode="median"))
        except ImportError:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3
