"""Rendering a synthetic scene to an RGB image and its Cityscapes label images.

Labels come from the labelled polygons alone, drawn in order with PIL (exactly
what cityscapesscripts' ``json2labelImg``/``json2instanceImg`` do with the polygon
JSON).  The image comes from a second drawing that also includes the
appearance-only parts, each shown only where its own object is visible; every
pixel's look is its base colour plus texture fields (noise, window grid, stripes,
vertical gradient), then lighting (gradients, blotches, sharp cast shadows),
a camera colour cast / contrast / gamma, sensor noise and sometimes blur.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hanet.data.cityscapes_labels import NAME_TO_LABEL as name2label

from .shapes import SceneObject, look


def _smooth_noise(rng, h, w, rows) -> np.ndarray:
    """Low-frequency noise: a normal grid of about ``rows`` cells per image height (so
    blobs keep their size relative to the image at any resolution), bilinearly
    upsampled to (h, w)."""
    grid = rng.standard_normal((rows + 2, max(2, round(rows * w / h) + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), dtype=np.float32)


def _fields(rng, h, w) -> np.ndarray:
    """(h, w, len(FIELDS)) texture fields of one image, in FIELDS order."""
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    py, px = h * rng.uniform(0.025, 0.06), h * rng.uniform(0.02, 0.05)
    windows = (((y % py) < 0.5 * py) & ((x % px) < 0.55 * px)).astype(np.float32)
    hstripes = np.broadcast_to(np.sin(2 * np.pi * y / (h * rng.uniform(0.008, 0.03))), (h, w))
    vstripes = np.broadcast_to(np.sign(np.sin(2 * np.pi * x / (w * rng.uniform(0.004, 0.012)))), (h, w))
    vgrad = np.broadcast_to(2.0 * y / h - 1.0, (h, w))
    fine = rng.standard_normal((h, w), dtype=np.float32)
    coarse = _smooth_noise(rng, h, w, 16)
    return np.stack([fine, coarse, windows, hstripes, vstripes, vgrad], axis=-1)


def render(objects: list[SceneObject], rng: np.random.Generator, height: int, width: int):
    """(rgb uint8 HxWx3, labelIds uint8 HxW, instanceIds uint16 HxW) of a scene.

    Labels come from the objects alone, drawn in order (what cityscapesscripts does
    with the polygon JSON); the appearance map also draws the parts, each shown only
    where its own object is visible.
    """
    h, w = height, width
    obj_img = Image.new("I", (w, h), 0)  # 0: background, i + 1: objects[i]
    slot_img = Image.new("I", (w, h), 0)  # appearance slots
    d_obj, d_slot = ImageDraw.Draw(obj_img), ImageDraw.Draw(slot_img)
    looks = [look((0, 0, 0), fine=2)]  # slot 0: background
    slot_owner = [0]
    counts: dict[str, int] = {}
    label_of = np.zeros(len(objects) + 1, dtype=np.uint8)  # 'unlabeled' = 0
    inst_of = np.zeros(len(objects) + 1, dtype=np.int64)
    for i, obj in enumerate(objects, start=1):
        lab = name2label[obj.label]
        label_of[i] = lab.id
        inst_of[i] = lab.id
        if lab.hasInstances:  # numbered as cityscapesscripts' json2instanceImg does
            inst_of[i] = lab.id * 1000 + counts.get(obj.label, 0)
            counts[obj.label] = counts.get(obj.label, 0) + 1
        d_obj.polygon(obj.polygon, fill=i)
        for poly, lk in [(obj.polygon, obj.look)] + obj.parts:
            d_slot.polygon(poly, fill=len(looks))
            looks.append(lk)
            slot_owner.append(i)
    omap = np.asarray(obj_img, dtype=np.int32)
    smap = np.asarray(slot_img, dtype=np.int32)
    owner = np.asarray(slot_owner, dtype=np.int32)
    first_slot = np.zeros(len(objects) + 1, dtype=np.int32)  # each object's own slot
    for s in range(len(owner) - 1, -1, -1):
        first_slot[owner[s]] = s
    # A part pixel whose object is hidden there by a later object shows that object instead.
    smap = np.where(owner[smap] == omap, smap, first_slot[omap])
    table = np.stack(looks).astype(np.float32)
    lk = table[smap]  # (h, w, NLOOK)
    img = lk[..., :3] + np.einsum("hwk,hwk->hw", lk[..., 3:], _fields(rng, h, w))[..., None]
    img += rng.normal(0, rng.uniform(1.0, 4.0), (h, w, 3)).astype(np.float32)  # chroma/sensor noise
    # Lighting: soft gradients and blotches, plus sharp cast shadows on sunny days.
    light = 1.0 + rng.uniform(0.03, 0.12) * _smooth_noise(rng, h, w, 6)
    light += rng.uniform(-0.2, 0.2) * (np.arange(w, dtype=np.float32)[None, :] / w - 0.5)
    if rng.random() < 0.5:
        shade = _smooth_noise(rng, h, w, 4) > rng.uniform(0.4, 1.2)
        light = np.where(shade, light * rng.uniform(0.55, 0.8), light)
    img *= light[..., None]
    # Camera: colour cast, contrast, gamma.
    img = img * rng.uniform(0.85, 1.15, 3).astype(np.float32) + rng.uniform(-15, 15)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.8, 1.2) + mean
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    rgb = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < 0.4:
        rgb = rgb.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return np.asarray(rgb), label_of[omap], inst_of[omap].astype(np.uint16)
