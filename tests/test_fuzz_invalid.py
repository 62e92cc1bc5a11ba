"""Fuzz of invalid calls: at least 1,000 invalid calls of the public ops (every backend)
and of the raw ``torch.ops.hanet`` / ``torch.ops.hanet_triton`` ops, forward and
backward (see tests/invalid_calls.py for what they break).  Each must raise a
TypeError/ValueError/RuntimeError/IndexError whose message names the problem.

The calls run in a child process with a timeout, so that a segfault (the child dies by
a signal) or a hang (the timeout) is a reported failure naming the call, not a dead
test session.  The child writes a JSON summary (calls made, exceptions by type, calls
by category, failures); this test adds crashes and hangs and, when HANET_FUZZ_REPORT
is set, writes the whole report to that path.  The seed is fixed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hanet.ops as hops

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CALLS = int(os.environ.get("HANET_FUZZ_INVALID_CALLS", "4000"))
SEED = int(os.environ.get("HANET_FUZZ_INVALID_SEED", "20240611"))
TIMEOUT_S = 240  # far above the ~10 s the run takes: only a hang gets there


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _last_line(path: Path) -> str | None:
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    return lines[-1] if lines else None


@pytest.mark.skipif("cpu" not in hops.available_backends("cpu"), reason="C++ extension not built")
def test_invalid_calls_raise_named_errors_without_crash_or_hang(tmp_path):
    summary_path, progress_path = tmp_path / "summary.json", tmp_path / "progress.txt"
    cmd = [
        sys.executable, "-X", "faulthandler", str(HERE / "invalid_calls.py"),
        "--calls", str(CALLS), "--seed", str(SEED),
        "--summary", str(summary_path), "--progress", str(progress_path),
    ]
    env = dict(os.environ, TRITON_INTERPRET="1")
    # The child imports the hanet this process imported (the installed package, with its
    # built extension), never a source tree without it.
    import hanet

    import site

    package_root = str(Path(hanet.__file__).resolve().parents[1])
    # An installed hanet is found by the child's own sys.path; putting site-packages on
    # PYTHONPATH would move it before the standard library (and its legacy typing.py in).
    paths = [str(HERE)] if package_root in map(str, site.getsitepackages()) else [package_root, str(HERE)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    start = time.perf_counter()
    hang, proc = False, None
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        hang = True  # subprocess.run killed the child
    wall = time.perf_counter() - start
    crash = proc is not None and proc.returncode < 0

    report = json.loads(summary_path.read_text()) if summary_path.exists() else {"calls": 0}
    report.update(
        crashes=int(crash),
        hangs=int(hang),
        child_returncode=None if proc is None else proc.returncode,
        wall_s=round(wall, 2),
    )
    if crash or hang:
        report["last_call"] = _last_line(progress_path)
    if os.environ.get("HANET_FUZZ_REPORT"):
        Path(os.environ["HANET_FUZZ_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")

    stderr = "" if proc is None else proc.stderr[-4000:]
    assert not hang, f"hang: no result after {TIMEOUT_S} s; last call started: {report['last_call']}"
    assert not crash, (
        f"crash: the child died by {_signal_name(-proc.returncode)} during "
        f"{report['last_call']}\n{stderr}"
    )
    assert proc.returncode == 0 and summary_path.exists(), f"the fuzz runner failed:\n{stderr}"
    assert report["calls"] == CALLS >= 1000
    failures = report["failures"]
    assert not failures, f"{len(failures)} of {CALLS} invalid calls misbehaved:\n" + "\n".join(
        f"  {f['call']}\n    -> {f['problem']}" for f in failures[:25]
    )
    assert report["raised"] == CALLS
    print(f"backends reached: {report['backends_reached']} (hanet from {report['hanet']})")
    assert report["hanet"] == str(Path(hops.__file__).resolve().parent), report["hanet"]
    assert report["backends_reached"].get("cpu", 0) > 0, report["backends_reached"]
