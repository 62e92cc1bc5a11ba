"""Command line of the synthetic-scene generator::

    python -m hanet.synthetic OUT --train 20 --val 5 --test 0 --size 256 512 --seed 0

(``python -m hanet.data.synthetic`` and ``hanet make-synthetic-cityscapes`` are the same.)
"""
from __future__ import annotations

import argparse
import sys
import time

from .writer import make_synthetic_cityscapes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hanet.synthetic",
                                description="Write a synthetic urban-scene dataset in the Cityscapes layout.")
    p.add_argument("out", help="output folder (the dataset root)")
    p.add_argument("--train", type=int, default=20, help="training images (default 20)")
    p.add_argument("--val", type=int, default=5, help="validation images (default 5)")
    p.add_argument("--test", type=int, default=0, help="test images (default 0)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"),
                   help="image height and width (default 256 512)")
    p.add_argument("--seed", type=int, default=0, help="seed; the same seed gives identical files (default 0)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        make_synthetic_cityscapes(args.out, train=args.train, val=args.val, size=tuple(args.size), seed=args.seed,
                                  test=args.test)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = args.train + args.val + args.test
    print(f"wrote {n} images ({args.size[0]}x{args.size[1]}) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
