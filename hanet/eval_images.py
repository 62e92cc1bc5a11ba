"""The pictures the original eval.py writes with ``--dump_images``, under its names.

For an image file ``<stem>.png`` (e.g. ``frankfurt_000000_000294_leftImg8bit``):

* ``rgb/<stem>_color.png``: the prediction as a palette image (train id -> class colour);
* ``compose/<stem>_compose.png``: the image and the colour prediction blended 50/50 (RGBA);
* ``diff/<stem>_diff.png``: the blend where the prediction is wrong, white where it is
  right (ignored pixels count as right); written only where a label exists;
* ``pred/<stem>.png``: the prediction as the dataset's label ids (Cityscapes labelIds),
  one 8-bit channel: what the Cityscapes test server takes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps

FOLDERS = ("rgb", "pred", "diff", "compose")


def colorize(pred: np.ndarray, palette) -> Image.Image:
    """(H, W) train ids -> palette ('P') image; ids without a colour are black."""
    flat = [c for rgb in palette for c in rgb]
    img = Image.fromarray(pred.astype(np.uint8), mode="L").convert("P")
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def dump_images(out_dir: str | Path, stem: str, image: Image.Image, pred: np.ndarray, label: np.ndarray | None,
                palette, label_ids: np.ndarray, ignore_index: int = 255) -> list[Path]:
    """Writes the four pictures of one image; returns their paths."""
    out = Path(out_dir)
    for sub in FOLDERS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    colour = colorize(pred, palette)
    blend = Image.blend(image.convert("RGBA"), colour.convert("RGBA"), 0.5)
    paths = [out / "rgb" / f"{stem}_color.png", out / "compose" / f"{stem}_compose.png"]
    colour.save(paths[0])
    blend.save(paths[1])
    if label is not None:
        wrong = (pred != label) & (label != ignore_index)
        marks = ImageOps.invert(Image.fromarray(wrong.astype(np.uint8) * 255))
        paths.append(out / "diff" / f"{stem}_diff.png")
        ImageChops.lighter(blend, marks.convert("RGBA")).save(paths[-1])
    paths.append(out / "pred" / f"{stem}.png")
    Image.fromarray(label_ids.astype(np.uint8)).save(paths[-1])
    return paths
