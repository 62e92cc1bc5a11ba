"""Putting checkpoint weights into a model: the strict load that names every
mismatched key, the model of a config and its weights, and the lenient
name-and-shape load of ``model.init_from`` (the original's ``--snapshot``)."""
from __future__ import annotations

import os

import torch

from hanet.models.config import ModelConfig
from hanet.models.deeplab import DeepLabV3Plus

from .io import CheckpointError, safe_load
from .schema import parse_model_config

__all__ = ["MatchReport", "load_matching", "model_state_dict", "model_with_weights", "strict_load_state_dict",
           "unwrap"]


def strict_load_state_dict(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """load_state_dict that names every missing, unexpected and mis-shaped key."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{source}: the weights ('state_dict') must be a dict of tensors, "
                              f"got {type(state_dict).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)
    ]
    not_tensors = [k for k, v in state_dict.items() if k in own and not isinstance(v, torch.Tensor)]
    if missing or unexpected or misshaped or not_tensors:
        def block(title, items):
            if not items:
                return ""
            shown = "\n    ".join(map(str, items[:20]))
            more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}):\n    {shown}{more}"

        raise CheckpointError(
            f"the weights in {source} do not match the model"
            + block("missing keys", missing)
            + block("unexpected keys", unexpected)
            + block("mis-shaped keys", misshaped)
            + block("entries that are not tensors", not_tensors)
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the weights in {source} cannot be loaded into the model: {exc}") from None

def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The DeepLabV3Plus inside a DistributedDataParallel wrapper (or `model` itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, DeepLabV3Plus) else model


def model_state_dict(model: torch.nn.Module) -> dict:
    """The weights a checkpoint stores: detached CPU tensors, without a DDP ``module.`` prefix."""
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def model_with_weights(cfg: dict | ModelConfig, state_dict: dict, source: str) -> DeepLabV3Plus:
    """The DeepLabV3Plus of config `cfg` (a ModelConfig or its dict) holding exactly
    `state_dict`, in eval mode."""
    config = cfg if isinstance(cfg, ModelConfig) else parse_model_config(cfg, source)
    model = DeepLabV3Plus(config)
    strict_load_state_dict(model, state_dict, source)
    return model.eval()


class MatchReport(tuple):
    """What :func:`load_matching` did.  Unpacks as ``(loaded, skipped)`` (key lists;
    a skipped entry reads ``"key (why)"``); also has ``misshaped`` and ``absent``
    (the model keys behind ``skipped``), ``unused`` (file tensors the model has no
    key for), ``total`` (the model's tensor count) and ``source``; ``str()`` is a
    one-line report."""

    def __new__(cls, loaded, skipped, misshaped, absent, unused, model_keys, source):
        self = super().__new__(cls, (loaded, skipped))
        self.loaded, self.skipped = loaded, skipped
        self.misshaped, self.absent, self.unused = [k for k, _, _ in misshaped], absent, unused
        self.total, self.source = len(model_keys), source
        self._shapes = {k: (f, m) for k, f, m in misshaped}
        self._model_keys = model_keys
        return self

    def __str__(self) -> str:
        parts = [f"{self.source}: loaded {len(self.loaded)} of the model's {self.total} tensors (same name and shape)"]
        if self.misshaped:
            parts.append(f"skipped, shape differs ({len(self.misshaped)}): " + ", ".join(
                f"{k} (file {self._shapes[k][0]} vs model {self._shapes[k][1]})" for k in self.misshaped))
        if self.absent:
            parts.append(f"skipped, not in the file ({len(self.absent)}): "
                         + ", ".join(_grouped(self.absent, self._model_keys)))
        if self.skipped:
            parts.append("the skipped ones keep the model's own initial values")
        if self.unused:
            parts.append(f"file tensors the model has no key for, not used ({len(self.unused)}): "
                         + ", ".join(_grouped(self.unused, self.unused)))
        return "; ".join(parts)

    def report(self) -> str:
        return str(self)


def _grouped(keys: list[str], universe: list[str]) -> list[str]:
    """`keys`, with every top-level module all of whose keys in `universe` are listed
    written once as ``module.* (all N)``."""
    by_top: dict[str, list[str]] = {}
    for k in universe:
        by_top.setdefault(k.split(".", 1)[0], []).append(k)
    chosen = set(keys)
    out, done = [], set()
    for k in keys:
        top = k.split(".", 1)[0]
        group = by_top.get(top, [])
        if "." in k and len(group) > 3 and all(g in chosen for g in group):
            if top not in done:
                out.append(f"{top}.* (all {len(group)})")
                done.add(top)
        else:
            out.append(k)
    return out


def load_matching(model: torch.nn.Module, path: str | os.PathLike) -> MatchReport:
    """Initialises ``model`` from any checkpoint (ours, official, or a bare state
    dict), as the original's ``--snapshot`` does: every model tensor whose name (with
    ``module.`` prefixes dropped) is in the file with the same shape is copied; the
    others keep the model's values; file tensors the model has no key for are not
    used (e.g. the original's loss buffers ``criterion.weight``, or another head).
    Returns a :class:`MatchReport` (unpacks as ``(loaded, skipped)``) whose ``str()``
    says exactly what was not taken (the original only printed the skipped names)."""
    ckpt = safe_load(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt.get("state_dict"), dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    own = model.state_dict()
    loaded, skipped, misshaped, absent = [], [], [], []
    with torch.no_grad():
        for k, v in own.items():
            src = state.get(k)
            if src is None:
                absent.append(k)
                skipped.append(f"{k} (absent)")
            elif tuple(src.shape) != tuple(v.shape):
                misshaped.append((k, tuple(src.shape), tuple(v.shape)))
                skipped.append(f"{k} (shape {tuple(src.shape)} vs {tuple(v.shape)})")
            else:
                loaded.append(k)
        if not loaded:
            raise CheckpointError(f"{path}: no tensor matches the model by name and shape; wrong file?")
        for k in loaded:
            own[k].copy_(state[k])
    unused = [k for k in state if k not in own]
    return MatchReport(loaded, skipped, misshaped, absent, unused, list(own), str(path))
