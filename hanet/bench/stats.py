"""Statistics of interleaved A/B timings: the overhead of B over A with a confidence
interval, from paired rounds (each round times A and B back to back)."""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Overhead:
    pct: float       # 100 * median(B - A) / median(A), over the paired rounds
    low: float       # bounds of the `level` bootstrap percentile interval, in %
    high: float
    rounds: int
    level: float = 0.95

    def __str__(self) -> str:
        return (f"{self.pct:+.2f} % [{self.low:+.2f}, {self.high:+.2f}] "
                f"({100 * self.level:.0f} % interval, {self.rounds} rounds)")


def paired_overhead(base_ms: list[float], variant_ms: list[float], level: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> Overhead:
    """Overhead of `variant` over `base` in % of the base time, with a bootstrap
    percentile interval that resamples whole rounds (so drift shared by the two
    timings of a round cancels).  Medians keep single outliers (a page-fault storm,
    a GC pause) from moving the figure."""
    if len(base_ms) != len(variant_ms) or len(base_ms) < 2:
        raise ValueError(f"paired_overhead needs two equally long lists of >= 2 rounds, got "
                         f"{len(base_ms)} and {len(variant_ms)}")
    pairs = list(zip(base_ms, variant_ms))

    def pct(sample):
        return 100 * statistics.median(v - b for b, v in sample) / statistics.median(b for b, _ in sample)

    rng = random.Random(seed)
    boot = sorted(pct([rng.choice(pairs) for _ in pairs]) for _ in range(resamples))
    tail = (1 - level) / 2
    lo = boot[int(tail * (resamples - 1))]
    hi = boot[int((1 - tail) * (resamples - 1))]
    return Overhead(pct(pairs), lo, hi, len(pairs), level)
