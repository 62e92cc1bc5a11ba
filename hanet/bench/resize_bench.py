"""Bilinear resizing (align_corners=True) forward + backward: ``F.interpolate`` against
:func:`hanet.models.resize.resize_bilinear` (two interpolation-matrix products on the
CPU), at the decoder shapes of the demo (16 crops of 128, ShuffleNetV2 OS16: the 19-class
logits 16x16 -> 128x128 and the ASPP's 256 channels 8x8 -> 16x16) and of R101-OS8 (2 crops
of 768),
in interleaved rounds (medians).

    python -m hanet.bench resize [--dtypes float32,bfloat16] [--rounds 15]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from hanet.bench.timing import interleaved_ms
from hanet.models.resize import resize_bilinear

SHAPES = [((16, 19, 16, 16), (128, 128)), ((16, 256, 8, 8), (16, 16)),
          ((2, 19, 192, 192), (768, 768)), ((2, 256, 96, 96), (192, 192))]


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench resize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    dtypes = []
    for name in args.dtypes.split(","):
        if name not in ("float32", "bfloat16", "float64"):
            p.error(f"--dtypes: float32, bfloat16 or float64, got {name!r}")
        dtypes.append(getattr(torch, name))
    device = torch.device("cpu")
    print(f"{'shape':<18} {'size':<10} {'dtype':<9} {'interpolate ms':>14} {'matmul ms':>10} {'speed-up':>9}"
          f"   ({torch.get_num_threads()} threads, forward + backward)")
    results = []
    for shape, size in SHAPES:
        for dtype in dtypes:
            x = torch.randn(shape, dtype=dtype, requires_grad=True)
            g = torch.randn(*shape[:2], *size, dtype=dtype)
            t = interleaved_ms({
                "interpolate": lambda: F.interpolate(x, size=size, mode="bilinear", align_corners=True).backward(g),
                "matmul": lambda: resize_bilinear(x, size).backward(g),
            }, device, rounds=args.rounds)
            results.append({"shape": shape, "size": size, "dtype": str(dtype), **t})
            print(f"{'x'.join(map(str, shape)):<18} {'x'.join(map(str, size)):<10} {str(dtype)[6:]:<9} "
                  f"{t['interpolate']:>14.2f} {t['matmul']:>10.2f} {t['interpolate'] / t['matmul']:>8.2f}x")
    return results


if __name__ == "__main__":
    main()
