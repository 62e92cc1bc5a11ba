"""Pictures: colour masks, overlays and height-attention heat maps (uint8 HxWx3 arrays)."""
from __future__ import annotations

import numpy as np
import torch


def colorize(label: np.ndarray | torch.Tensor, palette: list[tuple[int, int, int]], ignore_index: int = 255) -> np.ndarray:
    """Train-id map (H, W) -> colour image (H, W, 3); ignored pixels black."""
    label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    lut[ignore_index] = 0
    return lut[label.astype(np.int64).clip(0, 255)]


def overlay(image: np.ndarray, mask_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image.astype(np.float32) * (1 - alpha) + mask_rgb.astype(np.float32) * alpha).round().astype(np.uint8)


def _viridis_like(v: np.ndarray) -> np.ndarray:
    """A perceptually ordered dark-blue -> green -> yellow colour ramp for v in [0, 1]."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)
    x = np.clip(v, 0, 1) * (len(stops) - 1)
    i = np.minimum(x.astype(np.int64), len(stops) - 2)
    t = (x - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t).round().astype(np.uint8)


def attention_heatmap(attention: np.ndarray | torch.Tensor, cell: int = 1, height: int | None = None) -> np.ndarray:
    """(C, H) attention in [0, 1] -> image with rows = image rows (top at the top) and
    columns = channels; `height` rescales the rows (nearest)."""
    a = attention.detach().float().cpu().numpy() if isinstance(attention, torch.Tensor) else np.asarray(attention)
    img = _viridis_like(a.T)  # (H, C, 3)
    if height is not None and height != img.shape[0]:
        rows = (np.arange(height) * img.shape[0] // height).clip(0, img.shape[0] - 1)
        img = img[rows]
    if cell > 1:
        img = np.repeat(img, cell, axis=1)
    return img


def denormalize(image: torch.Tensor, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> np.ndarray:
    """Normalised (3, H, W) tensor -> uint8 (H, W, 3)."""
    m = torch.tensor(mean, device=image.device)[:, None, None]
    s = torch.tensor(std, device=image.device)[:, None, None]
    x = (image.float() * s + m).clamp(0, 1)
    return (x.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
