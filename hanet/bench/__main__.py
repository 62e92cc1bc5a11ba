"""python -m hanet.bench ops [options]"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("ops",):
        print("usage: python -m hanet.bench ops [--help]", file=sys.stderr)
        return 2
    if argv[0] == "ops":
        from .ops_bench import main as ops_main

        ops_main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
