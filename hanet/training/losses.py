"""Losses of the original recipe: cross-entropy (ignore 255), optionally with the
original's Cityscapes class weights, plus 0.4 x the aux head's cross-entropy on
labels nearest-resized to the aux output."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255

# --cls_wt_loss weights of the original, for Cityscapes train ids 0..18.
CITYSCAPES_CLASS_WEIGHTS = [0.8373, 0.9180, 0.8660, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
                            0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507]


class SegLoss(torch.nn.Module):
    def __init__(self, num_classes: int, class_weighted: bool = False, aux_weight: float = 0.4):
        super().__init__()
        weight = None
        if class_weighted:
            if num_classes != len(CITYSCAPES_CLASS_WEIGHTS):
                raise ValueError(f"train.cls_wt_loss uses the original's 19 Cityscapes class weights; "
                                 f"this model has {num_classes} classes")
            weight = torch.tensor(CITYSCAPES_CLASS_WEIGHTS)
        self.register_buffer("weight", weight, persistent=False)
        self.aux_weight = aux_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, aux_logits: torch.Tensor | None = None):
        """Returns (total, main, aux) losses; aux is None without an aux head."""
        w = None if self.weight is None else self.weight.to(logits.device, torch.float32)
        main = F.cross_entropy(logits.float(), target, weight=w, ignore_index=IGNORE)
        if aux_logits is None:
            return main, main.detach(), None
        aux_target = F.interpolate(target[:, None].float(), size=aux_logits.shape[2:], mode="nearest")[:, 0].long()
        aux = F.cross_entropy(aux_logits.float(), aux_target, weight=w, ignore_index=IGNORE)
        return main + self.aux_weight * aux, main.detach(), aux.detach()
