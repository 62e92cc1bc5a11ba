"""Losses of the original (its loss.py), combined as its train.py does.

* main loss: cross-entropy (ignore 255), with the original's Cityscapes class
  weights under ``train.cls_wt_loss``; or, under ``train.img_wt_loss``, the
  original's ImageBasedCrossEntropyLoss2d (see :func:`image_class_weights`), which
  never receives the class weights;
* aux loss (when the model has the aux head): cross-entropy on labels
  nearest-resized to the aux output, class-weighted under ``cls_wt_loss`` (also
  with ``img_wt_loss``); total = main + 0.4 x aux.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255

# --cls_wt_loss weights of the original, for Cityscapes train ids 0..18.
CITYSCAPES_CLASS_WEIGHTS = [0.8373, 0.9180, 0.8660, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
                            0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507]


def image_class_weights(target: torch.Tensor, num_classes: int, upper_bound: float = 1.0) -> torch.Tensor | None:
    """The class weights ImageBasedCrossEntropyLoss2d gives one label map (or a batch).

    The original takes ``np.histogram(labels, bins=range(C + 1), normed=True)``: the
    fraction f_c of each class among the pixels whose label lies in [0, C] (ignore
    255 falls outside; the last bin is closed, so a label equal to C counts as class
    C - 1), then w_c = 1 + upper_bound * (1 - f_c) for classes present and 1 for the
    rest (its ``norm=False``, the only way train.py builds it).  Returns float32
    weights, as the original's ``torch.Tensor(weights)``, or None when no pixel is
    in range (the original's histogram is then 0/0 = NaN).
    """
    t = target.reshape(-1).long()
    t = t[(t >= 0) & (t <= num_classes)].clamp_(max=num_classes - 1)
    if t.numel() == 0:
        return None
    frac = torch.bincount(t, minlength=num_classes).double() / t.numel()
    weights = torch.where(frac != 0, 1.0 + upper_bound * (1.0 - frac), torch.ones_like(frac))
    return weights.float()


def image_weighted_ce(logits: torch.Tensor, target: torch.Tensor, num_classes: int, upper_bound: float = 1.0,
                      batch_weighting: bool = False) -> torch.Tensor:
    """The original's ImageBasedCrossEntropyLoss2d: per image, a class-weighted mean
    NLL with that image's weights (the whole batch's under ``batch_weighting``), and
    the images' losses SUMMED, not averaged (the original's, whatever the batch size).

    One deviation: an image whose pixels are all ignored contributes 0; in the
    original its term is NaN (0/0), which then spreads to every weight.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    shared = image_class_weights(target, num_classes, upper_bound) if batch_weighting else None
    total = logits.new_zeros((), dtype=torch.float32)
    for i in range(logits.shape[0]):
        w = shared if batch_weighting else image_class_weights(target[i], num_classes, upper_bound)
        if w is None or not bool((target[i] != IGNORE).any()):
            continue
        total = total + F.nll_loss(logp[i:i + 1], target[i:i + 1], weight=w.to(logits.device), ignore_index=IGNORE)
    return total


class SegLoss(torch.nn.Module):
    def __init__(self, num_classes: int, class_weighted: bool = False, aux_weight: float = 0.4,
                 img_wt_loss: bool = False, wt_bound: float = 1.0, batch_weighting: bool = False):
        super().__init__()
        weight = None
        if class_weighted:
            if num_classes != len(CITYSCAPES_CLASS_WEIGHTS):
                raise ValueError(f"train.cls_wt_loss uses the original's 19 Cityscapes class weights; "
                                 f"this model has {num_classes} classes")
            weight = torch.tensor(CITYSCAPES_CLASS_WEIGHTS)
        self.register_buffer("weight", weight, persistent=False)
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.img_wt_loss = img_wt_loss
        self.wt_bound = wt_bound
        self.batch_weighting = batch_weighting

    def forward(self, logits: torch.Tensor, target: torch.Tensor, aux_logits: torch.Tensor | None = None):
        """Returns (total, main, aux) losses; aux is None without an aux head."""
        w = None if self.weight is None else self.weight.to(logits.device, torch.float32)
        if self.img_wt_loss:
            main = image_weighted_ce(logits, target, self.num_classes, self.wt_bound, self.batch_weighting)
        else:
            main = F.cross_entropy(logits.float(), target, weight=w, ignore_index=IGNORE)
        if aux_logits is None:
            return main, main.detach(), None
        aux_target = F.interpolate(target[:, None].float(), size=aux_logits.shape[2:], mode="nearest")[:, 0].long()
        aux = F.cross_entropy(aux_logits.float(), aux_target, weight=w, ignore_index=IGNORE)
        return main + self.aux_weight * aux, main.detach(), aux.detach()
