"""A synthetic dataset in the exact Cityscapes layout, for tests, demos and smoke runs.

``make_synthetic_cityscapes(out, train=N, val=M, test=K, size=(H, W), seed=S)`` writes::

    out/leftImg8bit/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
    out/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      (8-bit labelIds)
    out/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_color.png         (RGBA, Cityscapes colours)
    out/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   (16-bit, id * 1000 + n)
    out/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json     (imgHeight, imgWidth, objects)

with images spread over several invented cities per split (frame 000019, as in
the real fine annotations).  The scenes are described in
:mod:`hanet.synthetic.scene`.  Unlike the real dataset, the test split gets
real labels (the official test labels are dummies), so a model's test score can be
measured; readers treat them like any label.

Each image is generated from its own seed (seed, split, index), so the output is
byte-identical for the same arguments, and an image does not change when more
images are asked for.  Command line: ``python -m hanet.synthetic`` (see
:mod:`hanet.synthetic.cli`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hanet.data.labels import LABEL_COLOURS

from .scene import FORCED, generate_scene

CITIES = {
    "train": ("alderwick", "brackenford", "cedarholm", "dunmere"),
    "val": ("elmstead", "fernbridge"),
    "test": ("glenharrow", "hollowmoor"),
}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
FRAME = 19  # the annotated frame of each Cityscapes snippet


def image_name(split: str, index: int) -> tuple[str, str]:
    """(city, name) of image ``index`` of a split, e.g. ("alderwick", "alderwick_000000_000019"):
    images go round the split's cities, each city numbering its own sequences."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def image_names(split: str, count: int) -> list[tuple[str, str]]:
    """(city, name) of the first ``count`` images of a split."""
    return [image_name(split, i) for i in range(count)]


def _colour_image(label_ids: np.ndarray) -> Image.Image:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 3] = 255
    for lid, rgb in LABEL_COLOURS.items():
        lut[lid, :3] = rgb
    return Image.fromarray(lut[label_ids])


def write_sample(out: Path, split: str, index: int, size: tuple[int, int], seed: int) -> str:
    """Generates and writes image ``index`` of ``split``; returns its name."""
    h, w = size
    city, name = image_name(split, index)
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    objects, rgb, label_ids, instance_ids = generate_scene(rng, h, w, forced=FORCED[index % len(FORCED)])
    img_dir = out / "leftImg8bit" / split / city
    gt_dir = out / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(img_dir / f"{name}_leftImg8bit.png")
    Image.fromarray(label_ids).save(gt_dir / f"{name}_gtFine_labelIds.png")
    _colour_image(label_ids).save(gt_dir / f"{name}_gtFine_color.png")
    Image.fromarray(instance_ids).save(gt_dir / f"{name}_gtFine_instanceIds.png")
    polygons = {"imgHeight": h, "imgWidth": w,
                "objects": [{"label": o.label, "polygon": [list(p) for p in o.polygon]} for o in objects]}
    (gt_dir / f"{name}_gtFine_polygons.json").write_text(json.dumps(polygons, indent=4) + "\n")
    return name


def make_synthetic_cityscapes(out: str | Path, train: int = 20, val: int = 5, size: tuple[int, int] = (256, 512),
                              seed: int = 0, test: int = 0) -> Path:
    """Writes a synthetic Cityscapes-layout dataset under ``out`` (see the module
    docstring) and returns ``out``.  ``size`` is (height, width).  Existing files of
    the same names are overwritten; nothing else is touched."""
    h, w = (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise ValueError(f"make_synthetic_cityscapes: size must be at least 16x16, got {h}x{w}")
    if seed < 0:
        raise ValueError(f"make_synthetic_cityscapes: seed must be >= 0, got {seed}")
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if min(counts.values()) < 0:
        raise ValueError(f"make_synthetic_cityscapes: image counts must be >= 0, got {counts}")
    out = Path(out)
    for split, n in counts.items():
        for i in range(n):
            write_sample(out, split, i, (h, w), seed)
    return out

