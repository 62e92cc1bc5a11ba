"""python -m hanet.bench {ops,model} [options]"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("ops", "model"):
        print("usage: python -m hanet.bench {ops,model} [--help]", file=sys.stderr)
        return 2
    if argv[0] == "ops":
        from .ops_bench import main as ops_main

        ops_main(argv[1:])
    else:
        from .model_bench import main as model_main

        model_main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
