"""The original's colour jitter (``--color_aug x``), on uint8 image tensors.

The original builds ``ColorJitter(brightness=x, contrast=x, saturation=x, hue=x)``:
for each amount > 0, in this order, it draws brightness, contrast and saturation
factors from U(max(0, 1 - x), 1 + x) and a hue shift from U(-x, x), then applies the
steps in a random order (a shuffle), each on an 8-bit PIL image.  Each step here
computes exactly what Pillow computes (the arithmetic of its ImageEnhance, blend,
grey and HSV conversions, float32 and float64 as in its C code), so the 8-bit
rounding between steps is the original's too.
"""
from __future__ import annotations

import torch

from .transforms import RandomTransform, image_tensor


def pil_luma(img: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, as int32 (H, W)."""
    x = img.to(torch.int32)
    return (x[0] * 19595 + x[1] * 38470 + x[2] * 7471 + 0x8000) >> 16


def pil_blend(degenerate: torch.Tensor, img: torch.Tensor, alpha: float) -> torch.Tensor:
    """``Image.blend(degenerate, img, alpha)``: deg + alpha * (img - deg) in float32,
    clipped to [0, 255] and truncated to uint8."""
    a = torch.tensor(alpha, dtype=torch.float32)  # PIL passes alpha to C as a float
    deg = degenerate.to(torch.int32)
    diff = (img.to(torch.int32) - deg).to(torch.float32)
    return (deg.to(torch.float32) + a * diff).clamp_(0.0, 255.0).to(torch.uint8)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    return pil_blend(torch.zeros((), dtype=torch.int32), img, factor)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    # The degenerate image is the mean grey level, mean of L rounded half up.
    luma = pil_luma(img)
    mean = int(luma.sum(dtype=torch.int64)) / luma.numel()
    return pil_blend(torch.tensor(int(mean + 0.5), dtype=torch.int32), img, factor)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    return pil_blend(pil_luma(img).unsqueeze(0), img, factor)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's round() for x >= 0 (torch.round rounds half to even)."""
    f = torch.floor(x)
    return torch.where(x - f >= 0.5, f + 1.0, f)


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> HSV (3 x uint8 planes), float32/float64 steps as in its C code."""
    r, g, b = (c.to(torch.int32) for c in img)
    maxc = torch.maximum(r, torch.maximum(g, b))
    minc = torch.minimum(r, torch.minimum(g, b))
    grey = maxc == minc
    f32, f64 = torch.float32, torch.float64
    cr = (maxc - minc).to(f32).masked_fill_(grey, 1.0)
    s = cr / maxc.to(f32).clamp_(min=1.0)
    rc, gc, bc = ((maxc - c).to(f32) / cr for c in (r, g, b))
    h = torch.where(r == maxc, bc - gc,
                    torch.where(g == maxc, ((2.0 + rc.to(f64)) - bc.to(f64)).to(f32),
                                ((4.0 + gc.to(f64)) - rc.to(f64)).to(f32)))
    h = torch.fmod(h.to(f64) / 6.0 + 1.0, 1.0).to(f32)
    hh = (h.to(f64) * 255.0).to(torch.int32).clamp_(0, 255).masked_fill_(grey, 0)
    ss = (s.to(f64) * 255.0).to(torch.int32).clamp_(0, 255).masked_fill_(grey, 0)
    return torch.stack([hh, ss, maxc]).to(torch.uint8)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """PIL's HSV -> RGB (uint8), float32/float64 steps as in its C code."""
    h, s, v = (c.to(torch.float64) for c in hsv)
    f32, f64 = torch.float32, torch.float64
    x = h * 6.0 / 255.0
    i = torch.floor(x)
    f = (x - i).to(f32)
    fs = (s / 255.0).to(f32)
    p = _round_half_away(v * (1.0 - fs.to(f64))).clamp_(0, 255)
    q = _round_half_away(v * (1.0 - (fs * f).to(f64))).clamp_(0, 255)
    t = _round_half_away(v * (1.0 - fs.to(f64) * (1.0 - f.to(f64)))).clamp_(0, 255)
    sector = i.to(torch.int64) % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros((3,) + tuple(h.shape), dtype=f64)
    for k, chans in enumerate(table):
        sel = sector == k
        for c in range(3):
            out[c] = torch.where(sel, chans[c], out[c])
    grey = hsv[1] == 0
    out = torch.where(grey, v, out)
    return out.to(torch.uint8)


def hue_shift_byte(factor: float) -> int:
    """The original's ``np.uint8(factor * 255)``: truncated toward zero; a negative
    shift wraps modulo 256 (what that cast gave on x86 with the numpy of the time)."""
    return int(factor * 255) % 256


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    hsv = rgb_to_hsv(img)
    hsv[0] = ((hsv[0].to(torch.int32) + hue_shift_byte(factor)) % 256).to(torch.uint8)
    return hsv_to_rgb(hsv)


ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
          "hue": adjust_hue}


class ColorJitterPIL(RandomTransform):
    """The original's ColorJitter: uint8 in, uint8 out, label and positions untouched."""

    def __init__(self, brightness: float = 0.25, contrast: float = 0.25, saturation: float = 0.25,
                 hue: float = 0.25, generator: torch.Generator | None = None):
        super().__init__(generator)
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError(f"ColorJitterPIL: amounts must be >= 0 and hue <= 0.5, got "
                             f"{(brightness, contrast, saturation, hue)}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def draw(self) -> list[tuple[str, float]]:
        """The steps of one call, in the order they are applied: factors drawn in the
        order brightness, contrast, saturation, hue, then shuffled."""
        steps = []
        for name in ("brightness", "contrast", "saturation"):
            x = getattr(self, name)
            if x > 0:
                steps.append((name, self.uniform(max(0.0, 1.0 - x), 1.0 + x)))
        if self.hue > 0:
            steps.append(("hue", self.uniform(-self.hue, self.hue)))
        order = torch.randperm(len(steps), generator=self._gen()).tolist()
        return [steps[i] for i in order]

    def __call__(self, sample: dict) -> dict:
        img = image_tensor(sample["image"])
        if img.dtype != torch.uint8:
            raise TypeError(f"ColorJitterPIL works on uint8 images (8-bit rounding after each step), got {img.dtype}")
        for name, factor in self.draw():
            img = ADJUST[name](img, factor)
        return {**sample, "image": img}
