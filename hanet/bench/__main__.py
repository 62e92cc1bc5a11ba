"""python -m hanet.bench {ops,model,infer,protocol,triton-host,launches,resize} [options]"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("ops", "model", "infer", "protocol", "triton-host", "launches", "resize"):
        print("usage: python -m hanet.bench {ops,model,infer,protocol,triton-host,launches,resize} [--help]",
              file=sys.stderr)
        return 2
    import importlib

    module = {"ops": "ops_bench", "model": "model_bench", "infer": "infer_bench", "protocol": "protocol_bench",
              "triton-host": "triton_host_bench", "launches": "launches",
              "resize": "resize_bench"}[argv[0]]
    importlib.import_module(f"hanet.bench.{module}").main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
