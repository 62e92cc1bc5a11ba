"""Kernel micro-benchmarks of the HANet ops (see hanet/bench/ops_bench.py).

    python bench/bench_ops.py [--dtypes float32,bfloat16] [--json results.json]
"""
from hanet.bench.ops_bench import main

if __name__ == "__main__":
    main()
