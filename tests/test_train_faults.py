"""Numerical and storage faults during training: a NaN/Inf loss stops the run (or is
skipped by the fp16 grad scaler) and keeps the last good checkpoint; a checkpoint write
that fails (disk full, file-size limit) keeps the previous checkpoint and says so."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fault_harness import install_save_fault
from hanet.models.checkpoint import safe_load
from hanet.training import losses
from hanet.training.run import main as train_main
from train_fixtures import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve().parent / "fault_harness.py"


def _args(root, out, *extra):
    return [str(REPO / "train/configs/demo.yaml")] + tiny_overrides(root, out, "train.val_every=100", *extra)


@pytest.fixture
def bad_loss_at(monkeypatch):
    """bad_loss_at(value, calls): the loss is `value` at the given (0-based) loss calls."""

    def install(value: float, calls):
        real = losses.SegLoss.forward
        seen = {"n": 0}

        def forward(self, *a, **k):
            total, main, aux = real(self, *a, **k)
            n = seen["n"]
            seen["n"] += 1
            if n in calls:
                total = total * float("nan") if value != value else total + value
            return total, main, aux

        monkeypatch.setattr(losses.SegLoss, "forward", forward)

    return install


def _finite(path):
    ckpt = safe_load(path)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    return ckpt


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_cityscapes, tmp_path, capsys, bad_loss_at, value):
    out = tmp_path / "run"
    bad_loss_at(value, {4})  # the 5th step: after the checkpoints of iterations 2 and 4
    assert train_main(_args(tiny_cityscapes, out, "train.ckpt_every=2", "train.max_iter=8")) == 1
    err = capsys.readouterr().err
    assert f"the loss became {value} at iteration 4; stopping" in err
    assert str(out / "checkpoints/last.pt") in err
    ckpt = _finite(out / "checkpoints/last.pt")
    assert ckpt["training"]["iteration"] == 4


def test_fp16_skips_a_non_finite_step_and_goes_on(tiny_cityscapes, tmp_path, bad_loss_at):
    out = tmp_path / "run"
    bad_loss_at(float("inf"), {1})
    assert train_main(_args(tiny_cityscapes, out, "train.amp=fp16", "train.max_iter=3")) == 0
    ckpt = _finite(out / "checkpoints/last.pt")
    assert ckpt["training"]["iteration"] == 3
    # the scaler saw the overflow: it halved its scale at least once from 2**16 (growth needs 2000 good steps)
    assert ckpt["training"]["scaler"]["scale"] <= 2.0**15
    assert "the grad scaler skips this step (1 in a row)" in (out / "train.log").read_text()


def test_fp16_stops_after_too_many_skipped_steps(tiny_cityscapes, tmp_path, capsys, bad_loss_at):
    out = tmp_path / "run"
    bad_loss_at(float("nan"), set(range(2, 100)))
    code = train_main(_args(tiny_cityscapes, out, "train.amp=fp16", "train.max_iter=20", "train.ckpt_every=2",
                            "train.max_skipped_steps=3"))
    assert code == 1
    err = capsys.readouterr().err
    assert "non-finite for 3 steps in a row (last at iteration 4); stopping" in err
    # iterations 2 and 3 were skipped steps (weights unchanged); iteration 4 was saved before the 3rd skip.
    assert _finite(out / "checkpoints/last.pt")["training"]["iteration"] == 4


def test_disk_full_during_checkpoint_write_keeps_previous(tiny_cityscapes, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(torch, "save", torch.save)  # undone after the test
    install_save_fault("enospc:2:0.5")  # the second write of last.pt runs out of space half-way
    assert train_main(_args(tiny_cityscapes, out, "train.ckpt_every=2", "train.max_iter=8")) == 1
    err = capsys.readouterr().err
    last = out / "checkpoints/last.pt"
    assert (f"could not write checkpoint {last} at iteration 4: No space left on device. "
            f"The previous last.pt (iteration 2) is intact") in err
    assert _finite(last)["training"]["iteration"] == 2
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"], "the half-written file must be removed"


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_real_write_limit_keeps_previous_checkpoint(tiny_cityscapes, tmp_path):
    """A real OS refusal (RLIMIT_FSIZE -> EFBIG) while the resumed run saves."""
    out = tmp_path / "run"
    assert train_main(_args(tiny_cityscapes, out, "train.stop_at=2", "train.max_iter=6")) == 0
    last = out / "checkpoints/last.pt"
    before = last.read_bytes()
    cmd = [sys.executable, str(HARNESS)] + _args(tiny_cityscapes, out, "train.resume=true", "train.max_iter=6",
                                                  "train.ckpt_every=1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          preexec_fn=_limit_file_size(len(before) // 2), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"error: could not write checkpoint {last} at iteration 3: File too large" in proc.stderr
    assert "The previous last.pt (iteration 2) is intact" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert last.read_bytes() == before
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"]


def _drop(key):
    return lambda c: c["training"].pop(key)


MALFORMED = {
    "no_optimizer": (_drop("optimizer"), "training state lacks optimizer"),
    "training_is_a_list": (lambda c: c.__setitem__("training", [1, 2]), "training state lacks iteration"),
    "model_config_is_a_string": (lambda c: c.__setitem__("model_config", "r101"), "model_config missing or not a dict"),
    "state_dict_is_none": (lambda c: c.__setitem__("state_dict", None), "state_dict missing or not a dict"),
    "iteration_not_a_number": (lambda c: c["training"].__setitem__("iteration", "ten"), "malformed training state"),
    "rng_of_too_few_ranks": (lambda c: c["training"].__setitem__("rng", []), "malformed training state"),
    "optimizer_of_another_model": (lambda c: c["training"]["optimizer"]["param_groups"].pop(),
                                   "malformed training state"),
    "iteration_past_max_iter": (lambda c: c["training"].__setitem__("iteration", 10**6), "is outside [0"),
}


@pytest.fixture(scope="module")
def resumable(tiny_cityscapes, tmp_path_factory):
    """A trainer whose run directory holds a real last.pt (iteration 1), and that checkpoint."""
    from hanet.training.config import load_config
    from hanet.training.distributed import init_distributed
    from hanet.training.trainer import Trainer

    out = tmp_path_factory.mktemp("stopped") / "run"
    assert train_main(_args(tiny_cityscapes, out, "train.stop_at=1", "train.max_iter=4")) == 0
    cfg = load_config(*(lambda a: (a[0], a[1:]))(_args(tiny_cityscapes, out, "train.max_iter=4")))
    trainer = Trainer(cfg, init_distributed("cpu", use_process_group=False))
    last = out / "checkpoints/last.pt"
    yield trainer, last, last.read_bytes()
    trainer.close()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_resume_from_a_malformed_training_checkpoint_is_a_clear_error(resumable, case):
    from hanet.models.checkpoint import CheckpointError

    trainer, last, intact = resumable
    mutate, expected = MALFORMED[case]
    last.write_bytes(intact)
    trainer.resume()  # the intact file resumes
    assert trainer.iteration == 1
    ckpt = torch.load(last, weights_only=True)
    mutate(ckpt)
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError) as info:
        trainer.resume()
    assert str(last) in str(info.value) and expected in str(info.value)


def test_resume_error_is_one_line_from_the_command(tiny_cityscapes, resumable, capsys):
    _, last, intact = resumable
    ckpt = torch.load(__import__("io").BytesIO(intact), weights_only=True)
    ckpt["training"].pop("scaler")
    torch.save(ckpt, last)
    try:
        assert train_main(_args(tiny_cityscapes, last.parents[1], "train.resume=true", "train.max_iter=4")) == 1
    finally:
        last.write_bytes(intact)
    err = capsys.readouterr().err
    assert err == f"error: {last} is not a complete training checkpoint: training state lacks scaler\n"
