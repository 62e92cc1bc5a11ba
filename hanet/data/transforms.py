"""Joint transforms that keep an image, its label and its position map aligned.

A transform takes and returns a sample dict: ``image`` (a PIL image or a uint8
3xHxW tensor; float in [0, 1] after the photometric steps, normalised float after
:class:`ToTensorNormalize`), ``label`` and ``pos_h`` ((H, W) integer tensors;
either may be absent, e.g. for inference) and optionally ``centroid`` ((row, col)
that a class-uniform crop must keep).  Geometry is applied to all of them with the
same parameters: the image bilinearly (antialiased when shrinking), the label and
position map by nearest neighbour with the "nearest-exact" rule (output pixel i
reads source pixel floor((i + 0.5) * in / out), the pixel under its centre, which
is where the bilinear sample is taken: on a ramp image the two agree to within 1).
The geometric steps go first, as in the builders below.

The pipeline of the original recipe is ``train_transforms(...)``, the original's
own steps in its order: RandomSizeAndCrop (optional pre-size, random scale,
square crop with centred padding or, with ``crop_nopad``, a shrunken window),
Resize to the crop size, horizontal flip, optional rotation (``rrotate``), colour
jitter of brightness, contrast, saturation and hue (``color_aug``), Gaussian or
bilateral blur of every image, then ``ToTensorNormalize`` (float, ImageNet
mean/std; label and pos_h as int64).  Those steps compute what the original's
PIL / scikit-image calls compute (:mod:`.joint_geometry`, :mod:`.color_jitter`,
:mod:`.blur`).  The classes below (RandomScale, RandomCrop, ColorJitter,
RandomGaussianBlur) are simpler tensor versions kept for other pipelines.

Randomness: every random transform draws from its ``generator`` when one is given,
else from torch's global RNG.  Use the global RNG under a DataLoader: PyTorch seeds
it per worker (base seed + worker id, a new base seed each epoch), so workers never
repeat each other, and a training loop that seeds it per sample (as
``hanet.training`` does) makes augmentation reproducible.  A given ``generator`` is
copied into every worker process; so that workers do not all draw the same
numbers, it is re-seeded once per worker from (its seed, the worker's seed).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import get_worker_info
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .position import POS_PAD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255

_reseeded: dict[int, int] = {}  # id(generator) -> worker seed it was re-seeded for, in this process


def image_tensor(image) -> torch.Tensor:
    """A PIL image or a 3xHxW tensor as a 3xHxW tensor (uint8 for PIL)."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(image.convert("RGB") if image.mode != "RGB" else image)
    if isinstance(image, torch.Tensor) and image.dim() == 3:
        return image
    raise TypeError(f"expected a PIL image or a CxHxW tensor, got {type(image).__name__} "
                    f"{tuple(getattr(image, 'shape', ()))}")


def _size(sample: dict) -> tuple[int, int]:
    img = sample["image"]
    h, w = (img.size[1], img.size[0]) if isinstance(img, Image.Image) else tuple(image_tensor(img).shape[-2:])
    for key in ("label", "pos_h"):
        if key in sample and tuple(sample[key].shape) != (h, w):
            raise ValueError(f"sample {key} is {tuple(sample[key].shape)} but the image is {(h, w)}")
    return h, w


class RandomTransform:
    """Base of the random transforms: draws from ``generator`` or the global RNG."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def _gen(self) -> torch.Generator | None:
        g = self.generator
        if g is not None:
            info = get_worker_info()
            if info is not None and _reseeded.get(id(g)) != info.seed:
                # Copies of one generator in several workers would draw identical numbers.
                g.manual_seed((g.initial_seed() * 1_000_003 + info.seed) % (2**63))
                _reseeded[id(g)] = info.seed
        return g

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self._gen()))

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high], both included."""
        return int(torch.randint(low, high + 1, (), generator=self._gen()))

    def chance(self, p: float) -> bool:
        return p >= 1.0 or (p > 0.0 and float(torch.rand((), generator=self._gen())) < p)


def _nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    """Source index of each output pixel, nearest-exact: floor((i + 0.5) * n_in / n_out)."""
    idx = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor().long()
    return idx.clamp_(max=n_in - 1)


class RandomScale(RandomTransform):
    """Rescales by a factor drawn uniformly from [scale_min, scale_max] (the same
    factor for both axes; sizes are rounded)."""

    def __init__(self, scale_min: float = 0.5, scale_max: float = 2.0, generator: torch.Generator | None = None):
        super().__init__(generator)
        if not 0 < scale_min <= scale_max:
            raise ValueError(f"RandomScale: need 0 < scale_min <= scale_max, got {scale_min}, {scale_max}")
        self.scale_min, self.scale_max = scale_min, scale_max

    def __call__(self, sample: dict) -> dict:
        h, w = _size(sample)
        f = self.uniform(self.scale_min, self.scale_max)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        if (nh, nw) == (h, w):
            return sample
        out = dict(sample)
        out["image"] = TF.resize(image_tensor(sample["image"]), [nh, nw],
                                 interpolation=InterpolationMode.BILINEAR, antialias=True)
        rows, cols = _nearest_index(h, nh), _nearest_index(w, nw)
        for key in ("label", "pos_h"):
            if key in sample:
                out[key] = sample[key].index_select(0, rows).index_select(1, cols)
        if sample.get("centroid") is not None:
            r, c = sample["centroid"]
            out["centroid"] = (min(nh - 1, int((r + 0.5) * nh / h)), min(nw - 1, int((c + 0.5) * nw / w)))
        return out


def _crop_pad(t: torch.Tensor, y0: int, x0: int, th: int, tw: int, fill) -> torch.Tensor:
    """Window [y0, y0+th) x [x0, x0+tw) of t (..., H, W); outside t it is ``fill``
    (a number, or one number per channel)."""
    h, w = t.shape[-2:]
    if y0 >= 0 and x0 >= 0 and y0 + th <= h and x0 + tw <= w:
        return t[..., y0:y0 + th, x0:x0 + tw]
    out = t.new_empty(t.shape[:-2] + (th, tw))
    if isinstance(fill, (tuple, list)):
        for c, v in enumerate(fill):
            out[c].fill_(v)
    else:
        out.fill_(fill)
    sy0, sy1, sx0, sx1 = max(0, y0), min(h, y0 + th), max(0, x0), min(w, x0 + tw)
    if sy0 < sy1 and sx0 < sx1:
        out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = t[..., sy0:sy1, sx0:sx1]
    return out


class RandomCrop(RandomTransform):
    """A ``size`` (h, w) window at a random place.  Along an axis where the image is
    smaller than the window, the image lands at a random offset inside it and the
    rest is padding (image ``image_fill``: 0, a value per channel, or "mean" for the
    ImageNet mean, on the 0..255 scale; label 255; position 128).

    With ``sample["centroid"]`` = (row, col), the window is drawn among those that
    contain that pixel (class-uniform sampling's crop around a class point).
    """

    def __init__(self, size: int | Sequence[int], image_fill: int | Sequence[int] | str = 0,
                 label_fill: int = IGNORE_INDEX, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be a positive int or (h, w), got {size!r}")
        if image_fill == "mean":
            image_fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
        self.image_fill = image_fill
        self.label_fill = label_fill

    def __call__(self, sample: dict) -> dict:
        h, w = _size(sample)
        th, tw = self.size
        ylo, yhi = min(0, h - th), max(0, h - th)
        xlo, xhi = min(0, w - tw), max(0, w - tw)
        centroid = sample.get("centroid")
        if centroid is not None:
            cy, cx = min(max(int(centroid[0]), 0), h - 1), min(max(int(centroid[1]), 0), w - 1)
            ylo, yhi = max(ylo, cy - th + 1), min(yhi, cy)
            xlo, xhi = max(xlo, cx - tw + 1), min(xhi, cx)
        y0, x0 = self.randint(ylo, yhi), self.randint(xlo, xhi)
        out = dict(sample)
        out.pop("centroid", None)
        img = image_tensor(sample["image"])
        fill = self.image_fill
        if img.dtype.is_floating_point:  # fills are given on the 0..255 scale
            fill = [v / 255.0 for v in fill] if isinstance(fill, (tuple, list)) else fill / 255.0
        out["image"] = _crop_pad(img, y0, x0, th, tw, fill)
        if "label" in sample:
            out["label"] = _crop_pad(sample["label"], y0, x0, th, tw, self.label_fill)
        if "pos_h" in sample:
            out["pos_h"] = _crop_pad(sample["pos_h"], y0, x0, th, tw, POS_PAD)
        return out


class RandomHorizontalFlip(RandomTransform):
    """Mirrors image, label and position map left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.p = p

    def __call__(self, sample: dict) -> dict:
        if not self.chance(self.p):
            return sample
        out = dict(sample)
        out["image"] = image_tensor(sample["image"]).flip(-1)
        for key in ("label", "pos_h"):
            if key in sample:
                out[key] = sample[key].flip(-1)
        if sample.get("centroid") is not None:
            r, c = sample["centroid"]
            out["centroid"] = (r, out["image"].shape[-1] - 1 - c)
        return out


def float_image(image) -> torch.Tensor:
    """The image as a new float32 3xHxW tensor in [0, 1] (uint8 is divided by 255)."""
    img = image_tensor(image)
    return img.to(torch.float32).div_(255.0) if not img.dtype.is_floating_point else img.to(torch.float32).clone()


def _gray(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of a float 3xHxW image, 1xHxW (what torchvision's grayscale uses)."""
    return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0)


class ColorJitter(RandomTransform):
    """Brightness, contrast and saturation factors drawn from [1 - x, 1 + x], hue
    shift from [-hue, hue], applied in a random order; image only.  The output image
    is float32 in [0, 1] (the usual blends towards black, the mean grey and the
    pixel's grey, done in place in float: twice as fast as on uint8).  The original's
    8-bit jitter is :class:`hanet.data.color_jitter.ColorJitterPIL`."""

    def __init__(self, brightness: float = 0.25, contrast: float = 0.25, saturation: float = 0.25,
                 hue: float = 0.0, generator: torch.Generator | None = None):
        super().__init__(generator)
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError("ColorJitter: amounts must be >= 0 and hue <= 0.5")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @staticmethod
    def _brightness(img, f):
        return img.mul_(f).clamp_(0.0, 1.0)

    @staticmethod
    def _contrast(img, f):
        return img.mul_(f).add_((1.0 - f) * float(_gray(img).mean())).clamp_(0.0, 1.0)

    @staticmethod
    def _saturation(img, f):
        return img.mul_(f).add_(_gray(img).mul_(1.0 - f)).clamp_(0.0, 1.0)

    @staticmethod
    def _hue(img, shift):
        return TF.adjust_hue(img, shift)

    def __call__(self, sample: dict) -> dict:
        img = float_image(sample["image"])
        ops = []
        if self.brightness:
            ops.append((self._brightness, self.uniform(1 - self.brightness, 1 + self.brightness)))
        if self.contrast:
            ops.append((self._contrast, self.uniform(1 - self.contrast, 1 + self.contrast)))
        if self.saturation:
            ops.append((self._saturation, self.uniform(1 - self.saturation, 1 + self.saturation)))
        if self.hue:
            ops.append((self._hue, self.uniform(-self.hue, self.hue)))
        for i in torch.randperm(len(ops), generator=self._gen()).tolist():
            fn, factor = ops[i]
            img = fn(img, factor)
        return {**sample, "image": img}


class RandomGaussianBlur(RandomTransform):
    """With probability ``p``, blurs the image with sigma drawn from ``sigma``; kernel
    size 2 * ceil(3 sigma) + 1.  A float approximation: the original's ``--gblur``
    (every image, its own arithmetic) is :class:`hanet.data.blur.SkimageGaussianBlur`."""

    def __init__(self, p: float = 0.5, sigma: tuple[float, float] = (0.15, 1.3),
                 generator: torch.Generator | None = None):
        super().__init__(generator)
        self.p, self.sigma = p, sigma

    def __call__(self, sample: dict) -> dict:
        if not self.chance(self.p):
            return sample
        img = image_tensor(sample["image"])
        if not img.dtype.is_floating_point:
            img = float_image(img)  # blurring uint8 converts to float and back anyway
        s = self.uniform(*self.sigma)
        k = 2 * math.ceil(3 * s) + 1
        # Reflect padding needs the kernel's half-width below the image size.
        k = min(k, 2 * (min(img.shape[-2:]) - 1) + 1)
        if k < 3:
            return {**sample, "image": img}
        return {**sample, "image": TF.gaussian_blur(img, [k, k], [s, s])}


class ToTensorNormalize:
    """Image (uint8 0..255, or float in [0, 1]) -> float32 (x - mean) / std on the
    [0, 1] scale; label and pos_h -> int64."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, sample: dict) -> dict:
        img = image_tensor(sample["image"])
        if not img.dtype.is_floating_point:
            img = img.to(torch.float32).div_(255.0)
        out = {**sample, "image": img.sub(self.mean).div_(self.std).contiguous()}
        for key in ("label", "pos_h"):
            if key in sample:
                out[key] = torch.as_tensor(sample[key]).to(torch.int64).contiguous()
        return out


class Compose:
    """Applies transforms in order to a sample dict."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


def train_transforms(crop_size: int | Sequence[int], scale_min: float = 0.5, scale_max: float = 2.0,
                     color_aug: float = 0.25, gblur: bool = True, hflip: bool = True, hue: float | None = None,
                     image_fill: int | Sequence[int] | str = 0, generator: torch.Generator | None = None, *,
                     crop_nopad: bool = False, pre_size: int | None = None, rrotate: float = 0,
                     bblur: bool = False, ignore_index: int = IGNORE_INDEX) -> Compose:
    """The original's training pipeline (see the module docstring), with its flags:
    ``crop_nopad``, ``pre_size``, ``scale_min/max``, ``rrotate`` (0: no rotation),
    ``color_aug`` (0: no jitter; the hue range too unless ``hue`` is given),
    ``gblur`` / ``bblur`` (bilateral wins when both are set).  All random steps
    share ``generator`` (None: torch's global RNG)."""
    from .blur import SkimageBilateralBlur, SkimageGaussianBlur
    from .color_jitter import ColorJitterPIL
    from .joint_geometry import RandomRotate, RandomSizeAndCrop, ResizeSquare

    if not isinstance(crop_size, int):
        sizes = {int(v) for v in crop_size}
        if len(sizes) != 1:
            raise ValueError(f"train_transforms: the original's crops are square, got crop_size={tuple(crop_size)}")
        crop_size = sizes.pop()
    if image_fill == "mean":
        image_fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
    hue = color_aug if hue is None else hue
    steps: list = [RandomSizeAndCrop(crop_size, crop_nopad, scale_min, scale_max, pre_size, ignore_index,
                                     image_fill, generator), ResizeSquare(crop_size)]
    if hflip:
        steps.append(RandomHorizontalFlip(0.5, generator))
    if rrotate > 0:
        steps.append(RandomRotate(rrotate, ignore_index, generator))
    if color_aug > 0 or hue > 0:
        steps.append(ColorJitterPIL(color_aug, color_aug, color_aug, hue, generator))
    if bblur:
        steps.append(SkimageBilateralBlur(generator))
    elif gblur:
        steps.append(SkimageGaussianBlur(generator))
    steps.append(ToTensorNormalize())
    return Compose(steps)


def eval_transforms() -> Compose:
    """Evaluation/inference: the whole image, as a normalised float tensor."""
    return Compose([ToTensorNormalize()])
