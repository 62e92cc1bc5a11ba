"""Segmentation metrics from a confusion matrix over train ids.

IoU_c = TP / (TP + FP + FN) per class; mIoU is the mean over classes that occur
in the ground truth or the prediction (NaN classes are left out, as the
Cityscapes evaluation does); pixel accuracy and frequency-weighted IoU as usual.
Distributed evaluation sums the matrices of all ranks (`all_reduce`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) matrix: rows ground truth, columns prediction."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device="cpu"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer tensors of the same shape (train ids; target may hold ignore_index)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        bad = (target < 0) | (target >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"label values must be train ids in [0, {self.num_classes}) or {self.ignore_index}, "
                f"found {sorted(set(target[bad].tolist()))[:10]}"
            )
        if bool(((pred < 0) | (pred >= self.num_classes)).any()):
            raise ValueError(f"predictions must be class ids in [0, {self.num_classes})")
        n = self.num_classes
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> "SegMetrics":
        return SegMetrics.from_matrix(self.matrix.double().cpu())


@dataclass
class SegMetrics:
    iou: list[float]  # per class; NaN where the class is in neither ground truth nor prediction
    miou: float
    pixel_acc: float
    fw_iou: float
    matrix: torch.Tensor
    bands: dict[str, "SegMetrics"] = field(default_factory=dict)  # the height bands, when measured

    @classmethod
    def from_matrix(cls, m: torch.Tensor) -> "SegMetrics":
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        valid = ~torch.isnan(iou)
        miou = float(iou[valid].mean()) if bool(valid.any()) else float("nan")
        total = float(m.sum())
        pixel_acc = float(tp.sum() / total) if total > 0 else float("nan")
        freq = gt / total if total > 0 else gt
        fw_iou = float((freq[valid] * iou[valid]).sum()) if total > 0 else float("nan")
        return cls(iou=[float(v) for v in iou], miou=miou, pixel_acc=pixel_acc, fw_iou=fw_iou, matrix=m)

    def per_class(self, names: list[str]) -> dict[str, float]:
        return {n: v for n, v in zip(names, self.iou)}

    def table(self, names: list[str]) -> str:
        """A per-class IoU table as text."""
        width = max(len(n) for n in names) + 2
        lines = [f"{'class':<{width}} {'IoU':>7}", "-" * (width + 8)]
        for n, v in zip(names, self.iou):
            lines.append(f"{n:<{width}} {'   n/a' if v != v else f'{100 * v:6.2f}'}")
        lines.append("-" * (width + 8))
        lines.append(f"{'mIoU':<{width}} {100 * self.miou:6.2f}")
        lines.append(f"{'pixel acc':<{width}} {100 * self.pixel_acc:6.2f}")
        lines.append(f"{'fw IoU':<{width}} {100 * self.fw_iou:6.2f}")
        return "\n".join(lines)


BANDS = ("upper", "mid1", "mid2", "lower")


def band_rows(height: int) -> list[slice]:
    """The four horizontal bands of the original eval.py's report: rows [0, q), [q, 2q),
    [2q, 3q) and [3q, height) with q = height // 4 (the lowest band takes the remainder)."""
    q = height // 4
    return [slice(0, q), slice(q, 2 * q), slice(2 * q, 3 * q), slice(3 * q, height)]


class BandedConfusion:
    """Confusion matrices of the whole frame and of its four horizontal bands, the
    original's ``Mean IOU (Whole,Up,Mid1,Mid2,DOWN)``: where in the image the errors are."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device="cpu"):
        self.whole = ConfusionMatrix(num_classes, ignore_index, device)
        self.bands = {name: ConfusionMatrix(num_classes, ignore_index, device) for name in BANDS}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (H, W) train ids of one image."""
        if pred.dim() != 2 or pred.shape != target.shape:
            raise ValueError(f"banded metrics need (H, W) prediction and label of the same shape, got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        self.whole.update(pred, target)
        for rows, cm in zip(band_rows(pred.shape[0]), self.bands.values()):
            cm.update(pred[rows], target[rows])

    def all_reduce(self) -> None:
        for cm in (self.whole, *self.bands.values()):
            cm.all_reduce()

    def compute(self) -> SegMetrics:
        metrics = self.whole.compute()
        metrics.bands = {name: cm.compute() for name, cm in self.bands.items()}
        return metrics


def band_line(metrics: SegMetrics) -> str:
    """The original's one-line summary: mIoU (%) of the whole frame and the four bands."""
    values = [metrics.miou] + [metrics.bands[b].miou for b in BANDS]
    return "Mean IoU (whole, upper, mid 1, mid 2, lower): " + " ".join(f"{100 * v:.2f}" for v in values)
