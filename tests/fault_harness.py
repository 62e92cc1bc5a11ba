"""Runs hanet training with faults injected into checkpoint writes (test helper).

    python tests/fault_harness.py CONFIG [key=value ...]            # like `hanet train`
    torchrun ... tests/fault_harness.py --distributed CONFIG [...]  # like train/train.py

Environment (unset: no fault):
  HANET_FAULT_SAVE=kill:K:F    the K-th checkpoint write of last.pt in this process
                               writes fraction F of its bytes, then the process
                               SIGKILLs itself (a pre-emption in mid-write)
  HANET_FAULT_SAVE=enospc:K:F  ... then the write fails with ENOSPC (disk full)
The real atomic_save runs around the fault: only torch.save's stream is cut.
"""
from __future__ import annotations

import errno
import io
import os
import re
import signal
import sys

import torch

_TMP_NAME = re.compile(r"/\.last\.pt\.[^/]*\.tmp$")


def _target_name(f) -> str:
    name = getattr(f, "name", "")
    if isinstance(name, int):  # os.fdopen: the name is the descriptor
        try:
            return os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            return ""
    return str(name)


def install_save_fault(spec: str) -> None:
    """Wrap torch.save so that the K-th write of a last.pt temporary file breaks off."""
    kind, k, frac = spec.split(":")
    if kind not in ("kill", "enospc"):
        raise ValueError(f"HANET_FAULT_SAVE: unknown fault {kind!r}")
    k, frac = int(k), float(frac)
    real_save = torch.save
    count = 0

    def save(obj, f, *args, **kwargs):
        nonlocal count
        if not _TMP_NAME.search(_target_name(f)):
            return real_save(obj, f, *args, **kwargs)
        count += 1
        if count != k:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: int(len(data) * frac)])
        f.flush()
        os.fsync(f.fileno())
        if kind == "kill":
            print(f"fault_harness: SIGKILL during checkpoint write {k} ({int(len(data) * frac)} of {len(data)} "
                  f"bytes written)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    torch.save = save


def main(argv: list[str]) -> int:
    distributed = bool(argv) and argv[0] == "--distributed"
    if distributed:
        argv = argv[1:]
    spec = os.environ.get("HANET_FAULT_SAVE")
    if spec:
        install_save_fault(spec)
    from hanet.training.run import main as train_main

    return train_main(argv, distributed=distributed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
