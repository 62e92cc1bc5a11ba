"""The original HANet ``eval.py`` inference protocol, reproduced exactly (``infer.protocol: original``).

The released numbers were measured with this protocol, quirks included, so a user
who wants the paper's figures needs it pixel for pixel.  What the original does
(``--inference_mode pooling`` is our ``mode: whole``, ``sliding`` is ``sliding``):

Whole image ("pooling")
  * for each flip (unflipped, then the image mirrored with PIL) and each scale s:
    the PIL image resized to ``(int(W*s), int(H*s))`` with PIL's default filter
    (bicubic; scale 1.0 is not resized), ``ToTensor`` + ``Normalize``;
  * one forward pass with the position map of the whole 1024-row frame, whatever
    the scale;
  * the **logits** are resized to the frame size (bilinear, half-pixel), mirrored
    back for the flipped pass, then soft-maxed;
  * a running mean in float64: ``mean += (p - mean) / k`` over the passes in the
    order above; the label is ``mean.max(1)``.
  (The original fixes the frame to 1024x2048 and 19 classes; we use the image's
  size and the model's classes, which is the same on Cityscapes.)

Sliding window
  * for each scale: the PIL image resized to ``(int(W*s), int(H*s))`` with PIL
    bilinear (also at scale 1.0), and its PIL mirror;
  * square windows of ``int(crop * max(s, 1))`` pixels, stride
    ``ceil(tile * (1 - overlap))``; ``ceil((W - tile) / stride) + 1`` columns of
    windows (outer loop) times ``ceil((H - tile) / stride) + 1`` rows; each window
    is pushed back inside the image and **clipped, not padded**, where the image is
    smaller than the tile;
  * each window is one forward pass whose positions are the rows
    ``int(y1 * 1024/h) : int(y2 * 1024/h)`` of the 1024-row frame's map;
  * raw **logits** (not probabilities) are summed per pixel in float64 and divided
    by a count array that the original indexes as ``count[y1:y2, x1:x2] += 1`` on a
    (classes, h, w) array: the window's *row* range selects classes and its
    *column* range selects rows.  The divisor is therefore wrong wherever windows
    overlap (it depends on the pixel's row and the class, not on its coverage);
  * every class plane is mirrored back (flipped pass) and resized to the frame
    with OpenCV ``INTER_LINEAR``; planes are averaged over flips, then over scales
    (``np.mean``), and the label is their arg-max.

``infer.protocol: standard`` (:mod:`hanet.inference`) is the corrected protocol:
probabilities merged, windows of a fixed size with padding, true coverage counts,
one interpolation library.  ``docs/eval_protocol.md`` lists the differences and
measures them.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hanet.data.position import FRAME_HEIGHT, POS_FACTOR
from hanet.models.deeplab import logits_of

_MEAN_STD = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
FIXED_ASPP_POOL = 105  # --fixed_aspp_pool: the ASPP pooling size of an 840x840 training crop at OS8


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError("infer.protocol=original needs OpenCV (the original resizes scores with it): "
                          "pip install opencv-python-headless") from None
    return cv2


def _to_input(image: Image.Image, device) -> torch.Tensor:
    # torchvision's ToTensor + Normalize, exactly as the original prepares an input.
    from torchvision.transforms import functional as TF

    return TF.normalize(TF.to_tensor(image), *_MEAN_STD)[None].to(device)


def frame_positions(rows: slice | None = None) -> torch.Tensor:
    """(1, n) rows of the original's position map of the 1024-row frame (row // 8)."""
    pos = torch.arange(FRAME_HEIGHT, dtype=torch.int64) // POS_FACTOR
    return (pos if rows is None else pos[rows])[None]


def sliding_windows(height: int, width: int, crop_size: int, overlap: float, scale: float) -> list[tuple]:
    """The original's windows ``(x1, y1, x2, y2)`` on an image of (height, width)
    scaled by ``scale`` (columns of windows outer, rows inner)."""
    tile = int(crop_size * max(scale, 1.0))
    stride = math.ceil(tile * (1 - overlap))
    n_cols = int(math.ceil((width - tile) / stride) + 1)
    n_rows = int(math.ceil((height - tile) / stride) + 1)
    if n_cols < 1 or n_rows < 1:
        # The original has no window here and fails; say why instead.
        raise ValueError(f"infer.protocol=original, sliding: a {width}x{height} (WxH) image at scale {scale} gets "
                         f"no {tile}-pixel window (the original needs the image to be larger than about a third "
                         f"of infer.crop_size); lower infer.crop_size")
    windows = []
    for c in range(n_cols):
        for r in range(n_rows):
            x2 = min(c * stride + tile, width)
            y2 = min(r * stride + tile, height)
            windows.append((max(x2 - tile, 0), max(y2 - tile, 0), x2, y2))
    return windows


def window_positions(y1: int, y2: int, height: int) -> torch.Tensor:
    """The frame-map rows the original gives a window spanning rows [y1, y2) of an
    image of ``height`` rows: ``int(y * (1024 / height))`` (truncated)."""
    factor = FRAME_HEIGHT / height
    return frame_positions(slice(int(y1 * factor), int(y2 * factor)))


def overlap_divisor(windows: list[tuple], classes: int, height: int) -> np.ndarray:
    """The original's count array, (classes, height, 1) float64: for each window it
    adds 1 at ``[y1:y2, x1:x2]`` of a (classes, height, width) array, i.e. to the
    classes in [y1, y2) and the rows in [x1, x2) (all columns, so one column is kept)."""
    count = np.zeros((classes, height, 1), dtype=np.float64)
    for x1, y1, x2, y2 in windows:
        count[y1:y2, x1:x2] += 1
    return count


def merge_windows(logits: list[np.ndarray], windows: list[tuple], classes: int, height: int,
                  width: int) -> np.ndarray:
    """Summed window logits (float64) divided by the original's overlap divisor."""
    total = np.zeros((classes, height, width), dtype=np.float64)
    for out, (x1, y1, x2, y2) in zip(logits, windows):
        total[:, y1:y2, x1:x2] += out
    with np.errstate(divide="ignore", invalid="ignore"):  # the original divides by zero where no window counted
        return total / overlap_divisor(windows, classes, height)


def _resize_planes(scores: np.ndarray, flip: bool, width: int, height: int) -> list[np.ndarray]:
    cv2 = _cv2()
    return [cv2.resize(np.fliplr(p) if flip else p, (width, height), interpolation=cv2.INTER_LINEAR) for p in scores]


def _forward(model, x: torch.Tensor, pos_h: torch.Tensor, amp: str) -> torch.Tensor:
    from hanet.inference import autocast

    with autocast(x.device, amp):
        return logits_of(model(x, pos_h=pos_h.to(x.device))).float()


def sliding_scores(model, image: Image.Image, scales, flip: bool, crop_size: int, overlap: float,
                   amp: str = "none") -> np.ndarray:
    """(classes, H, W) float64 scores of the original's sliding-window inference."""
    device = next(model.parameters()).device
    width, height = image.size
    per_scale = []
    for s in scales:
        scaled = image.resize((int(width * s), int(height * s)), Image.BILINEAR)
        views = [scaled, scaled.transpose(Image.FLIP_LEFT_RIGHT)] if flip else [scaled]
        sw, sh = scaled.size
        windows = sliding_windows(sh, sw, crop_size, overlap, s)
        per_view = []
        for mirrored, view in enumerate(views):
            x = _to_input(view, device)
            logits = [_forward(model, x[:, :, y1:y2, x1:x2].contiguous(), window_positions(y1, y2, sh), amp)[0].cpu().numpy()
                      for x1, y1, x2, y2 in windows]
            merged = merge_windows(logits, windows, logits[0].shape[0], sh, sw)
            per_view.append(_resize_planes(merged, bool(mirrored), width, height))
        per_scale.append(np.mean(per_view, axis=0))
    return np.mean(per_scale, axis=0)


def whole_scores(model, image: Image.Image, scales, flip: bool, amp: str = "none") -> torch.Tensor:
    """(classes, H, W) float64 running-mean probabilities of the original's whole-image inference."""
    device = next(model.parameters()).device
    width, height = image.size
    mean, passes = None, 0
    for mirrored in ([False, True] if flip else [False]):
        view = image.transpose(Image.FLIP_LEFT_RIGHT) if mirrored else image
        for s in scales:
            # PIL's default resize filter (bicubic); the original leaves scale 1.0 alone.
            scaled = view if s == 1.0 else view.resize((int(width * s), int(height * s)), Image.BICUBIC)
            logits = _forward(model, _to_input(scaled, device), frame_positions(), amp).cpu()
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            if mirrored:
                logits = logits.flip(-1)
            probs = torch.softmax(logits, dim=1)
            if mean is None:
                mean = torch.zeros(probs.shape, dtype=torch.float64)
            passes += 1
            mean.add_((probs - mean) / passes)
    return mean[0]


class _FixedPool(nn.AvgPool2d):
    """--fixed_aspp_pool: AvgPool2d(105) in place of global pooling; a clear error
    where the features are smaller than the pool (the original fails there)."""

    def forward(self, x):
        if min(x.shape[2:]) < FIXED_ASPP_POOL:
            raise ValueError(f"infer.fixed_aspp_pool: the ASPP input is {x.shape[2]}x{x.shape[3]}, smaller than "
                             f"the fixed {FIXED_ASPP_POOL}x{FIXED_ASPP_POOL} pool (use larger windows or scales)")
        return super().forward(x)


@contextlib.contextmanager
def fixed_aspp_pool(model, enabled: bool):
    """Temporarily replaces the ASPP image pooling with AvgPool2d(105) (the original's --fixed_aspp_pool)."""
    if not enabled:
        yield
        return
    aspp = model.aspp
    saved = aspp.img_pooling
    aspp.img_pooling = _FixedPool(FIXED_ASPP_POOL)
    try:
        yield
    finally:
        aspp.img_pooling = saved


@torch.inference_mode()
def predict_original(model, image: Image.Image, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Labels (H, W) int64 and scores (classes, H, W) float64 of one PIL image under the
    original's protocol; ``cfg`` is an :class:`~hanet.inference.InferenceConfig`."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"infer.protocol=original takes the PIL image as read from disk, got {type(image).__name__}")
    image = image.convert("RGB")
    with fixed_aspp_pool(model, cfg.fixed_aspp_pool):
        if cfg.mode == "sliding":
            crop = cfg.crop_size
            if crop[0] != crop[1]:
                raise ValueError(f"infer.protocol=original uses square windows (--crop_size N), got crop_size {list(crop)}")
            scores = sliding_scores(model, image, cfg.scales, cfg.flip, crop[0], cfg.overlap, cfg.amp)
            return np.argmax(scores, axis=0), scores
        scores = whole_scores(model, image, cfg.scales, cfg.flip, cfg.amp)
        return scores.max(0).indices.numpy(), scores.numpy()
