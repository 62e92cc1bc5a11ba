"""The `hanet` command line (also `python -m hanet`)."""
from __future__ import annotations

import argparse
import sys


def _convert_official(args) -> int:
    from hanet.models import convert_official

    model = convert_official(args.src, args.dst)
    c = model.config
    print(f"wrote {args.dst}: {c.trunk} OS{c.output_stride}, {c.num_classes} classes, hanet={c.hanet}, "
          f"hanet_set={c.hanet_set}, hanet_pos={c.hanet_pos}, pos_rfactor={c.pos_rfactor}")
    return 0


def _bench(args) -> int:
    if args.what == "ops":
        from hanet.bench.ops_bench import main as ops_main

        ops_main(args.rest)
    else:
        from hanet.bench.model_bench import main as model_main

        model_main(args.rest)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hanet", description="HANet: height-driven attention networks for urban-scene segmentation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert-official", help="convert an official HANet checkpoint to hanet's format",
                       description="Reads an official HANet checkpoint (architecture from its 'command' flags, "
                                   "weights loaded strictly, never executing code) and writes it in hanet's own "
                                   "format (weights + full model configuration), loadable with hanet.models.load.")
    c.add_argument("src", help="official checkpoint (.pth)")
    c.add_argument("dst", help="output file")
    c.set_defaults(func=_convert_official)

    b = sub.add_parser("bench", help="benchmarks: ops (kernel micro-benchmarks) or model",
                       description="hanet bench ops [--help] | hanet bench model [--help]")
    b.add_argument("what", choices=["ops", "model"])
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see its --help)")
    b.set_defaults(func=_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"hanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
