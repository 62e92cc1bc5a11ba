"""Training: config errors, the LR schedule, exact resume, SIGTERM, torchrun with gloo."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hanet.models import build_model, load
from hanet.training.config import ConfigError, load_config
from hanet.training.optim import build_optimizer, build_scheduler
from hanet.training.run import main as train_main
from train_fixtures import tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def test_every_recipe_config_loads():
    for path in sorted((REPO / "train" / "configs").glob("*.yaml")):
        if path.name.startswith(("_", "eval_", "submit_")):  # eval configs: tests/test_eval_protocol.py
            continue
        cfg = load_config(path)
        build_model(cfg.model.arch, num_classes=cfg.model.num_classes)  # the arch name resolves


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.max_iters'"):
        load_config(None, ["train.max_iters=3"])
    with pytest.raises(ConfigError, match="train.max_iter: expected an int"):
        load_config(None, ["train.max_iter=many"])
    with pytest.raises(ConfigError, match="model.hanet\\[1\\]: expected an int"):
        load_config(None, ["model.hanet=[1,x,1,1,0]"])
    with pytest.raises(ConfigError, match="data.batch_size must be >= 1"):
        load_config(None, ["data.batch_size=0"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    cfg = load_config(None, ["train.lr=1", "model.hanet=[0,0,0,0,0]", "output_dir=x"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.model.hanet == [0, 0, 0, 0, 0]


def test_lr_of_both_groups_follows_the_poly_formula():
    cfg = load_config(None, ["train.lr=0.01", "train.hanet_lr=0.02", "train.poly_exp=0.9",
                             "train.hanet_poly_exp=0.5", "train.max_iter=100", "train.weight_decay=0.0005",
                             "train.hanet_weight_decay=0.0001"])
    model = build_model("deeplabv3plus_mbv2_os16", hanet=[1, 1, 1, 1, 0], hanet_set=[3, 16, 3])
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train.max_iter)
    main, hanet = opt.param_groups
    assert (main["name"], hanet["name"]) == ("main", "hanet")
    assert (main["weight_decay"], hanet["weight_decay"]) == (0.0005, 0.0001)
    n_hanet = sum(p.numel() for s in model.hanet_sites() for p in s.parameters() if p.requires_grad)
    assert sum(p.numel() for p in hanet["params"]) == n_hanet
    for it in range(100):
        assert main["lr"] == pytest.approx(0.01 * (1 - it / 100) ** 0.9, rel=1e-12)
        assert hanet["lr"] == pytest.approx(0.02 * (1 - it / 100) ** 0.5, rel=1e-12)
        opt.step()
        sched.step()


def test_warmup_ramps_then_poly_and_adamw_takes_decoupled_steps():
    cfg = load_config(None, ["train.optimizer=adamw", "train.lr=0.004", "train.hanet_lr=0",
                             "train.warmup_iters=4", "train.max_iter=10", "train.weight_decay=0.01"])
    lin = torch.nn.Linear(3, 1, bias=False)
    lin.hanet_sites = lambda: []
    w0 = lin.weight.detach().clone()
    opt = build_optimizer(lin, cfg.train)
    assert isinstance(opt, torch.optim.AdamW)
    sched = build_scheduler(opt, cfg.train.max_iter, cfg.train.warmup_iters)
    want = [0.004 * min(1, (i + 1) / 4) * (1 - i / 10) ** 0.9 for i in range(10)]
    got = []
    for _ in range(10):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert got == pytest.approx(want, rel=1e-12)
    # One AdamW step by hand (bias-corrected first step: the update is lr * sign(g), plus
    # the decoupled decay lr * wd * w).
    lin.weight.data.copy_(w0)
    opt = build_optimizer(lin, cfg.train)
    lin.weight.grad = torch.tensor([[0.5, -2.0, 3.0]])
    opt.step()
    lr, wd = 0.004, 0.01
    expect = w0 * (1 - lr * wd) - lr * torch.tensor([[1.0, -1.0, 1.0]]) / (1 + 1e-8 / torch.tensor([[0.5, 2.0, 3.0]]))
    assert torch.allclose(lin.weight.detach(), expect, atol=1e-9)
    with pytest.raises(ConfigError, match="train.optimizer must be sgd or adamw, got 'adam'"):
        load_config(None, ["train.optimizer=adam"])
    with pytest.raises(ConfigError, match="train.warmup_iters must be >= 0"):
        load_config(None, ["train.warmup_iters=-1"])


def _weights(path):
    return load(path).state_dict()


@pytest.mark.parametrize("optim", [[], ["train.optimizer=adamw", "train.lr=0.004", "train.warmup_iters=3"]],
                         ids=["sgd", "adamw_warmup"])
def test_interrupted_and_resumed_equals_uninterrupted(tiny_cityscapes, tmp_path, optim):
    assert train_main(tiny_overrides_args(tiny_cityscapes, tmp_path / "straight", *optim)) == 0
    assert train_main(tiny_overrides_args(tiny_cityscapes, tmp_path / "split", "train.stop_at=4", *optim)) == 0
    mid = torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)
    assert mid["training"]["iteration"] == 4
    assert train_main(tiny_overrides_args(tiny_cityscapes, tmp_path / "split", "train.resume=true", *optim)) == 0
    a, b = _weights(tmp_path / "straight/checkpoints/last.pt"), _weights(tmp_path / "split/checkpoints/last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    # the run wrote its logs
    lines = (tmp_path / "straight/metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"miou"' in lines[0] and '"per_class"' in lines[0]
    assert (tmp_path / "straight/checkpoints/best.pt").exists()
    assert any((tmp_path / "straight/tb").iterdir())


def test_resume_with_another_optimizer_is_a_clear_error(tiny_cityscapes, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(tiny_overrides_args(tiny_cityscapes, out, "train.stop_at=2")) == 0
    before = (out / "checkpoints/last.pt").read_bytes()
    assert train_main(tiny_overrides_args(tiny_cityscapes, out, "train.resume=true", "train.optimizer=adamw")) == 1
    err = capsys.readouterr().err
    assert "last.pt was written by a run with train.optimizer=sgd, this config says train.optimizer=adamw" in err
    assert (out / "checkpoints/last.pt").read_bytes() == before  # what was written is kept


def tiny_overrides_args(root, out, *extra):
    return [str(REPO / "train/configs/demo.yaml")] + tiny_overrides(root, out, *extra)


def test_sigterm_saves_last_checkpoint(tiny_cityscapes, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hanet", "train"] + tiny_overrides_args(tiny_cityscapes, out, "train.max_iter=100000",
                                                                         "train.ckpt_every=100000",
                                                                         "train.val_every=100000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        log = out / "tb"
        if log.exists() and (out / "train.log").exists() and "training" in (out / "train.log").read_text():
            break
        time.sleep(0.5)
    time.sleep(3)  # some iterations
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "SIGTERM: saved" in output
    ckpt = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert ckpt["training"]["iteration"] >= 1


def test_missing_dataset_and_corrupt_png_are_clear_errors(tiny_cityscapes, tmp_path, capsys):
    with pytest.raises(FileNotFoundError) as info:
        train_main(tiny_overrides_args(tmp_path / "no_such_root", tmp_path / "r1"))
    assert "leftImg8bit" in str(info.value)  # the expected tree is shown
    # a copy of the dataset with one truncated label
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_cityscapes, root)
    victim = sorted((root / "gtFine/val").rglob("*_labelIds.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(ValueError) as info:
        train_main(tiny_overrides_args(root, tmp_path / "r2", "train.max_iter=3", "train.val_every=3"))
    assert victim.name in str(info.value)


def test_bad_config_exits_with_message(capsys):
    assert train_main([str(REPO / "train/configs/demo.yaml"), "train.nope=1"]) == 2
    assert "unknown config key 'train.nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_process_gloo(tiny_cityscapes, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "train/train.py")] + tiny_overrides_args(tiny_cityscapes, out, "train.max_iter=4",
                                                                "train.val_every=2", "train.ckpt_every=2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert ckpt["training"]["world_size"] == 2 and len(ckpt["training"]["rng"]) == 2
    assert ckpt["training"]["iteration"] == 4
    # only rank 0 writes the log and metrics
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "[rank 1] INFO" not in proc.stdout


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_runs(tiny_cityscapes, tmp_path, amp):
    """Mixed precision on CPU: bf16 autocast, and fp16 with the grad scaler."""
    out = tmp_path / amp
    assert train_main(tiny_overrides_args(tiny_cityscapes, out, f"train.amp={amp}", "train.max_iter=2",
                                          "train.val_every=2")) == 0
    ckpt = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert ckpt["training"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_model_section_is_model_config_with_arch_and_start_weights():
    """The training `model:` section is generated from ModelConfig: the same keys (trunk and
    output stride given by `arch`), the same defaults but aux_loss (true for training), and
    the keys and order a training checkpoint's config has always stored."""
    import dataclasses

    from hanet.models import ModelConfig
    from hanet.training.config import TRAINING_MODEL_DEFAULTS, ModelSection

    names = [f.name for f in dataclasses.fields(ModelSection)]
    assert names == ["arch", "num_classes", "hanet", "hanet_set", "hanet_pos", "pos_rfactor", "pooling", "dropout",
                     "pos_noise", "aux_loss", "pretrained", "init_from", "backend", "cuda_graph"]
    assert set(names) - {"arch", "pretrained", "init_from"} == {f.name for f in dataclasses.fields(ModelConfig)} - {
        "trunk", "output_stride"}
    assert TRAINING_MODEL_DEFAULTS == {"aux_loss": True} and ModelConfig().aux_loss is False
    section = load_config(None).model
    assert section.model_config() == ModelConfig(aux_loss=True)  # the default arch is R101 OS8
    cfg = load_config(None, ["model.arch=DeepR101V3PlusD_HANet", "model.aux_loss=false", "model.hanet=[0,0,0,0,0]"])
    assert cfg.model.model_config() == ModelConfig(output_stride=16, hanet=[0, 0, 0, 0, 0])
    with pytest.raises(ConfigError, match="unknown config key 'model.trunk'"):
        load_config(None, ["model.trunk=resnet-50"])


def test_eval_infer_section_is_inference_config():
    from hanet.evaluation import EvalConfig, EvalInfer, load_eval_config
    from hanet.inference import InferenceConfig

    assert EvalInfer is InferenceConfig and isinstance(EvalConfig().infer, InferenceConfig)
    infer = load_eval_config(["infer.crop_size=[64,96]", "infer.mode=sliding"]).infer
    assert infer == InferenceConfig(mode="sliding", crop_size=(64, 96))
    with pytest.raises(ConfigError, match="infer.crop_size: expected a list of int"):
        load_eval_config(["infer.crop_size=64"])
    with pytest.raises(ValueError, match="crop_size must be"):
        load_eval_config(["infer.crop_size=[1,2,3]"])
    with pytest.raises(ConfigError, match="unknown config key 'infer.crop'"):
        load_eval_config(["infer.crop=[1,2]"])
