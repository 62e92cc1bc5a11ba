"""The original's geometric training transforms (its joint_transforms.py), on our
sample dicts: image, label and row-position map ``pos_h`` move together.

* :class:`RandomSizeAndCrop` (``data.pre_size``, ``scale_min/max``, ``crop_nopad``),
* :class:`ResizeSquare` (its ``Resize(crop_size)``, which only acts after a
  ``crop_nopad`` crop shrank the window),
* :class:`RandomRotate` (``data.rrotate``).

Resampling is PIL's, as in the original: bicubic for the image, nearest for the
label and position map (both as 8-bit images).  Every random number comes from
the transform's ``generator`` (or torch's global RNG), see :mod:`.transforms`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from .position import POS_PAD
from .transforms import IGNORE_INDEX, RandomTransform, _crop_pad, image_tensor

_MAPS = ("label", "pos_h")


def pil_rgb(image) -> Image.Image:
    """A PIL RGB image, or a uint8 3xHxW tensor, as a PIL RGB image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    t = image_tensor(image)
    if t.dtype != torch.uint8:
        raise TypeError(f"the geometric transforms need a uint8 image (they come before the photometric ones), "
                        f"got {t.dtype}")
    return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy(), "RGB")


def pil_map(t: torch.Tensor, key: str) -> Image.Image:
    """A (H, W) label or position map as an 8-bit PIL image (what the original resamples)."""
    t = torch.as_tensor(t)
    if t.dtype != torch.uint8:
        if t.dtype.is_floating_point or (t.numel() and (int(t.min()) < 0 or int(t.max()) > 255)):
            raise ValueError(f"{key} must hold integers in 0..255 (the original resamples it as an 8-bit image)")
        t = t.to(torch.uint8)
    return Image.fromarray(t.contiguous().numpy(), "L")


def from_pil_map(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im, dtype=np.uint8))


def _resize(sample: dict, w: int, h: int) -> dict:
    out = dict(sample)
    out["image"] = image_tensor(pil_rgb(sample["image"]).resize((w, h), Image.Resampling.BICUBIC))
    for key in _MAPS:
        if key in sample:
            out[key] = from_pil_map(pil_map(sample[key], key).resize((w, h), Image.Resampling.NEAREST))
    return out


def _hw(image) -> tuple[int, int]:
    return (image.size[1], image.size[0]) if isinstance(image, Image.Image) else tuple(image.shape[-2:])


class RandomSizeAndCrop(RandomTransform):
    """Scale by ``s`` = (``pre_size`` / shorter edge, or 1) x U(scale_min, scale_max),
    new size ``int(w * s)`` x ``int(h * s)`` (truncated, as the original), then a
    ``size`` x ``size`` crop:

    * padding (``crop_nopad`` False): an axis shorter than the crop is padded by
      ``(size - len) // 2 + 1`` on BOTH sides (image 0, label ``ignore_index``,
      position 128), so the image sits near the middle of the window, then the
      window is placed uniformly inside the padded image;
    * ``crop_nopad``: when either axis is shorter than the crop, the window shrinks
      to a square of the shorter edge (no padding; :class:`ResizeSquare` then
      scales it to ``size``).

    With ``sample["centroid"]`` = (row, col) (class-uniform sampling), the window's
    corner is drawn from [c - size, c] on each axis and clamped into the image; as
    in the original, the centroid is scaled but not moved by the padding.
    """

    def __init__(self, size: int, crop_nopad: bool = False, scale_min: float = 0.5, scale_max: float = 2.0,
                 pre_size: int | None = None, ignore_index: int = IGNORE_INDEX, image_fill=0,
                 generator: torch.Generator | None = None):
        super().__init__(generator)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"RandomSizeAndCrop: size must be a positive int (square crops), got {size!r}")
        if not 0 < scale_min <= scale_max:
            raise ValueError(f"RandomSizeAndCrop: need 0 < scale_min <= scale_max, got {scale_min}, {scale_max}")
        if pre_size is not None and pre_size < 1:
            raise ValueError(f"RandomSizeAndCrop: pre_size must be >= 1 or None, got {pre_size}")
        self.size, self.crop_nopad = size, bool(crop_nopad)
        self.scale_min, self.scale_max, self.pre_size = scale_min, scale_max, pre_size
        self.ignore_index, self.image_fill = ignore_index, image_fill

    def scale_factor(self, h: int, w: int) -> float:
        if self.pre_size is None:
            s = 1.0
        elif h < w:
            s = self.pre_size / h
        else:
            s = self.pre_size / w
        return s * self.uniform(self.scale_min, self.scale_max)

    def __call__(self, sample: dict) -> dict:
        out = self.rescale(sample)
        return self.crop(out, out.pop("centroid", None))

    def rescale(self, sample: dict) -> dict:
        """The scaling step alone (a centroid is scaled with it)."""
        h, w = _hw(sample["image"])
        s = self.scale_factor(h, w)
        nw, nh = int(w * s), int(h * s)
        if nw < 1 or nh < 1:
            raise ValueError(f"RandomSizeAndCrop: a {w}x{h} image scaled by {s:.4g} is empty")
        out = _resize(sample, nw, nh)
        if sample.get("centroid") is not None:
            out["centroid"] = (int(sample["centroid"][0] * s), int(sample["centroid"][1] * s))
        return out

    def crop(self, sample: dict, centroid: tuple[int, int] | None) -> dict:
        """The original's RandomCrop on an already scaled sample."""
        img = image_tensor(sample["image"])
        h, w = img.shape[-2:]
        th = tw = self.size
        if (h, w) == (th, tw):
            return sample
        pad_h = pad_w = 0
        if self.crop_nopad:
            if th > h or tw > w:
                th = tw = min(h, w)
        else:
            pad_h = (th - h) // 2 + 1 if th > h else 0
            pad_w = (tw - w) // 2 + 1 if tw > w else 0
        ph, pw = h + 2 * pad_h, w + 2 * pad_w  # the padded size
        if centroid is not None:
            cy, cx = centroid
            x1 = min(pw - tw, max(0, self.randint(cx - tw, cx)))
            y1 = min(ph - th, max(0, self.randint(cy - th, cy)))
        else:
            x1 = 0 if pw == tw else self.randint(0, pw - tw)
            y1 = 0 if ph == th else self.randint(0, ph - th)
        y0, x0 = y1 - pad_h, x1 - pad_w  # the window in unpadded coordinates
        out = dict(sample)
        out["image"] = _crop_pad(img, y0, x0, th, tw, self.image_fill)
        if "label" in sample:
            out["label"] = _crop_pad(torch.as_tensor(sample["label"]), y0, x0, th, tw, self.ignore_index)
        if "pos_h" in sample:
            out["pos_h"] = _crop_pad(torch.as_tensor(sample["pos_h"]), y0, x0, th, tw, POS_PAD)
        return out


class ResizeSquare:
    """The original's ``Resize(crop_size)``: image (bicubic), label and positions
    (nearest) to ``size`` x ``size``; a sample of that size is left as it is."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, sample: dict) -> dict:
        sample = {k: v for k, v in sample.items() if k != "centroid"}
        if _hw(sample["image"]) == (self.size, self.size):
            return sample
        return _resize(sample, self.size, self.size)


def rotation_matrix(w: int, h: int, angle: float) -> list[float]:
    """The inverse affine matrix torchvision 0.5's ``F.affine`` hands PIL for a pure
    rotation: about (w / 2 + 0.5, h / 2 + 0.5), half a pixel off the image centre
    in PIL's coordinates (the original's torchvision; later versions moved it)."""
    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    rot = math.radians(angle)
    m = [math.cos(rot), math.sin(rot), 0.0, -math.sin(rot), math.cos(rot), 0.0]
    m[2] += m[0] * -cx + m[1] * -cy
    m[5] += m[3] * -cx + m[4] * -cy
    m[2] += cx
    m[5] += cy
    return m


class RandomRotate(RandomTransform):
    """Rotation by an angle drawn from U(-degree, degree): image bicubic with black
    fill, label nearest with ``ignore_index``, positions nearest with 128."""

    def __init__(self, degree: float, ignore_index: int = IGNORE_INDEX, generator: torch.Generator | None = None):
        super().__init__(generator)
        if degree < 0:
            raise ValueError(f"RandomRotate: degree must be >= 0, got {degree}")
        self.degree, self.ignore_index = degree, ignore_index

    def draw_angle(self) -> float:
        return self.uniform(-self.degree, self.degree)

    def __call__(self, sample: dict) -> dict:
        return self.rotate(sample, self.draw_angle())

    def rotate(self, sample: dict, angle: float) -> dict:
        img = pil_rgb(sample["image"])
        m = rotation_matrix(img.size[0], img.size[1], angle)
        affine = Image.Transform.AFFINE
        out = {k: v for k, v in sample.items() if k != "centroid"}
        out["image"] = image_tensor(img.transform(img.size, affine, m, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)))
        fills = {"label": self.ignore_index, "pos_h": POS_PAD}
        for key in _MAPS:
            if key in sample:
                im = pil_map(sample[key], key)
                im = im.transform(im.size, affine, m, Image.Resampling.NEAREST, fillcolor=fills[key])
                out[key] = from_pil_map(im)
        return out
