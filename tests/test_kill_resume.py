"""Kill and resume: training runs SIGKILLed at random moments (and in the middle of a
checkpoint write) and resumed each time end with exactly the weights of an
uninterrupted run, on one process and on two gloo processes under torchrun; with
`torchrun --max-restarts`, a killed worker is restarted and the job finishes by itself.

Kill moments are drawn from a seeded generator (reproducible), placed after a random
number of checkpoint writes plus a random fraction of a step, so that they fall in
forward, backward, the optimizer step, data loading or a checkpoint write.
Set HANET_RELIABILITY_REPORT=path.json to collect the figures of these runs.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hanet.models.checkpoint import safe_load
from train_fixtures import tiny_overrides

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "fault_harness.py"
MAX_ITER = 20  # kills stop at most ~14 iterations in: every planned kill lands before the end
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_args(root, out, *extra):
    return [str(REPO / "train/configs/demo.yaml")] + tiny_overrides(
        root, out, f"train.max_iter={MAX_ITER}", "train.ckpt_every=1", f"train.val_every={MAX_ITER}",
        "train.resume=true", *extra)


def _single(root, out):
    return [sys.executable, str(HARNESS)] + _train_args(root, out)


def _torchrun(root, out, restarts=0):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            f"--max-restarts={restarts}", "--monitor-interval=0.2", str(HARNESS), "--distributed"] + \
        _train_args(root, out)


def _launch(cmd, log: Path, fault: str | None = None) -> subprocess.Popen:
    env = dict(ENV)
    if fault:
        env["HANET_FAULT_SAVE"] = fault
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=log.parent,
                            start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"RANK="):
            return int(kv[5:])
    return None


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _wait_for_saves(proc, last: Path, n: int, timeout=240) -> bool:
    """Wait until last.pt was replaced `n` times by this process; False if it ended first."""
    seen, stamp, deadline = 0, _mtime(last), time.time() + timeout
    while seen < n:
        if proc.poll() is not None:
            return False
        now = _mtime(last)
        if now != stamp:
            seen, stamp = seen + 1, now
        if time.time() > deadline:
            raise TimeoutError(f"no checkpoint progress in {timeout} s")
        time.sleep(0.02)
    return True


def _kill_all(proc):
    for pid in _descendants(proc.pid) + [proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def _iteration(last: Path) -> int:
    return int(safe_load(last)["training"]["iteration"]) if last.exists() else 0


def _weights(path: Path) -> dict:
    return safe_load(path)["state_dict"]


def _assert_same_weights(a: Path, b: Path):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs from the uninterrupted run"


def _report(name: str, figures: dict):
    path = os.environ.get("HANET_RELIABILITY_REPORT")
    if path:
        data = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        data[name] = figures
        Path(path).write_text(json.dumps(data, indent=1))


def _straight(cmd, out: Path):
    out.mkdir(parents=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=out, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _iteration(out / "checkpoints/last.pt") == MAX_ITER
    return out / "checkpoints/last.pt"


def _kill_and_resume(make_cmd, out: Path, rng: random.Random, plan: list[str]):
    """Runs the job, killing it as `plan` says ("random" or "in-save"), resuming after
    each kill, then lets it finish.  Returns the figures."""
    out.mkdir(parents=True)
    log, last = out / "launches.log", out / "checkpoints/last.pt"
    figures = {"kills": 0, "kills_during_checkpoint_write": 0, "launches": 0, "checkpoints_unreadable": 0,
               "checkpoint_went_back": 0}
    done = _iteration(last)
    for what in plan + ["finish"]:
        fault = None
        if what == "in-save":
            fault = f"kill:{rng.randint(1, 2)}:{rng.uniform(0.1, 0.9):.2f}"
        proc = _launch(make_cmd(), log, fault)
        figures["launches"] += 1
        if what == "random":
            if _wait_for_saves(proc, last, rng.randint(1, 2)):
                time.sleep(rng.uniform(0.0, 0.5))
                _kill_all(proc)
                figures["kills"] += 1
        else:
            try:
                proc.wait(timeout=300)
            finally:
                _kill_all(proc)  # torchrun's workers, if it left any
            if what == "in-save":
                assert proc.returncode != 0
                assert list(last.parent.glob(".last.pt.*.tmp")), "the write should have been cut off"
                figures["kills"] += 1
                figures["kills_during_checkpoint_write"] += 1
            else:
                assert proc.returncode == 0, log.read_text()[-4000:]
        # Whatever happened, the checkpoint on disk is complete and no older than before.
        if last.exists():
            try:
                now = _iteration(last)
            except Exception:  # noqa: BLE001  (counted, then failed below)
                figures["checkpoints_unreadable"] += 1
                raise
            assert now >= done, f"the checkpoint went back from iteration {done} to {now}"
            done = now
    figures["final_iteration"] = _iteration(last)
    text = log.read_text()
    figures["resumes"] = text.count("resumed from")
    assert "removing .last.pt." in text  # the half-written file was cleaned up on resume
    assert not list(last.parent.glob(".last.pt.*.tmp"))
    return figures


PLAN = ["random", "in-save", "random", "random"]


def test_single_process_kills_and_resumes_bit_exactly(tiny_cityscapes, tmp_path):
    rng = random.Random(20261126)
    straight = _straight(_single(tiny_cityscapes, tmp_path / "straight"), tmp_path / "straight")
    out = tmp_path / "killed"
    figures = _kill_and_resume(lambda: _single(tiny_cityscapes, out), out, rng, PLAN)
    assert figures["final_iteration"] == MAX_ITER
    assert figures["kills"] == len(PLAN), figures  # every planned kill landed before the run ended
    _assert_same_weights(straight, out / "checkpoints/last.pt")
    figures["weights_equal_uninterrupted"] = True
    _report("single_process", figures)


@pytest.fixture(scope="module")
def straight_ddp(tiny_cityscapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "straight"
    return _straight(_torchrun(tiny_cityscapes, out), out)


def test_two_process_gloo_kills_and_resumes_bit_exactly(tiny_cityscapes, tmp_path, straight_ddp):
    rng = random.Random(4242)
    out = tmp_path / "killed"
    figures = _kill_and_resume(lambda: _torchrun(tiny_cityscapes, out), out, rng, PLAN)
    assert figures["final_iteration"] == MAX_ITER
    assert figures["kills"] == len(PLAN), figures
    ckpt = safe_load(out / "checkpoints/last.pt")
    assert ckpt["training"]["world_size"] == 2
    _assert_same_weights(straight_ddp, out / "checkpoints/last.pt")
    figures["weights_equal_uninterrupted"] = True
    _report("two_process_gloo", figures)


def test_torchrun_max_restarts_recovers_a_killed_worker(tiny_cityscapes, tmp_path, straight_ddp):
    """torchrun --max-restarts=2: one worker is SIGKILLed mid-run; torchrun restarts the
    group, which resumes from last.pt (train.resume=true) and finishes on its own."""
    rng = random.Random(7)
    out = tmp_path / "elastic"
    out.mkdir()
    log, last = out / "launches.log", out / "checkpoints/last.pt"
    proc = _launch(_torchrun(tiny_cityscapes, out, restarts=2), log)
    try:
        assert _wait_for_saves(proc, last, rng.randint(2, 4)), log.read_text()[-3000:]
        time.sleep(rng.uniform(0.0, 0.5))
        victim = [p for p in _descendants(proc.pid) if _rank_of(p) == 1]
        assert victim, "rank 1 not found"
        os.kill(victim[0], signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, log.read_text()[-4000:]
    finally:
        _kill_all(proc)
    text = log.read_text()
    assert "resumed from" in text, text[-3000:]
    assert _iteration(last) == MAX_ITER
    _assert_same_weights(straight_ddp, last)
    _report("torchrun_max_restarts", {"workers_killed": 1, "restarts": text.count("resumed from"),
                                      "final_iteration": MAX_ITER, "weights_equal_uninterrupted": True})
