"""Model-level benchmark (see hanet/bench/model_bench.py):

    python bench/bench_model.py [--arch deeplabv3plus_r101_os8] [--json results.json]
"""
from hanet.bench.model_bench import main

if __name__ == "__main__":
    main()
