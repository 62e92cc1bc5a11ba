"""The original's optimisation: SGD (momentum 0.9) with the HANet parameters in a
group of their own (own lr, poly power and weight decay), poly decay over max_iter:
lr_i = base_lr * (1 - i / max_iter) ** power, per group."""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainSection


def split_parameters(model: nn.Module) -> tuple[list, list]:
    """(HANet parameters, the rest), trainable ones only (the sinusoid tables are frozen)."""
    hanet_ids = set()
    for site in model.hanet_sites():
        hanet_ids.update(id(p) for p in site.parameters())
    hanet, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (hanet if id(p) in hanet_ids else rest).append(p)
    return hanet, rest


def build_optimizer(model: nn.Module, t: TrainSection) -> torch.optim.SGD:
    hanet, rest = split_parameters(model)
    groups = [{"params": rest, "lr": t.lr, "weight_decay": t.weight_decay, "name": "main", "poly_exp": t.poly_exp}]
    if hanet:
        groups.append({"params": hanet, "lr": t.hanet_lr, "weight_decay": t.hanet_weight_decay, "name": "hanet",
                       "poly_exp": t.hanet_poly_exp})
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)


def poly_factor(iteration: int, max_iter: int, power: float) -> float:
    return max(0.0, 1.0 - iteration / max_iter) ** power


def build_scheduler(optimizer: torch.optim.Optimizer, max_iter: int) -> torch.optim.lr_scheduler.LambdaLR:
    """One poly lambda per group, each with the group's own power."""
    lambdas = [(lambda it, p=g["poly_exp"]: poly_factor(it, max_iter, p)) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
