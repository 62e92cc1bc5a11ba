"""The original's blur augmentations (``--gblur``, ``--bblur``), on uint8 image tensors.

Both are applied to EVERY training image (there is no probability), with a sigma
drawn per image, and both end with the original's ``(result * 255).astype(uint8)``,
a truncation (so a flat region of value v may come out as v - 1).

* Gaussian (``--gblur``): sigma ~ U(0.15, 1.3); scikit-image 0.16's
  ``gaussian(..., multichannel=True)``: the image as float64 ``x * (1 / 255)``, then
  SciPy 1.4's separable Gaussian (rows, then columns; radius int(4 sigma + 0.5),
  edge pixels repeated), computed here in the same order of float64 operations.
* Bilateral (``--bblur``, wins over ``--gblur``): sigma_spatial ~ U(0.05, 0.75);
  scikit-image 0.16's ``denoise_bilateral(..., multichannel=True)`` with its
  defaults, quirks included: its spatial table is built on a grid one entry wider
  than the window and read with the window's stride (so the weights land on the
  wrong offsets), the colour table spans 0..255 while distances are on the 0..1
  scale (only near-identical colours get weight), outside pixels are 0, a
  one-colour image comes back as the uint8 input (and ``* 255`` then wraps modulo
  256), and pixels whose weights all underflow (0 / 0) become 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .transforms import RandomTransform, image_tensor


def _hwc(img: torch.Tensor) -> np.ndarray:
    t = image_tensor(img)
    if t.dtype != torch.uint8:
        raise TypeError(f"the original's blurs work on uint8 images, got {t.dtype}")
    return t.permute(1, 2, 0).contiguous().numpy()


def _to_uint8(x: np.ndarray) -> torch.Tensor:
    """The original's ``blurred *= 255; blurred.astype(np.uint8)`` (NaN -> 0, as on x86)."""
    x = np.nan_to_num(x * 255, nan=0.0)
    return torch.from_numpy(x.astype(np.uint8)).permute(2, 0, 1).contiguous()


def gaussian_kernel(sigma: float) -> np.ndarray:
    """SciPy's 1-D Gaussian weights, centre first: w[j] for offsets +-j."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    phi = phi / phi.sum()
    return phi[radius:]


def _correlate_nearest(x: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """SciPy's symmetric correlate1d (mode "nearest"): x*w0, then + (left + right) * w_j
    for j from the outermost tap inwards."""
    r = len(w) - 1
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="edge")

    def tap(offset):
        window = [slice(None)] * x.ndim
        window[axis] = slice(r + offset, r + offset + n)
        return xp[tuple(window)]

    out = tap(0) * w[0]
    for j in range(r, 0, -1):
        out += (tap(-j) + tap(j)) * w[j]
    return out


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    x = np.multiply(_hwc(img), 1.0 / 255, dtype=np.float64)
    w = gaussian_kernel(sigma)
    return _to_uint8(_correlate_nearest(_correlate_nearest(x, w, 0), w, 1))


def bilateral_blur(img: torch.Tensor, sigma_spatial: float, bins: int = 10000) -> torch.Tensor:
    raw = _hwc(img)
    win = max(5, 2 * int(math.ceil(3 * sigma_spatial)) + 1)
    lo, hi = raw.min(), raw.max()
    if lo == hi:
        # scikit-image returns the uint8 input itself; the original's "*= 255" wraps.
        return torch.from_numpy((raw.astype(np.int64) * 255 % 256).astype(np.uint8)).permute(2, 0, 1).contiguous()
    x = np.multiply(raw, 1.0 / 255, dtype=np.float64)
    rows, cols, dims = x.shape
    sigma_color = x.std()
    color_lut = np.exp(-0.5 * (np.linspace(0, hi, bins, endpoint=False) ** 2 / sigma_color ** 2))
    grid = np.arange(-win // 2, win // 2 + 1)  # win + 1 entries: scikit-image 0.16's grid
    rr, cc = np.meshgrid(grid, grid, indexing="ij")
    range_lut = np.exp(-0.5 * (np.hypot(rr, cc) ** 2 / sigma_spatial ** 2)).ravel()
    dist_scale = bins / dims / x.max()
    ext = (win - 1) // 2
    xp = np.pad(x, ((ext, ext), (ext, ext), (0, 0)))  # outside pixels are 0 (mode "constant")
    total = np.zeros_like(x)
    total_weight = np.zeros((rows, cols))
    with np.errstate(invalid="ignore", divide="ignore"):
        for wr in range(-ext, ext + 1):
            for wc in range(-ext, ext + 1):
                v = xp[ext + wr:ext + wr + rows, ext + wc:ext + wc + cols]
                t = x - v
                dist = np.sqrt((t[..., 0] * t[..., 0] + t[..., 1] * t[..., 1]) + t[..., 2] * t[..., 2])
                bin_ = np.minimum((dist * dist_scale).astype(np.int64), bins - 1)
                weight = range_lut[(wr + ext) * win + (wc + ext)] * color_lut[bin_]
                total += v * weight[..., None]
                total_weight += weight
        return _to_uint8(total / total_weight[..., None])


class SkimageGaussianBlur(RandomTransform):
    """``--gblur``: every image, sigma ~ U(0.15, 1.3)."""

    sigma_range = (0.15, 1.3)
    blur = staticmethod(gaussian_blur)

    def draw_sigma(self) -> float:
        return self.uniform(*self.sigma_range)

    def __call__(self, sample: dict) -> dict:
        return {**sample, "image": self.blur(sample["image"], self.draw_sigma())}


class SkimageBilateralBlur(SkimageGaussianBlur):
    """``--bblur``: every image, sigma_spatial ~ U(0.05, 0.75)."""

    sigma_range = (0.05, 0.75)
    blur = staticmethod(bilateral_blur)
