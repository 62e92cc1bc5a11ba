"""Every file the original HANet writes, or tells its users to download, loads.

* Checkpoints of its best recipe (--cls_wt_loss --aux_loss): the loss modules are
  submodules of its network, so the files carry ``module.criterion.weight`` and
  ``module.criterion_aux.weight``; they are recognised, reported, not loaded.  The
  files are written as the original's torch (< 1.6) wrote them: legacy format, real
  SGD/LambdaLR states, mean_iu a numpy float64 pickled under numpy 1.x's names.
* The ImageNet ResNet-101 its README names (CSAIL deep-stem layout, no
  num_batches_tracked) and torchvision's ImageNet files, through ``model.pretrained``.
* The Mapillary-pretrained ResNeXt-101 snapshot (no HANet, 65 classes) through
  ``model.init_from``: tensors matching by name and shape are loaded, as the
  original's --snapshot does, and the rest is reported by name.

The files are built here, nothing is downloaded: the best recipe's and the CSAIL
ResNet-101's keys come from the key lists in tests/data/official_keys/; ImageNet
files from torchvision's constructors; the loss-flag matrix and the Mapillary-style
snapshots (no spec lists those configurations) from our model of that configuration.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision

from hanet import cli
from hanet.models import CheckpointError, build_model, load, load_official
from hanet.models.checkpoint import load_matching, safe_load
from hanet.models.pretrained import load_pretrained_trunk
from official_ckpt import (loss_buffers, official_state_dict, real_optimizer_states, spec_command_of,
                           write_official_checkpoint)
from train_fixtures import tiny_overrides

BEST = "r101_os8_hanet"  # the spec's checkpoint of train_r101_os8_hanet_best.sh (--aux_loss --cls_wt_loss)
TRUNK = ("layer0.", "layer1.", "layer2.", "layer3.", "layer4.")
# A fine-tuning run's command also names the file it started from.
SNAPSHOT_FLAGS = " --snapshot ./logs/0101/r101_os8_hanet_best/last_epoch_40_mean-iu_0.81000.pth --restore_optimizer"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _logits(model, seed=0, size=(32, 32)):
    torch.manual_seed(seed)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        return model(x).logits


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    """(file as the original's best recipe writes it, the same file without the loss
    buffers, the model tensors of both, the loss buffers)."""
    tmp = tmp_path_factory.mktemp("best")
    tensors = official_state_dict(BEST)[0]
    command = spec_command_of(BEST)
    assert "--cls_wt_loss" in command and "--aux_loss" in command and "--local_rank=0" in command
    buffers = loss_buffers(["criterion.weight", "criterion_aux.weight"], 19)
    recipe = tmp / "best_epoch_41_mean-iu_0.82210.pth"
    state = write_official_checkpoint(BEST, recipe, extra=buffers, command=command + SNAPSHOT_FLAGS,
                                      real_optimizers=True, legacy_format=True, numpy1_pickle=True, state=tensors)
    plain = tmp / "plain.pth"
    write_official_checkpoint(BEST, plain, state=tensors)
    return recipe, plain, state, buffers


@pytest.fixture(scope="module")
def plain_logits(best):
    return _logits(load_official(best[1]))


def test_best_recipe_file_is_as_the_original_writes_it(best):
    """The fixture itself: what a real file of the recipe holds."""
    recipe, _, state, buffers = best
    assert recipe.read_bytes()[:2] == b"\x80\x02"  # torch < 1.6: a bare pickle stream, not a zip
    assert b"numpy.core.multiarray\nscalar" in recipe.read_bytes()
    ckpt = safe_load(recipe)
    assert set(ckpt) == {"state_dict", "optimizer", "optimizer_at", "scheduler", "scheduler_at", "epoch",
                         "mean_iu", "command"}
    keys = list(ckpt["state_dict"])
    assert keys[:2] == ["module.criterion.weight", "module.criterion_aux.weight"]
    assert keys[2:] == ["module." + k for k in state]
    assert type(ckpt["mean_iu"]) is np.float64 and ckpt["mean_iu"] == 0.8221
    assert ckpt["optimizer"]["state"][0]["momentum_buffer"].shape == (4, 3)
    assert ckpt["scheduler_at"]["lr_lambdas"] == [None] and ckpt["scheduler"]["last_epoch"] == 3
    assert "--snapshot" in ckpt["command"]


def _one_loss_record(caplog, path):
    records = [r for r in caplog.records if "criterion" in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in records]
    msg = records[0].getMessage()
    assert "\n" not in msg and str(path) in msg
    assert "criterion.weight, criterion_aux.weight" in msg and "not loaded" in msg
    return records[0]


def test_best_recipe_loads_through_load_official(best, plain_logits, caplog):
    recipe, _, state, _ = best
    with caplog.at_level(logging.INFO):
        model = load_official(recipe)
    _one_loss_record(caplog, recipe)
    ours = model.state_dict()
    assert list(ours) == list(state)
    for k, v in state.items():
        assert torch.equal(ours[k], v), k
    c = model.config
    assert (c.trunk, c.output_stride, c.hanet, c.aux_loss) == ("resnet-101", 8, [1, 1, 1, 1, 0], True)
    torch.testing.assert_close(_logits(model), plain_logits, rtol=0, atol=0)


def test_best_recipe_loads_through_the_eval_path(best, plain_logits, caplog):
    from hanet.evaluation import load_eval_config, load_model_for_inference, training_defaults

    recipe = best[0]
    cfg = load_eval_config(["device=cpu"], training_defaults(str(recipe)))
    with caplog.at_level(logging.INFO):
        model = load_model_for_inference(str(recipe), cfg)
    _one_loss_record(caplog, recipe)
    assert not model.training
    torch.testing.assert_close(_logits(model), plain_logits, rtol=0, atol=0)


def test_best_recipe_converts(best, plain_logits, tmp_path, capsys, caplog):
    recipe, _, state, _ = best
    out = tmp_path / "converted.pt"
    with caplog.at_level(logging.INFO):
        assert cli.main(["convert-official", str(recipe), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    record = _one_loss_record(caplog, recipe)
    # WARNING: printed to stderr even where no logging is set up (the command line).
    assert record.levelno == logging.WARNING
    converted = load(out)
    assert list(converted.state_dict()) == list(state)
    torch.testing.assert_close(_logits(converted), plain_logits, rtol=0, atol=0)
    meta = safe_load(out)["meta"]
    assert meta["mean_iu"] == pytest.approx(0.8221) and type(meta["mean_iu"]) is float and meta["epoch"] == 41


def test_best_recipe_file_initialises_the_same_model_completely(best):
    """As --snapshot of the same architecture: every tensor taken, the loss buffers not used."""
    recipe, _, state, _ = best
    model = build_model("DeepR101V3PlusD_HANet_OS8", num_classes=19, hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3],
                        hanet_pos=[2, 1], pos_rfactor=8, aux_loss=True)
    report = load_matching(model, recipe)
    loaded, skipped = report
    assert skipped == [] and loaded == list(state)
    assert report.unused == ["criterion.weight", "criterion_aux.weight"]
    assert "criterion.weight, criterion_aux.weight" in str(report)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# -- which loss buffers are accepted -----------------------------------------------------------------

# The flag matrix uses the smallest trunk (the loss buffers do not depend on it); the
# file is official-format like the spec's, its keys those of our model of that config.
SMALL_ARGS = ("--local_rank=0 --dataset cityscapes --arch network.deepv3.DeepShuffleNetV3PlusD_HANet_OS32 "
              "--hanet 1 0 1 0 1 --hanet_set 3 16 3 --hanet_pos 2 1 --pos_rfactor 8 --syncbn --sgd")


@pytest.fixture(scope="module")
def small_states():
    torch.manual_seed(3)
    out = {}
    for aux in (False, True):
        model = build_model("DeepShuffleNetV3PlusD_HANet_OS32", num_classes=19, hanet=[1, 0, 1, 0, 1],
                            hanet_set=[3, 16, 3], hanet_pos=[2, 1], pos_rfactor=8, aux_loss=aux)
        out[aux] = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    return out


def _small_file(tmp_path, states, keys, flags, num_classes=19, dtype=torch.float32, shape=None):
    aux = "--aux_loss" in flags
    buffers = loss_buffers(keys, num_classes)
    for k in buffers:
        if shape is not None:
            buffers[k] = torch.rand(shape)
        buffers[k] = buffers[k].to(dtype)
    path = tmp_path / "small.pth"
    state = states[aux]
    saved = OrderedDict(("module." + k, v) for k, v in {**buffers, **state}.items())
    torch.save({"state_dict": saved, **real_optimizer_states(), "epoch": 3, "mean_iu": np.float64(0.5),
                "command": SMALL_ARGS + flags}, path)
    return path, state


@pytest.mark.parametrize("keys, flags", [
    (["criterion.weight"], " --cls_wt_loss"),
    (["criterion.weight", "criterion_aux.weight"], " --cls_wt_loss --aux_loss"),  # the best recipe
    (["criterion.nll_loss.weight"], " --img_wt_loss"),  # ImageBasedCrossEntropyLoss2d, after a training step
    (["criterion.nll_loss.weight", "criterion_aux.weight"], " --img_wt_loss --cls_wt_loss --aux_loss"),
    ([], " --img_wt_loss --aux_loss"),  # a file saved before the first step has none
    (["criterion_aux.weight"], " --jointwtborder --cls_wt_loss --aux_loss"),  # the relaxed loss has no buffer
])
def test_loss_buffers_of_each_loss_are_accepted(tmp_path, small_states, caplog, keys, flags):
    path, state = _small_file(tmp_path, small_states, keys, flags)
    with caplog.at_level(logging.INFO):
        model = load_official(path)
    ours = model.state_dict()
    assert list(ours) == list(state) and all(torch.equal(ours[k], v) for k, v in state.items())
    messages = [r.getMessage() for r in caplog.records if "criterion" in r.getMessage()]
    assert messages == ([f"{path}: not loaded: {', '.join(keys)} (buffers of the original's training loss, "
                         f"saved with its weights; not part of the model)"] if keys else [])


@pytest.mark.parametrize("keys, flags, kw, pattern", [
    (["criterion.pos_weight"], " --cls_wt_loss", {}, r"unexpected keys \(1\):\s+criterion.pos_weight"),
    (["criterion_attention.weight"], " --cls_wt_loss", {}, r"unexpected keys \(1\):\s+criterion_attention.weight"),
    (["criterion.weight_extra"], " --cls_wt_loss", {}, r"unexpected keys \(1\):\s+criterion.weight_extra"),
    (["criterion.weight"], "", {}, r"criterion.weight is the class weights .* only with --cls_wt_loss"),
    (["criterion.weight"], " --cls_wt_loss --img_wt_loss", {}, r"criterion.weight .* without --img_wt_loss"),
    (["criterion.weight"], " --cls_wt_loss --jointwtborder", {}, r"criterion.weight .* --jointwtborder"),
    (["criterion_aux.weight"], " --cls_wt_loss", {}, r"criterion_aux.weight .* auxiliary head"),  # no dsn here
    (["criterion_aux.weight"], " --aux_loss", {}, r"criterion_aux.weight .* --cls_wt_loss with the auxiliary"),
    (["criterion.nll_loss.weight"], " --cls_wt_loss", {}, r"criterion.nll_loss.weight .* only with --img_wt_loss"),
    (["criterion.weight"], " --cls_wt_loss", {"num_classes": 18}, r"19 entries, one per class; got a "
                                                                  r"torch.float32 tensor of shape \(18,\)"),
    (["criterion.weight"], " --cls_wt_loss", {"shape": (19, 1)}, r"shape \(19, 1\)"),
    (["criterion.weight"], " --cls_wt_loss", {"dtype": torch.int64}, r"float vector .* torch.int64"),
])
def test_other_criterion_keys_are_errors(tmp_path, small_states, keys, flags, kw, pattern):
    path, _ = _small_file(tmp_path, small_states, keys, flags, **kw)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_official(path)
    assert str(path) in str(info.value)


def test_unknown_key_beside_the_loss_buffers_fails_every_entry_point(tmp_path, small_states, capsys):
    from hanet.evaluation import load_eval_config, load_model_for_inference

    keys = ["criterion.weight", "criterion_aux.weight", "criterion_aux.weight_extra"]
    path, _ = _small_file(tmp_path, small_states, keys, " --cls_wt_loss --aux_loss")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\):\s+criterion_aux.weight_extra"):
        load_model_for_inference(str(path), load_eval_config(["device=cpu"]))
    assert cli.main(["convert-official", str(path), str(tmp_path / "out.pt")]) == 1
    assert "criterion_aux.weight_extra" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


# -- ImageNet weights through model.pretrained -----------------------------------------------------

CSAIL_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}


def _csail_resnet101(path, state):
    """The README's pretrained/resnet101-imagenet.pth: deep stem conv1..bn3, layer1..4, fc;
    written by an old torch (legacy format, no num_batches_tracked).  Keys from the spec."""
    file = OrderedDict()
    for k, v in state.items():
        if not k.startswith(TRUNK) or k.endswith("num_batches_tracked"):
            continue
        if k.startswith("layer0."):
            _, idx, rest = k.split(".", 2)
            k = f"{CSAIL_STEM[idx]}.{rest}"
        file[k] = v
    file["fc.weight"] = torch.randn(1000, 2048) * 0.01
    file["fc.bias"] = torch.zeros(1000)
    torch.save(file, path, _use_new_zipfile_serialization=False)
    return file


def _trainer(root, out, *extra):
    from hanet.training.config import load_config
    from hanet.training.distributed import init_distributed
    from hanet.training.trainer import Trainer

    cfg = load_config(None, tiny_overrides(root, out, "data.class_uniform_pct=0", *extra))
    return Trainer(cfg, init_distributed("cpu", use_process_group=False))


R101_HANET = ["model.arch=DeepR101V3PlusD_HANet_OS8", "model.hanet=[1,1,1,1,0]", "model.hanet_set=[3,64,3]",
              "model.hanet_pos=[2,1]", "model.pos_rfactor=8", "model.aux_loss=true"]


def test_csail_resnet101_loads_through_model_pretrained(best, tiny_cityscapes, tmp_path):
    path = tmp_path / "resnet101-imagenet.pth"
    file = _csail_resnet101(path, best[2])  # the spec's ResNet-101 trunk tensors
    trainer = _trainer(tiny_cityscapes, tmp_path / "run", *R101_HANET, f"model.pretrained={path}")
    try:
        own = {k: v for k, v in trainer.model.state_dict().items() if k.startswith(TRUNK)}
    finally:
        trainer.close()
    used = set()
    for k, v in own.items():
        if k.endswith("num_batches_tracked"):
            assert v.item() == 0, k  # what torch gives the original for a file without them
            continue
        src = k
        if k.startswith("layer0."):
            _, idx, rest = k.split(".", 2)
            src = f"{CSAIL_STEM[idx]}.{rest}"
        assert torch.equal(v.cpu(), file[src]), k
        used.add(src)
    assert used == set(file) - {"fc.weight", "fc.bias"}  # every trunk tensor of the file is in the model


def _tv_to_ours(key: str, trunk: str) -> str | None:
    """Our trunk key of a torchvision key, from the original's split of each trunk."""
    if trunk == "mobilenetv2":
        m = re.match(r"features\.(\d+)\.(.*)", key)
        if not m:
            return None
        i = int(m.group(1))
        for stage, (lo, hi) in enumerate([(0, 2), (2, 7), (7, 11), (11, 18), (18, 19)]):
            if lo <= i < hi:
                return f"layer{stage}.{i - lo}.{m.group(2)}"
    for old, new in (("conv1.", "layer0.0."), ("bn1.", "layer0.1.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key if key.startswith(TRUNK) else None


@pytest.mark.parametrize("arch, ctor, counters, legacy", [
    ("deeplabv3plus_rx101_os8", torchvision.models.resnext101_32x8d, True, False),
    ("deeplabv3plus_wrn50_os16", torchvision.models.wide_resnet50_2, False, False),
    ("deeplabv3plus_mbv2_os16", torchvision.models.mobilenet_v2, False, True),
])
def test_torchvision_files_load(tmp_path, arch, ctor, counters, legacy):
    torch.manual_seed(7)
    tv = ctor(weights=None)
    with torch.no_grad():  # running statistics that differ from a fresh model's
        for name, buf in tv.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(1234)
    file = {k: v for k, v in tv.state_dict().items() if counters or not k.endswith("num_batches_tracked")}
    path = tmp_path / "imagenet.pth"
    torch.save(file, path, **({"_use_new_zipfile_serialization": False} if legacy else {}))
    torch.manual_seed(8)
    model = build_model(arch)
    trunk = model.config.trunk
    load_pretrained_trunk(model, path)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(TRUNK)}
    mapped = {_tv_to_ours(k, trunk): v for k, v in file.items() if _tv_to_ours(k, trunk) is not None}
    assert set(own) - set(mapped) == ({k for k in own if k.endswith("num_batches_tracked")} if not counters else set())
    assert set(mapped) <= set(own)
    for k, v in own.items():
        expected = mapped.get(k, torch.tensor(0))  # counters absent from the file start at 0
        assert torch.equal(v, expected), k


def test_partly_missing_counters_are_still_an_error(tmp_path):
    """Only a file with no counters at all is an old file; one lacking some is damaged."""
    state = torchvision.models.mobilenet_v2(weights=None).state_dict()
    del state["features.5.conv.1.1.num_batches_tracked"]
    torch.save(state, tmp_path / "mbv2.pth")
    with pytest.raises(CheckpointError, match=r"mbv2.pth does not fit .*\n  missing \(1\): "
                                              r"layer1.3.conv.1.1.num_batches_tracked$"):
        load_pretrained_trunk(build_model("deeplabv3plus_mbv2_os16"), tmp_path / "mbv2.pth")


# -- the Mapillary-pretrained ResNeXt-101 through model.init_from ----------------------------------

MAPILLARY_COMMAND = ("--local_rank=0 --dataset mapillary --arch network.deepv3.DeepResNext101V3PlusD_HANet_OS8 "
                     "--lr_schedule poly --lr 0.01 --poly_exp 0.9 --syncbn --sgd --crop_size 896 --img_wt_loss "
                     "--aux_loss --snapshot ./pretrained/imagenet.pth --max_iter 150000 --bs_mult 2 "
                     "--date 0101 --exp mapillary_resnext --ckpt ./logs/ --tb_path ./logs/")


def _mapillary_style(arch: str, path, seed: int) -> OrderedDict:
    """An official-format snapshot of `arch` without HANet, 65 classes, aux head, saved
    from DDP with the original's other entries and an image-weighted loss buffer;
    every tensor random (conv weights from the initialisation under `seed`; biases,
    BN weights, running statistics and counters drawn here).  Returns its model
    tensors (no prefix)."""
    torch.manual_seed(seed)
    src = build_model(arch, num_classes=65, hanet=[0, 0, 0, 0, 0], aux_loss=True)
    assert not any(k.startswith("hanet") for k in src.state_dict())
    g = torch.Generator().manual_seed(seed + 1)
    state = OrderedDict()
    for k, v in src.state_dict().items():
        if v.dtype == torch.int64:
            state[k] = torch.randint(1, 10**6, v.shape, generator=g)
        elif v.dim() >= 2:
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    saved = OrderedDict([("module.criterion.nll_loss.weight", torch.rand(65, generator=g) + 1)])
    saved.update(("module." + k, v) for k, v in state.items())
    torch.save({"state_dict": saved, **real_optimizer_states(3), "epoch": 175, "mean_iu": np.float64(0.47475),
                "command": MAPILLARY_COMMAND}, path)
    return state


@pytest.fixture(scope="module")
def mapillary(tmp_path_factory):
    """resnext_mapillary_0.47475.pth: ResNeXt-101 OS8 DeepLabV3+ without HANet, 65 classes."""
    path = tmp_path_factory.mktemp("mapillary") / "resnext_mapillary_0.47475.pth"
    return path, _mapillary_style("DeepResNext101V3PlusD_HANet_OS8", path, seed=11)


RX101_HANET = dict(num_classes=19, hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8,
                   aux_loss=True)
HEADS = ["final2.0.weight", "final2.0.bias", "dsn.4.weight", "dsn.4.bias"]


def test_mapillary_snapshot_initialises_a_hanet_model(mapillary):
    path, state = mapillary
    torch.manual_seed(99)
    model = build_model("deeplabv3plus_rx101_os8", **RX101_HANET)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_matching(model, path)
    loaded, skipped = report
    after = model.state_dict()
    hanet_keys = [k for k in after if k.startswith("hanet")]
    assert hanet_keys and not any(k in state for k in hanet_keys)
    # The original's rule: a model tensor is taken when its name is in the file with the same shape.
    expected = [k for k in after if k in state and state[k].shape == after[k].shape]
    assert loaded == expected and len(loaded) == len(after) - len(hanet_keys) - len(HEADS)
    for k in loaded:
        assert torch.equal(after[k], state[k]), k
    for k in hanet_keys + HEADS:  # the skipped keep their own values
        assert torch.equal(after[k], before[k]), k
    assert sorted(report.misshaped, key=HEADS.index) == HEADS and report.absent == hanet_keys
    assert report.unused == ["criterion.nll_loss.weight"]
    assert sorted(s.split(" ")[0] for s in skipped) == sorted(HEADS + hanet_keys)
    text = str(report)
    assert "\n" not in text
    assert f"loaded {len(loaded)} of the model's {len(after)} tensors" in text
    assert "final2.0.weight (file (65, 256, 1, 1) vs model (19, 256, 1, 1))" in text
    assert "dsn.4.bias (file (65,) vs model (19,))" in text
    for site in range(4):
        n = sum(k.startswith(f"hanet{site}.") for k in hanet_keys)
        assert f"hanet{site}.* (all {n})" in text
    assert "hanet4" not in text and "criterion.nll_loss.weight" in text


def test_mapillary_style_snapshot_through_the_trainer(tiny_cityscapes, tmp_path):
    """model.init_from as train_resnext_fr_pretrain.sh uses --snapshot, through the
    trainer (the training fixtures' small trunk, so that it is quick): the tensors are
    taken and the run log holds the one-line report."""
    path = tmp_path / "snapshot.pth"
    state = _mapillary_style("deeplabv3plus_shufflenetv2_os32", path, seed=21)
    trainer = _trainer(tiny_cityscapes, tmp_path / "run", f"model.init_from={path}")
    try:
        after = trainer.model.state_dict()
        hanet = trainer.model.config.hanet
    finally:
        trainer.close()
    assert hanet == [1, 1, 1, 1, 1] and trainer.model.config.num_classes == 19
    taken = [k for k in after if not k.startswith("hanet") and k not in HEADS]
    assert len(taken) == len(state) - len(HEADS)
    for k in taken:
        assert torch.equal(after[k].cpu(), state[k]), k
    for k in HEADS:
        assert after[k].shape[0] == 19
    log = (tmp_path / "run" / "train.log").read_text()
    lines = [ln for ln in log.splitlines() if "init_from" in ln]
    assert len(lines) == 1, log
    assert f"loaded {len(taken)} of the model's {len(after)} tensors" in lines[0]
    assert "final2.0.weight (file (65, 256, 1, 1) vs model (19, 256, 1, 1))" in lines[0]
    assert all(f"hanet{i}.* (all" in lines[0] for i in range(5)) and "criterion.nll_loss.weight" in lines[0]
