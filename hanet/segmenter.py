"""``hanet.Segmenter``: segment images with a HANet model in one call.

    seg = Segmenter.from_checkpoint("best.pt")          # ours, a training checkpoint, or an official .pth
    result = seg("street.png")                          # a path, PIL image, HxWx3 uint8 array, tensor, or a list
    result.labels                                       # (H, W) int64 train ids
    result.attention[4]                                 # (C, H_site) attention of HANet site 4, same forward pass
    result.overlay(alpha=0.5).save("overlay.png")       # PIL image in the class palette

Inputs are normalised exactly as the datasets do (``hanet.data.eval_transforms``:
uint8 / 255, ImageNet mean and std) and are treated as whole frames (row positions
of the 1024-row frame).  Tensors hold un-normalised RGB: uint8 0..255 or float in
[0, 1].  Same-size images go through the model ``batch_size`` at a time.

``protocol="standard"`` runs :func:`hanet.inference.predict_probs` (whole image,
sliding window, scales, flip as set); ``protocol="original"`` runs the original
``eval.py`` (:func:`hanet.inference_original.predict_original`) on the PIL image, one
image at a time (a float tensor reaches it rounded to 8-bit RGB, as a file would).  ``.attention`` comes from the forward pass that saw the whole image
at scale 1.0 unmirrored; where the settings make no such pass (sliding windows
smaller than the image, no scale 1.0) it is None.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from hanet.inference import InferenceConfig, predict_probs

_INFER_KEYS = tuple(f.name for f in fields(InferenceConfig) if f.name not in ("amp", "protocol"))


@dataclass
class SegmentationResult:
    """The segmentation of one image.

    ``labels`` (H, W) int64 class ids; ``probs`` (classes, H, W) float32 when asked
    for (under ``protocol="original"`` with sliding windows: the softmax of the
    original's merged logits, which has the same arg-max); ``attention`` {site index:
    (C_site, H_site) float32 in (0, 1)} for each active HANet site, or None;
    ``image`` the (H, W, 3) uint8 RGB input."""

    labels: np.ndarray
    image: np.ndarray
    palette: tuple = field(repr=False)
    names: tuple = field(repr=False)
    probs: np.ndarray | None = field(default=None, repr=False)
    attention: dict[int, np.ndarray] | None = field(default=None, repr=False)

    def mask(self) -> Image.Image:
        """The labels in the class palette (ignored / unknown ids black)."""
        from hanet.vis import colorize

        return Image.fromarray(colorize(self.labels, list(self.palette)))

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        """The input blended with the coloured labels: ``(1 - alpha) * image + alpha * mask``."""
        from hanet.vis import colorize, overlay

        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
        return Image.fromarray(overlay(self.image, colorize(self.labels, list(self.palette)), float(alpha)))


class _AttentionTap(nn.Module):
    """Stands in for the model inside the inference functions: passes every call
    through, and asks the model for its attention on the one call whose input is
    ``target`` (the whole image, unscaled, unmirrored), so that the attention comes
    from a forward pass the prediction uses, not an extra one."""

    def __init__(self, model: nn.Module, target: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.target = target
        self.attention: list[torch.Tensor] | None = None

    @property
    def aspp(self):  # hanet.inference_original.fixed_aspp_pool swaps the model's ASPP pooling
        return self.model.aspp

    def forward(self, images, pos_h=None):
        t = self.target
        if (t is not None and self.attention is None and images.shape == t.shape
                and torch.equal(images, t)):
            out = self.model(images, pos_h=pos_h, return_attention=True)
            self.attention = out.attention
            return out
        return self.model(images, pos_h=pos_h)


def _class_table(num_classes: int):
    from hanet.data import CITYSCAPES, ClassTable
    from hanet.data.labels import default_palette

    if num_classes == len(CITYSCAPES.names):
        return CITYSCAPES
    return ClassTable(names=tuple(f"class_{i}" for i in range(num_classes)), palette=default_palette(num_classes))


def _rgb_tensor(item) -> torch.Tensor:
    """One input as a (3, H, W) tensor, uint8 or float32 in [0, 1]; clear errors otherwise."""
    if isinstance(item, (str, Path)):
        from hanet.data.io import read_image

        path = Path(item).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Segmenter: {path}: no such image file")
        item = read_image(path)  # a damaged file: CorruptFileError naming it
    if isinstance(item, Image.Image):
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(item if item.mode == "RGB" else item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(f"Segmenter: a numpy image must be (H, W, 3) RGB, got shape {item.shape}")
        if item.dtype != np.uint8:
            raise TypeError(f"Segmenter: a numpy image must be uint8 (0..255), got dtype {item.dtype}")
        item = torch.from_numpy(np.ascontiguousarray(item)).permute(2, 0, 1)
    if isinstance(item, torch.Tensor):
        if item.dim() != 3 or item.shape[0] != 3:
            raise ValueError(f"Segmenter: an image tensor must be (3, H, W) (or a batch (B, 3, H, W)), "
                             f"got shape {tuple(item.shape)}")
        if item.dtype == torch.uint8:
            x = item.detach().cpu()
        elif item.dtype.is_floating_point:
            x = item.detach().cpu().float()
            if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
                raise ValueError("Segmenter: a float image tensor must hold un-normalised RGB in [0, 1] (the "
                                 "Segmenter normalises); got values in "
                                 f"[{x.min().item():.3g}, {x.max().item():.3g}]")
        else:
            raise TypeError(f"Segmenter: an image tensor must be uint8 or floating point, got {item.dtype}")
        if min(x.shape[1:]) < 1:
            raise ValueError(f"Segmenter: empty image, shape {tuple(x.shape)}")
        return x
    raise TypeError(f"Segmenter: cannot segment a {type(item).__name__}; pass a path, a PIL image, an (H, W, 3) "
                    "uint8 numpy array, a (3, H, W) / (B, 3, H, W) tensor, or a list of them")


def _as_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    if x.dtype != torch.uint8:
        x = (x * 255).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


class Segmenter:
    """Segments images with a HANet model (see the module docstring).

    ``Segmenter(model, device=None, amp="none", protocol="standard", classes=None,
    batch_size=4, config=None, **infer)``: ``device`` None keeps the model where it is
    ("auto": CUDA when available); ``infer`` are :class:`~hanet.inference.InferenceConfig`
    fields (``mode``, ``crop_size``, ``overlap``, ``scales``, ``flip``, ``crop_batch``,
    ``channels_last``, ``fixed_aspp_pool``), or pass a whole ``config``; ``classes`` a
    :class:`~hanet.data.ClassTable` (default: Cityscapes for 19 classes).  The model is
    put in eval mode.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, amp: str = "none",
                 protocol: str = "standard", classes=None, batch_size: int = 4,
                 config: InferenceConfig | None = None, **infer):
        unknown = sorted(set(infer) - set(_INFER_KEYS))
        if unknown:
            raise TypeError(f"Segmenter: unknown inference setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(_INFER_KEYS)}")
        if config is not None:
            if infer or amp != "none" or protocol != "standard":
                raise TypeError("Segmenter: pass either config= or amp/protocol/inference settings, not both")
            if not isinstance(config, InferenceConfig):
                raise TypeError(f"Segmenter: config must be an InferenceConfig, got {type(config).__name__}")
        self.config = config if config is not None else InferenceConfig(amp=amp, protocol=protocol, **infer)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Segmenter: batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        if device is not None:
            from hanet.evaluation import pick_device

            model = model.to(pick_device(str(device)))
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.sites = [i for i in range(5) if getattr(model, f"hanet{i}", None) is not None]
        self.classes = classes if classes is not None else _class_table(model.config.num_classes)
        from hanet.data import eval_transforms

        self._normalize = eval_transforms()  # exactly what the datasets apply

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", amp: str = "none",
                        protocol: str = "standard", backend: str | None = None, **kwargs) -> "Segmenter":
        """A Segmenter for ``path``: our checkpoint, a training checkpoint or an official
        HANet file (:func:`hanet.models.load`); ``backend`` picks the HANet op backend."""
        from hanet.models import load

        model = load(str(path), **({"backend": backend} if backend else {}))
        return cls(model, device=device, amp=amp, protocol=protocol, **kwargs)

    def normalize(self, image) -> torch.Tensor:
        """(3, H, W) float32 model input of one image, as the datasets normalise it."""
        return self._norm(_rgb_tensor(image))

    def _norm(self, rgb: torch.Tensor) -> torch.Tensor:
        return self._normalize({"image": rgb})["image"]

    # ------------------------------------------------------------------ calls
    def __call__(self, images, return_probs: bool = False, return_attention: bool = True):
        """One :class:`SegmentationResult` for one image, a list for a list (or a
        (B, 3, H, W) tensor)."""
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.dim() == 4)
        items = [images] if single else list(images)
        results: list[SegmentationResult | None] = [None] * len(items)
        pending: dict[tuple, list[tuple[int, torch.Tensor]]] = {}
        for i, item in enumerate(items):
            rgb = _rgb_tensor(item)
            if self.config.protocol == "original":
                results[i] = self._one_original(rgb, return_probs, return_attention)
                continue
            group = pending.setdefault(tuple(rgb.shape), [])
            group.append((i, rgb))
            if len(group) == self.batch_size:
                self._flush(pending.pop(tuple(rgb.shape)), results, return_probs, return_attention)
        for group in pending.values():
            self._flush(group, results, return_probs, return_attention)
        return results[0] if single else results

    def predict_batch(self, images: torch.Tensor, pos_h: torch.Tensor | None = None, return_probs: bool = False,
                      return_attention: bool = True) -> dict:
        """Normalised images (B, 3, H, W) (``pos_h`` (B, H) or (B, H, W) row positions,
        None for whole frames) under the standard protocol, in one call of
        :func:`~hanet.inference.predict_probs`.  Returns tensors on the model's device:
        ``labels`` (B, H, W) int64, ``probs`` (B, classes, H, W) or None, ``attention``
        {site: (B, C, H_site)} or None."""
        if self.config.protocol != "standard":
            raise ValueError("Segmenter.predict_batch runs protocol='standard'; the original protocol takes "
                             "the image itself (call the Segmenter on it)")
        images = images.to(self.device)
        tap = _AttentionTap(self.model, images if return_attention and self.sites else None)
        probs = predict_probs(tap, images, pos_h, self.config)
        return {"labels": probs.argmax(1), "probs": probs if return_probs else None,
                "attention": self._sites(tap.attention)}

    def _sites(self, attention):
        return None if attention is None else dict(zip(self.sites, attention))

    def _result(self, rgb, labels, probs, attention) -> SegmentationResult:
        return SegmentationResult(
            labels=labels.cpu().numpy().astype(np.int64), image=_as_uint8_hwc(rgb),
            palette=tuple(self.classes.palette), names=tuple(self.classes.names),
            probs=None if probs is None else probs.float().cpu().numpy(),
            attention=None if attention is None else {s: a.float().cpu().numpy() for s, a in attention.items()})

    def _flush(self, group, results, return_probs, return_attention):
        batch = torch.stack([self._norm(rgb) for _, rgb in group])
        out = self.predict_batch(batch, None, return_probs, return_attention)
        for b, (i, rgb) in enumerate(group):
            att = None if out["attention"] is None else {s: a[b] for s, a in out["attention"].items()}
            results[i] = self._result(rgb, out["labels"][b], None if out["probs"] is None else out["probs"][b], att)

    def _one_original(self, rgb, return_probs, return_attention) -> SegmentationResult:
        from hanet.inference_original import _to_input, predict_original

        image = Image.fromarray(_as_uint8_hwc(rgb))
        target = _to_input(image, self.device) if return_attention and self.sites else None
        tap = _AttentionTap(self.model, target)
        labels, scores = predict_original(tap, image, self.config)
        probs = None
        if return_probs:
            probs = torch.from_numpy(scores)
            if self.config.mode == "sliding":  # the original merges raw logits
                probs = torch.softmax(probs, dim=0)
        att = self._sites(tap.attention)
        att = None if att is None else {s: a[0] for s, a in att.items()}
        return self._result(rgb, torch.from_numpy(np.asarray(labels)), probs, att)
