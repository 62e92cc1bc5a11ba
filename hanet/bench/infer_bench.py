"""Inference throughput: images/s of whole-image and sliding-window inference, for a
model on the fused ops and on the reference ops, timed in interleaved rounds (each round
runs both, starting from a different one; medians), so that a change in machine load
touches both alike.

    python -m hanet.bench infer [--arch deeplabv3plus_r101_os8] [--height 512 --width 1024]
"""
from __future__ import annotations

import argparse
import json

import torch

from hanet.bench.timing import interleaved_ms
from hanet.inference import InferenceConfig, predict_probs
from hanet.models import build_model, load

HANET = dict(hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8)


def _set_backend(model, backend: str) -> None:
    for site in model.hanet_sites():
        site.backend = None if backend == "fused" else "reference"


def _images_per_s(model, images, cfg: InferenceConfig, rounds: int) -> dict[str, float]:
    def run(backend):
        _set_backend(model, backend)
        predict_probs(model, images, cfg=cfg)

    fns = {b: (lambda b=b: run(b)) for b in ("fused", "reference")}
    ms = interleaved_ms(fns, images.device, rounds=rounds, warmup=1)
    return {b: images.shape[0] / (t * 1e-3) for b, t in ms.items()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="deeplabv3plus_r101_os8", help="an arch name, or a checkpoint file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--crop", type=int, default=None, help="sliding window size (default: the image height)")
    p.add_argument("--reps", type=int, default=2, help="interleaved rounds (each times every variant once)")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.arch.endswith((".pt", ".pth")):
        model = load(args.arch)
    else:
        model = build_model(args.arch, **HANET)
    model = model.to(device).eval()
    images = torch.randn(1, 3, args.height, args.width, device=device)
    crop = args.crop or args.height
    modes = {"whole": InferenceConfig(),
             "sliding": InferenceConfig(mode="sliding", crop_size=(crop, crop), crop_batch=2)}
    results = []
    print(f"{args.arch} at {args.height}x{args.width} on {device} ({torch.get_num_threads()} threads); "
          f"sliding window {crop}x{crop}, overlap 1/3")
    print(f"{'mode':<9} {'ops':<10} {'images/s':>9}")
    for mode, cfg in modes.items():
        for backend, ips in _images_per_s(model, images, cfg, args.reps).items():
            results.append({"mode": mode, "ops": backend, "images_per_s": ips})
            print(f"{mode:<9} {backend:<10} {ips:>9.3f}", flush=True)
    _set_backend(model, "fused")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": args.arch, "device": str(device), "size": [args.height, args.width], "crop": crop,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
