"""Inference modes: whole image, sliding window, multi-scale with horizontal flip.

Every mode returns class probabilities (softmax) at the input resolution.  The
row-position map follows the image: each sliding-window crop gets the absolute
row positions of the rows it covers (as in training), and a rescaled image keeps
the positions of the frame rows its rows came from.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hanet.data.position import POS_PAD  # the position of padding rows, as the training crops use
from hanet.inference_original import fixed_aspp_pool
from hanet.models.deeplab import logits_of
from hanet.models.pos_encoding import whole_frame_positions

PROTOCOLS = ("standard", "original")


@dataclass
class InferenceConfig:
    """How to predict: the one inference configuration of the library, ``hanet.Segmenter``
    and the ``infer:`` section of the eval/submit/predict configs (a config file sets its
    fields one by one: :meth:`to_inference` gives the checked result)."""
    mode: str = "whole"  # whole | sliding
    crop_size: tuple[int, int] = (1024, 1024)  # sliding window (H, W)
    overlap: float = 1 / 3  # fraction of the crop shared by neighbouring windows (the original's 1/3)
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    crop_batch: int = 4  # windows per forward pass: bounds memory
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    # "standard": this module; "original": the original eval.py, quirks included (hanet.inference_original).
    protocol: str = "standard"
    fixed_aspp_pool: bool = False  # the original's --fixed_aspp_pool: ASPP image pooling = AvgPool2d(105)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"infer.protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.mode not in ("whole", "sliding"):
            raise ValueError(f"inference mode must be 'whole' or 'sliding', got {self.mode!r}")
        if isinstance(self.crop_size, int):
            self.crop_size = (self.crop_size, self.crop_size)
        self.crop_size = tuple(int(v) for v in self.crop_size)
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be a positive int or (H, W), got {self.crop_size}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers, got {self.scales}")
        if self.crop_batch < 1:
            raise ValueError(f"crop_batch must be >= 1, got {self.crop_batch}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r}")

    def to_inference(self) -> "InferenceConfig":
        """A checked copy (``__post_init__`` again): what to use after fields were set one by one."""
        return dataclasses.replace(self, scales=list(self.scales))


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _forward_probs(model, images, pos_h, cfg: InferenceConfig) -> torch.Tensor:
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(images.device, cfg.amp):
        logits = logits_of(model(images, pos_h=pos_h))
    return torch.softmax(logits.float(), dim=1)


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride)) + [size - crop]
    return sorted(set(starts))


def sliding_probs(model, images: torch.Tensor, pos_h: torch.Tensor, cfg: InferenceConfig) -> torch.Tensor:
    """Sliding-window probabilities.  Windows overlap by ``cfg.overlap`` of the
    crop; an image smaller than the crop is padded (image 0, position 128) and the
    padding cut away again."""
    B, _, H, W = images.shape
    ch, cw = cfg.crop_size
    pad_h, pad_w = max(ch - H, 0), max(cw - W, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
        pos_h = F.pad(pos_h, (0, pad_h), value=POS_PAD)
    Hp, Wp = images.shape[2:]
    sh = max(1, int(math.ceil(ch * (1 - cfg.overlap))))
    sw = max(1, int(math.ceil(cw * (1 - cfg.overlap))))
    windows = [(y, x) for y in _window_starts(Hp, ch, sh) for x in _window_starts(Wp, cw, sw)]
    probs = None
    counts = torch.zeros(1, 1, Hp, Wp, device=images.device)
    for b0 in range(0, len(windows), max(1, cfg.crop_batch // B)):
        group = windows[b0:b0 + max(1, cfg.crop_batch // B)]
        crops = torch.cat([images[:, :, y:y + ch, x:x + cw] for y, x in group])
        crop_pos = torch.cat([pos_h[:, y:y + ch] for y, _ in group])
        out = _forward_probs(model, crops, crop_pos, cfg)
        if probs is None:
            probs = torch.zeros(B, out.shape[1], Hp, Wp, device=images.device)
        for i, (y, x) in enumerate(group):
            probs[:, :, y:y + ch, x:x + cw] += out[i * B:(i + 1) * B]
            counts[:, :, y:y + ch, x:x + cw] += 1
    return (probs / counts)[:, :, :H, :W]


def _scaled_positions(pos_h: torch.Tensor, height: int) -> torch.Tensor:
    """(B, H) positions resampled (nearest) to `height` rows."""
    if pos_h.shape[1] == height:
        return pos_h
    return F.interpolate(pos_h[:, None].float(), size=height, mode="nearest")[:, 0].long()


@torch.inference_mode()
def predict_probs(model, images: torch.Tensor, pos_h: torch.Tensor | None = None,
                  cfg: InferenceConfig | None = None) -> torch.Tensor:
    """Class probabilities (B, classes, H, W) of normalised images (B, 3, H, W).

    ``pos_h``: row positions (B, H) or (B, H, W) (row // 8 of the 1024-row frame);
    None treats each image as a whole frame.  Probabilities are averaged over
    ``cfg.scales`` and, with ``cfg.flip``, horizontal flips.
    """
    cfg = cfg or InferenceConfig()
    if cfg.protocol != "standard":
        raise ValueError("predict_probs runs infer.protocol=standard; the original protocol works on the PIL "
                         "image as read (hanet.inference_original.predict_original)")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    B, _, H, W = images.shape
    if pos_h is None:
        pos_h = whole_frame_positions(B, H, images.device)
    elif pos_h.dim() == 3:
        pos_h = pos_h[:, :, 0]
    pos_h = pos_h.to(images.device, torch.long)
    with fixed_aspp_pool(model, cfg.fixed_aspp_pool):
        return _multi_scale_probs(model, images, pos_h, cfg)


def _multi_scale_probs(model, images, pos_h, cfg: InferenceConfig) -> torch.Tensor:
    H, W = images.shape[2:]
    total = None
    n = 0
    for s in cfg.scales:
        hs, ws = max(1, round(H * s)), max(1, round(W * s))
        scaled = images if (hs, ws) == (H, W) else F.interpolate(images, size=(hs, ws), mode="bilinear",
                                                                  align_corners=False)
        pos_s = _scaled_positions(pos_h, hs)
        for flip in ([False, True] if cfg.flip else [False]):
            x = scaled.flip(-1) if flip else scaled
            if cfg.mode == "sliding":
                p = sliding_probs(model, x, pos_s, cfg)
            else:
                p = _forward_probs(model, x, pos_s, cfg)
            if flip:
                p = p.flip(-1)
            if p.shape[2:] != (H, W):
                p = F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)
            total = p if total is None else total + p
            n += 1
    return total / n
