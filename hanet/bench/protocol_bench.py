"""The original eval.py protocol against the standard one on a labelled split: mIoU of
each, the share of pixels on which their predictions agree, and seconds per image.

    python -m hanet.bench protocol CKPT data.root=DIR [--crop 1024] [--max-images N] [--json out.json]

Four settings, as the official scripts and their single-scale variants use them:
whole image and sliding windows (``--crop``, overlap 1/3), each at scale 1.0 and at
scales 0.5/1.0/2.0 with flip.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from hanet.evaluation import _dataset, load_eval_config, load_model_for_inference, predict_sample
from hanet.metrics import BandedConfusion, band_line

SETTINGS = {
    "whole 1.0": dict(mode="whole", scales=[1.0], flip=False),
    "whole 0.5/1/2 flip": dict(mode="whole", scales=[0.5, 1.0, 2.0], flip=True),
    "sliding 1.0": dict(mode="sliding", scales=[1.0], flip=False),
    "sliding 0.5/1/2 flip": dict(mode="sliding", scales=[0.5, 1.0, 2.0], flip=True),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hanet.bench protocol", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*", help="eval overrides, e.g. data.root=DIR device=cpu")
    p.add_argument("--crop", type=int, default=1024, help="sliding window size (the original's --crop_size)")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = {}
    for name, setting in SETTINGS.items():
        row = {}
        preds = {}
        for protocol in ("original", "standard"):
            cfg = load_eval_config(args.overrides + [f"infer.protocol={protocol}", f"infer.mode={setting['mode']}",
                                                     f"infer.scales={setting['scales']}",
                                                     f"infer.flip={str(setting['flip']).lower()}",
                                                     f"infer.crop_size=[{args.crop},{args.crop}]"])
            model = load_model_for_inference(args.checkpoint, cfg)
            dataset = _dataset(cfg, cfg.data.split)
            n = len(dataset) if args.max_images is None else min(len(dataset), args.max_images)
            cm = BandedConfusion(len(dataset.classes.names), dataset.classes.ignore_index)
            infer = cfg.infer.to_inference()
            t0 = time.perf_counter()
            preds[protocol] = []
            for i in range(n):
                sample, pred = predict_sample(model, dataset, i, infer, torch.device("cpu"))
                cm.update(pred.cpu(), sample["label"])
                preds[protocol].append(pred.cpu())
            metrics = cm.compute()
            row[protocol] = {"miou": metrics.miou, "pixel_acc": metrics.pixel_acc,
                             "bands": band_line(metrics).split(": ")[1], "s_per_image": (time.perf_counter() - t0) / n}
        same = sum(int((a == b).sum()) for a, b in zip(preds["original"], preds["standard"]))
        total = sum(a.numel() for a in preds["original"])
        row["pixels_agreeing"] = same / total
        results[name] = row
        o, s = row["original"], row["standard"]
        print(f"{name:<22} original mIoU {100 * o['miou']:6.2f}  standard {100 * s['miou']:6.2f}  "
              f"diff {100 * (s['miou'] - o['miou']):+5.2f}  pixels agreeing {100 * row['pixels_agreeing']:6.2f} %  "
              f"s/img {o['s_per_image']:.2f} / {s['s_per_image']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "crop": args.crop, "settings": results}, f, indent=1)
