"""Reading and writing checkpoint files safely, whatever their format.

Every checkpoint is read with ``torch.load(weights_only=True)``: only tensors,
containers and plain values are rebuilt, never arbitrary objects, so opening a
file can never execute code.  The one extra type allowed is what the official
HANet checkpoints need: numpy's float64 scalar (their ``mean_iu``).  Writing goes
through a temporary file and a rename (:func:`atomic_save`).
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

__all__ = ["CheckpointError", "atomic_save", "safe_load"]


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
