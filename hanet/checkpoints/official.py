"""The official HANet checkpoints (the original project's format), read apart from ours.

An official file is a ``torch.save`` of a dict (:class:`OfficialCheckpoint` is what
we read of it)::

    state_dict               {name: tensor}; keys prefixed ``module.`` when saved from DDP
    optimizer, scheduler     torch state dicts (and optimizer_at/scheduler_at for the
                             HANet group); not read: resuming an official run is not supported
    epoch                    int
    mean_iu                  a numpy float64
    command                  the training flags, from which the architecture is read

The original's network holds its training loss modules as submodules
(``net.criterion``, ``net.criterion_aux``), so their registered buffers are saved
with the weights.  Which ones exist is fixed by the loss flags of the command (see
:data:`LOSS_BUFFERS`); they are recognised, reported in one log line, and not
loaded (our model does not hold its loss).  Any other unknown key is an error.
:func:`convert_official` writes such a file in our format.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
from dataclasses import dataclass, field

import torch

from hanet.models.config import ModelConfig
from hanet.models.deeplab import DeepLabV3Plus
from hanet.models.registry import parse_arch

from .io import CheckpointError, atomic_save, safe_load
from .schema import ModelCheckpoint
from .weights import model_state_dict, model_with_weights

__all__ = ["LOSS_BUFFERS", "OfficialCheckpoint", "config_from_command", "convert_official", "is_official",
           "load_official", "model_from_official", "split_loss_buffers"]

log = logging.getLogger(__name__)

# The loss buffers an official checkpoint can carry (keys without ``module.``), with
# the flags under which the original's train.py creates them.  Its get_loss() picks
# the main loss in the order --img_wt_loss, --jointwtborder, else plain cross entropy;
# get_loss_aux() always gives a plain cross entropy.  A plain cross entropy gets the
# class-weight buffer ``weight`` only with --cls_wt_loss (a None buffer is not saved).
# The per-image weighted loss keeps an NLL loss whose ``weight`` buffer it sets on
# every training step, so that key exists once a step has run.  The relaxed
# (--jointwtborder) loss has no buffers.  Every one is a float vector with an entry
# per class (the losses require it).
LOSS_BUFFERS = {
    "criterion.weight": ("the class weights of the main cross-entropy loss",
                         lambda a, aux: a.cls_wt_loss and not (a.img_wt_loss or a.jointwtborder),
                         "--cls_wt_loss without --img_wt_loss or --jointwtborder"),
    "criterion_aux.weight": ("the class weights of the auxiliary cross-entropy loss",
                             lambda a, aux: a.cls_wt_loss and aux,
                             "--cls_wt_loss with the auxiliary head (--aux_loss)"),
    "criterion.nll_loss.weight": ("the per-image class weights of the image-weighted loss",
                                  lambda a, aux: a.img_wt_loss,
                                  "--img_wt_loss"),
}


class _FlagError(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    """Raises on bad flags instead of printing usage to stderr and exiting."""

    def error(self, message):
        raise _FlagError(message)


def _flag_parser() -> argparse.ArgumentParser:
    # The model flags of the original's train.py, with its defaults.
    p = _QuietParser(add_help=False)
    p.add_argument("--arch", default=None)
    p.add_argument("--hanet", nargs=5, type=int, default=[0, 0, 0, 0, 0])
    p.add_argument("--hanet_set", nargs=3, type=int, default=[0, 0, 0])
    p.add_argument("--hanet_pos", nargs=2, type=int, default=[0, 0])
    p.add_argument("--pos_rfactor", type=int, default=0)
    p.add_argument("--pooling", default="mean")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--pos_noise", type=float, default=0.0)
    p.add_argument("--aux_loss", action="store_true")
    # The loss flags: they decide which loss buffers a checkpoint carries.
    p.add_argument("--cls_wt_loss", action="store_true")
    p.add_argument("--img_wt_loss", action="store_true")
    p.add_argument("--jointwtborder", action="store_true")
    return p


def _parse_command(command, source: str) -> argparse.Namespace:
    if not isinstance(command, str):
        raise CheckpointError(f"{source}: 'command' must be the training flags as a string")
    try:
        args, _ = _flag_parser().parse_known_args(shlex.split(command))
    except (_FlagError, ValueError, SystemExit) as exc:
        raise CheckpointError(f"{source}: cannot parse the model flags of command {command!r} ({exc})") from None
    return args


def config_from_command(command: str, num_classes: int, source: str = "command") -> ModelConfig:
    """The ModelConfig an official training command line describes."""
    args = _parse_command(command, source)
    if not args.arch:
        raise CheckpointError(f"{source}: the command has no --arch flag: {command!r}")
    try:
        trunk, output_stride = parse_arch(args.arch)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    any_site = any(args.hanet)
    return ModelConfig(
        trunk=trunk, output_stride=output_stride, num_classes=num_classes, hanet=args.hanet,
        hanet_set=args.hanet_set if any_site else [3, 64, 3],
        hanet_pos=args.hanet_pos if any_site else [2, 1],
        pos_rfactor=args.pos_rfactor if any_site else 8,
        pooling=args.pooling, dropout=args.dropout, pos_noise=args.pos_noise, aux_loss=args.aux_loss,
    )


def _strip_module(state_dict: dict, source: str = "checkpoint") -> dict:
    bad = [k for k in state_dict if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{source}: the state_dict's keys must be parameter names (strings); "
                              f"found {', '.join(map(repr, bad[:5]))}")
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def split_loss_buffers(state: dict, command: str, num_classes: int, aux: bool, source: str) -> tuple[dict, list[str]]:
    """(the state without the original's loss buffers, the keys taken out).

    Only the keys of :data:`LOSS_BUFFERS` are taken out, and each only if the
    command's loss flags create it and it is a float vector of ``num_classes``
    entries; otherwise a CheckpointError names the key and what is wrong.  Every
    other key is left for the strict load to judge."""
    present = [k for k in state if k in LOSS_BUFFERS]
    if not present:
        return state, []
    args = _parse_command(command, source)
    for key in present:
        what, created, flags = LOSS_BUFFERS[key]
        value = state[key]
        if not created(args, aux):
            raise CheckpointError(f"{source}: {key} is {what}, which the original saves only with {flags}; "
                                  f"the checkpoint's command does not say so: {command!r}")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or tuple(value.shape) != (num_classes,):
            got = (f"{value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                   else type(value).__name__)
            raise CheckpointError(f"{source}: {key} ({what}) must be a float vector of {num_classes} entries, "
                                  f"one per class; got a {got}")
    return {k: v for k, v in state.items() if k not in LOSS_BUFFERS}, present


def is_official(ckpt: dict) -> bool:
    """Does this loaded dict look like an official HANet checkpoint?"""
    return "command" in ckpt and "state_dict" in ckpt


@dataclass
class OfficialCheckpoint:
    """What we read of an official file: the weights (``module.`` prefixes dropped),
    the training command, and its bookkeeping entries as stored (``numbers()`` checks
    them; only a conversion keeps them, so only a conversion fails on bad ones)."""
    state_dict: dict
    command: str
    bookkeeping: dict = field(default_factory=dict)  # "mean_iu", "epoch" where present, as stored

    @classmethod
    def from_payload(cls, ckpt: dict, source: str) -> "OfficialCheckpoint":
        if not isinstance(ckpt.get("state_dict"), dict):
            raise CheckpointError(f"{source}: no 'state_dict' dict in the checkpoint")
        return cls(_strip_module(ckpt["state_dict"], source), ckpt.get("command"),
                   {k: ckpt[k] for k in ("mean_iu", "epoch") if k in ckpt})

    def numbers(self, source: str) -> dict:
        """{"mean_iu": float, "epoch": int} of the entries present; CheckpointError if not numbers."""
        kinds = {"mean_iu": float, "epoch": int}
        return {k: _number(self.bookkeeping, k, kinds[k], source) for k in kinds if k in self.bookkeeping}

    def model_config(self, source: str) -> ModelConfig:
        """The architecture: the command's flags, the class count of the final layer, and
        the aux head exactly when the weights have one."""
        final = self.state_dict.get("final2.0.weight")
        if final is None:
            raise CheckpointError(f"{source}: the state_dict has no final2.0.weight (not a DeepLabV3+ HANet "
                                  f"checkpoint?)")
        if not isinstance(final, torch.Tensor) or final.dim() != 4 or final.shape[0] < 1:
            raise CheckpointError(f"{source}: final2.0.weight must be a 4-D tensor (classes, channels, 1, 1), got "
                                  f"{tuple(final.shape) if isinstance(final, torch.Tensor) else type(final).__name__}")
        config = config_from_command(self.command, int(final.shape[0]), source)
        # The aux head is present in the weights exactly when the run used --aux_loss.
        config.aux_loss = any(k.startswith("dsn.") for k in self.state_dict)
        return config


def model_from_official(ckpt: dict, source: str, **overrides) -> DeepLabV3Plus:
    """The model of a loaded official checkpoint, in eval mode."""
    official = OfficialCheckpoint.from_payload(ckpt, source)
    config = official.model_config(source)
    state, dropped = split_loss_buffers(official.state_dict, official.command, config.num_classes, config.aux_loss,
                                        source)
    model = model_with_weights({**config.to_dict(), **overrides}, state, source)
    if dropped:
        log.warning("%s: not loaded: %s (buffers of the original's training loss, saved with its weights; "
                    "not part of the model)", source, ", ".join(dropped))
    return model


def load_official(path: str | os.PathLike, **overrides) -> DeepLabV3Plus:
    """Loads an official HANet checkpoint: the architecture is read from its
    ``command`` flags, every tensor is loaded strictly (a clear error lists missing,
    unexpected and mis-shaped keys), and the model is returned in eval mode.
    ``overrides`` replace ModelConfig fields (e.g. ``backend="reference"``)."""
    return _official_model(safe_load(path), path, **overrides)


def _official_model(ckpt: dict, path, **overrides) -> DeepLabV3Plus:
    if not is_official(ckpt):
        raise CheckpointError(
            f"{path} is not an official HANet checkpoint: it lacks 'command' or 'state_dict' "
            f"(top-level keys: {', '.join(map(str, list(ckpt)[:10]))})"
        )
    return model_from_official(ckpt, str(path), **overrides)


def _number(ckpt: dict, key: str, kind, source) -> int | float:
    value = ckpt[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError(f"{source}: '{key}' must be a number, got {type(value).__name__}") from None


def convert_official(src: str | os.PathLike, dst: str | os.PathLike) -> DeepLabV3Plus:
    """Converts an official checkpoint into our format (weights + full config).
    The source is read once; nothing is written unless it loads completely."""
    ckpt = safe_load(src)
    model = _official_model(ckpt, src)
    official = OfficialCheckpoint.from_payload(ckpt, str(src))
    meta = {"converted_from": str(src), "command": official.command, **official.numbers(str(src))}
    atomic_save(ModelCheckpoint(model.config, model_state_dict(model), meta).to_payload(), dst)
    return model
