"""Checkpoint files: safe reading, strict loading, and our own format.

Every checkpoint is read with ``torch.load(weights_only=True)``: only tensors,
containers and plain values are rebuilt, never arbitrary objects, so opening a
file can never execute code.  The one extra type allowed is what the official
HANet checkpoints need: numpy's float64 scalar (their ``mean_iu``).

Our own format (``save``/``load``) stores the weights with the full
:class:`ModelConfig`, so :func:`load` rebuilds the model without flags.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig
from .deeplab import DeepLabV3Plus

FORMAT = "hanet-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


def _numpy_scalar_globals():
    """The numpy globals a pickled np.float64 refers to, under old and new module names."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed.append(dtypes.Float64DType)
    return allowed


def _unpickling_detail(msg: str) -> tuple[bool, str]:
    """(is it a refused global?, the informative part) of torch's weights_only error.

    torch's message is mostly boilerplate (and advice to re-run with
    ``weights_only=False``, which is exactly what must not be done with such a file);
    the useful part is the global it refused or the opcode it did not accept."""
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)
    refused = re.search(r"GLOBAL ([\w.]+)", msg)
    if refused:
        return True, f"it asks to import {refused.group(1)}"
    opcode = re.search(r"Unsupported operand (\d+)", msg)
    if opcode:
        code = int(opcode.group(1))
        shown = repr(chr(code)) if 32 <= code < 127 else f"0x{code:02x}"
        return False, f"pickle opcode {shown} is not one a weights-only checkpoint uses"
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("Weights only load failed", "(1)", "(2)", "Please file an issue",
                                                     "Check the documentation"))]
    return False, (keep or lines or [msg])[0].removeprefix("WeightsUnpickler error:").strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _check_zip_crcs(path: Path) -> None:
    """Verifies the CRC-32 of every record of a zip checkpoint.  torch.load does not,
    so bytes altered after writing (a bad disk, a broken copy) would otherwise load
    as silently wrong weights.  Records written without a CRC (torch.save under
    ``set_crc32_options(False)`` stores 0) are not checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
                raise CheckpointError(f"{path} is a zip archive but not a torch checkpoint: it has no data.pkl "
                                      f"(it holds: {shown or 'nothing'})")
            for info in archive.infolist():
                if info.CRC == 0 or info.is_dir():
                    continue
                with archive.open(info) as f:  # raises BadZipFile on a CRC mismatch at the end
                    while f.read(1 << 24):
                        pass
    except CheckpointError:
        raise
    except zipfile.BadZipFile as exc:
        size = path.stat().st_size
        if "CRC" in str(exc):
            raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): corrupt file, CRC-32 mismatch "
                                  f"({exc}): its bytes changed after it was written") from None
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated or corrupt file (the zip "
                              f"archive is damaged: {exc})") from None
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({path.stat().st_size} bytes): corrupt zip archive "
                              f"({_first_line(exc)})") from None


def safe_load(path: str | os.PathLike) -> dict:
    """Reads a checkpoint file without executing code; clear errors name the file.

    Refuses pickled objects other than tensors, containers and plain values (the
    payload of a hostile file never runs), checks the CRC-32 of every record of a
    zip checkpoint, and turns every way a damaged file can fail into a
    :class:`CheckpointError` that names the file and says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a regular file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":  # a zip archive (torch.save's format since 1.6), as torch.load decides
        _check_zip_crcs(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused, detail = _unpickling_detail(str(exc))
        if refused:
            raise CheckpointError(
                f"refused to load {path}: it holds pickled objects other than tensors and plain "
                f"values, which could execute code when loaded ({detail}); nothing was run"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): not a torch checkpoint, or corrupt "
                              f"pickle data ({detail})") from None
    except MemoryError:
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): corrupt file (it asks for more "
                              f"memory than there is)") from None
    except Exception as exc:  # torch/miniz/pickle fail in many ways on damaged bytes
        raise CheckpointError(
            f"cannot read checkpoint {path} ({size} bytes): truncated or corrupt file ({_first_line(exc)})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a checkpoint: expected a dict, got {type(obj).__name__}")
    return obj


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


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save through a temporary file and a rename: a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename itself must reach the disk, or a power cut could bring back the old name.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        io_error = _io_error_of(exc)
        if io_error is not None and io_error is not exc:
            # torch.save's zip writer turns a failed write (ENOSPC, EFBIG, EIO) into a bare
            # RuntimeError on closing; give callers the OSError that says what happened.
            raise io_error from exc
        raise


def _io_error_of(exc: BaseException) -> OSError | None:
    """The OSError at the root of `exc` (itself, or one it was raised while handling)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__context__ or exc.__cause__
    return None


def model_payload(model: DeepLabV3Plus, meta: dict | None = None) -> dict:
    """The dict our checkpoint format stores for a model."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    return {"format": FORMAT, "version": VERSION, "model_config": _unwrap(model).config.to_dict(),
            "state_dict": state, "meta": dict(meta or {})}


def save(model: DeepLabV3Plus, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Writes ``model`` (weights + configuration) in our format, atomically."""
    atomic_save(model_payload(model, meta), path)


def is_ours(ckpt: dict) -> bool:
    return ckpt.get("format") == FORMAT


def model_from_payload(ckpt: dict, source: str, **overrides) -> DeepLabV3Plus:
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{source}: unsupported hanet checkpoint version {ckpt.get('version')!r}")
    for key in ("model_config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{source}: a hanet checkpoint needs a '{key}' dict, "
                                  f"got {type(ckpt.get(key)).__name__}")
    return model_with_weights({**ckpt["model_config"], **overrides}, ckpt["state_dict"], source)


def parse_model_config(cfg: dict, source: str) -> ModelConfig:
    """ModelConfig of a checkpoint's config dict; CheckpointError naming `source` if invalid."""
    try:
        return ModelConfig.from_dict(cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: invalid model_config: {exc}") from None


def model_with_weights(cfg: dict, state_dict: dict, source: str) -> DeepLabV3Plus:
    """The DeepLabV3Plus of config dict `cfg` holding exactly `state_dict`, in eval mode."""
    model = DeepLabV3Plus(parse_model_config(cfg, source))
    strict_load_state_dict(model, state_dict, source)
    return model.eval()


def load(path: str | os.PathLike, **overrides) -> DeepLabV3Plus:
    """Rebuilds a model from a checkpoint: ours (model + config; training checkpoints
    too) or an official HANet one.  Returns it in eval mode.  ``overrides`` change
    non-architectural settings (e.g. ``backend``)."""
    ckpt = safe_load(path)
    if is_ours(ckpt):
        return model_from_payload(ckpt, str(path), **overrides)
    if "command" in ckpt and "state_dict" in ckpt:
        from .official import model_from_official

        return model_from_official(ckpt, str(path), **overrides)
    raise CheckpointError(
        f"{path} is neither a hanet checkpoint nor an official HANet checkpoint "
        f"(top-level keys: {', '.join(map(str, list(ckpt)[:10]))})"
    )


def _unwrap(model):
    return model.module if hasattr(model, "module") and isinstance(model.module, DeepLabV3Plus) else model


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
