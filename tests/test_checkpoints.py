"""Official checkpoints load strictly with identical outputs; our own format round-
trips; corrupt, mismatched and hostile files give clear errors and never run code."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from hanet.models import CheckpointError, build_model, load, load_official, save
from hanet.models.pretrained import load_pretrained_trunk
from official_ckpt import official_state_dict, write_official_checkpoint


@pytest.fixture(scope="module")
def r50_official(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "r50_os16_hanet_emb.pth"
    state = write_official_checkpoint("r50_os16_hanet_emb", path, seed=1)
    return path, state


def test_load_official_r101_best_recipe(tmp_path):
    path = tmp_path / "best.pth"
    state = write_official_checkpoint("r101_os8_hanet", path)
    model = load_official(path)
    assert not model.training
    cfg = model.config
    assert (cfg.trunk, cfg.output_stride, cfg.hanet, cfg.hanet_set, cfg.hanet_pos, cfg.pos_rfactor) == (
        "resnet-101", 8, [1, 1, 1, 1, 0], [3, 64, 3], [2, 1], 8)
    assert cfg.aux_loss and cfg.dropout == 0.1 and cfg.pos_noise == 0.5
    ours = model.state_dict()
    assert list(ours) == list(state)
    for k, v in state.items():
        assert torch.equal(ours[k], v), k


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)


def _cbr(x, sd, p, conv, bn, dilation=1, padding=0):
    return F.relu(_bn(F.conv2d(x, sd[f"{p}.{conv}.weight"], None, 1, padding, dilation), sd, f"{p}.{bn}"))


def _spec_hanet(sd, p, x_low, x_high, pos_map, f, injection, pooling):
    """One HANet site written from the spec, with plain PyTorch calls."""
    rows = 128 // f
    z = (F.adaptive_avg_pool2d if pooling == "mean" else F.adaptive_max_pool2d)(x_low, (rows, 1)).squeeze(3)
    table = sd[f"{p}.pos_emb1d_{'1st' if injection == 1 else '2nd'}.pos_layer.weight"]
    pos = (pos_map // f)[:, :, 0].unsqueeze(1).float()
    pos = F.interpolate(pos, size=rows, mode="nearest").long().squeeze(1)
    term = F.embedding(pos, table).transpose(1, 2)
    if injection == 1:
        z = z + term
    z = F.relu(F.batch_norm(F.conv1d(z, sd[f"{p}.attention_first.0.weight"]), sd[f"{p}.attention_first.1.running_mean"],
                            sd[f"{p}.attention_first.1.running_var"], sd[f"{p}.attention_first.1.weight"],
                            sd[f"{p}.attention_first.1.bias"], False, 0.0, 1e-5))
    if injection == 2:
        z = z + term
    z = F.conv1d(z, sd[f"{p}.attention_second.0.weight"], sd[f"{p}.attention_second.0.bias"], padding=1)
    z = F.relu(F.batch_norm(z, sd[f"{p}.attention_second.1.running_mean"], sd[f"{p}.attention_second.1.running_var"],
                            sd[f"{p}.attention_second.1.weight"], sd[f"{p}.attention_second.1.bias"], False, 0.0, 1e-5))
    w3 = sd[f"{p}.attention_third.0.weight"]
    z = F.conv1d(z, w3, sd[f"{p}.attention_third.0.bias"], padding=w3.shape[-1] // 2)
    att = F.interpolate(torch.sigmoid(z), size=x_high.shape[2], mode="linear")
    return x_high * att.unsqueeze(3)


def _spec_head(model, sd, images, pos_map, f, injection, sites, rates):
    """DeepLabV3+ head and HANet sites from the spec (the trunk modules are reused)."""
    up = lambda t, size: F.interpolate(t, size=size, mode="bilinear", align_corners=True)  # noqa: E731
    x = model.layer0(images)
    low = x = model.layer1(x)
    aux = x = model.layer3(model.layer2(x))
    x = model.layer4(x)
    if sites[0]:
        x = _spec_hanet(sd, "hanet0", aux, x, pos_map, f, injection, "mean")
    rep = x
    img = up(_cbr(F.adaptive_avg_pool2d(x, 1), sd, "aspp.img_conv", 0, 1), x.shape[2:])
    branches = [_cbr(x, sd, "aspp.features.0", 0, 1)] + [
        _cbr(x, sd, f"aspp.features.{i + 1}", 0, 1, dilation=r, padding=r) for i, r in enumerate(rates)]
    x = torch.cat([img] + branches, 1)
    if sites[1]:
        x = _spec_hanet(sd, "hanet1", rep, x, pos_map, f, injection, "mean")
    d = _cbr(x, sd, "bot_aspp", 0, 1)
    if sites[2]:
        d = _spec_hanet(sd, "hanet2", x, d, pos_map, f, injection, "mean")
    dec0 = torch.cat([_cbr(low, sd, "bot_fine", 0, 1), up(d, low.shape[2:])], 1)
    dec1 = _cbr(_cbr(dec0, sd, "final1", 0, 1, padding=1), sd, "final1", 3, 4, padding=1)
    if sites[3]:
        dec1 = _spec_hanet(sd, "hanet3", dec0, dec1, pos_map, f, injection, "mean")
    dec2 = F.conv2d(dec1, sd["final2.0.weight"], sd["final2.0.bias"])
    if sites[4]:
        dec2 = _spec_hanet(sd, "hanet4", dec1, dec2, pos_map, f, injection, "max")
    return up(dec2, images.shape[2:])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_official_checkpoint_gives_the_spec_outputs(r50_official, backend):
    """The loaded model computes what the original computes (spec written out with
    plain PyTorch calls), on a crop with its own row positions, on both op backends."""
    path, state = r50_official
    model = load_official(path, backend=backend)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 96, 128)
    # A crop from rows 300..395 of the 1024-row frame, then padding rows (128).
    pos_map = (torch.arange(300, 396) // 8)[None, :, None].expand(2, 96, 128).clone()
    pos_map[:, -10:] = 128
    with torch.no_grad():
        ours = model(images, pos_h=pos_map).logits
        spec = _spec_head(model, state, images, pos_map, f=16, injection=1, sites=[1, 1, 1, 1, 1], rates=(6, 12, 18))
    assert torch.isfinite(spec).all()
    torch.testing.assert_close(ours, spec, rtol=1e-4, atol=1e-4 * spec.abs().max().item())


def test_strict_load_names_the_offending_keys(tmp_path):
    state, command = official_state_dict("r50_os16_hanet_emb")
    del state["hanet2.attention_third.0.bias"]
    state["hanet9.extra.weight"] = torch.zeros(3)
    state["final2.0.bias"] = torch.zeros(19)
    state["bot_fine.0.weight"] = torch.zeros(48, 255, 1, 1)
    torch.save({"state_dict": state, "command": command}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_official(tmp_path / "bad.pth")
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "missing keys (1)" in msg and "hanet2.attention_third.0.bias" in msg
    assert "unexpected keys (1)" in msg and "hanet9.extra.weight" in msg
    assert "mis-shaped keys (1)" in msg and "bot_fine.0.weight" in msg


class _Payload:
    """Pickles as a call that creates a marker file: loading must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("loader", [load_official, load])
def test_pickled_code_payload_is_refused(tmp_path, loader):
    marker = tmp_path / "pwned"
    state, command = official_state_dict("r50_os16_hanet_emb")
    torch.save({"state_dict": state, "command": command, "epoch": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load .*evil.pth"):
        loader(tmp_path / "evil.pth")
    assert not marker.exists(), "the payload ran"


def test_truncated_and_missing_files_name_the_file(tmp_path, r50_official):
    path, _ = r50_official
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pth .*truncated or corrupt"):
        load(tmp_path / "cut.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_official(tmp_path / "junk.pth")


def test_our_format_round_trips_without_flags(tmp_path):
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=4, hanet=[1, 0, 1, 0, 1], hanet_set=[3, 16, 2],
                        hanet_pos=[1, 0], pos_rfactor=16, aux_loss=True).eval()
    save(model, tmp_path / "m.pt", meta={"note": "test"})
    again = load(tmp_path / "m.pt")
    assert again.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, model(x).logits, rtol=0, atol=0)


def test_convert_official_cli(tmp_path, r50_official):
    path, state = r50_official
    out = tmp_path / "converted.pt"
    proc = subprocess.run([sys.executable, "-m", "hanet", "convert-official", str(path), str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = load(out)
    assert model.config.trunk == "resnet-50" and model.config.hanet == [1, 1, 1, 1, 1]
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v)


def test_pretrained_trunk_layouts(tmp_path):
    import torchvision

    # torchvision layout (ResNet-50)
    tv = torchvision.models.resnet50(weights=None)
    torch.save(tv.state_dict(), tmp_path / "resnet50.pth")
    model = build_model("deeplabv3plus_r50_os16")
    load_pretrained_trunk(model, tmp_path / "resnet50.pth")
    assert torch.equal(model.layer0[0].weight, tv.conv1.weight)
    assert torch.equal(model.layer4[2].conv3.weight, tv.layer4[2].conv3.weight)
    # the original README's deep-stem ResNet-101 layout
    r101 = build_model("deeplabv3plus_r101_os8")
    stem = {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 4, "conv3": 6, "bn3": 7}
    deep = {}
    for k, v in r101.state_dict().items():
        if k.startswith("layer0."):
            idx, rest = k.split(".", 2)[1:]
            name = next(n for n, i in stem.items() if i == int(idx))
            deep[f"{name}.{rest}"] = torch.randn_like(v.float()).to(v.dtype)
        elif k.startswith("layer"):
            deep[k] = torch.randn_like(v.float()).to(v.dtype)
    deep["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(deep, tmp_path / "resnet101-imagenet.pth")
    load_pretrained_trunk(r101, tmp_path / "resnet101-imagenet.pth")
    assert torch.equal(r101.layer0[6].weight, deep["conv3.weight"])
    # mobilenet_v2 torchvision layout
    mb = torchvision.models.mobilenet_v2(weights=None)
    torch.save(mb.state_dict(), tmp_path / "mbv2.pth")
    m = build_model("deeplabv3plus_mbv2_os16")
    load_pretrained_trunk(m, tmp_path / "mbv2.pth")
    assert torch.equal(m.layer3[6].conv[0][0].weight, mb.features[17].conv[0][0].weight)
    # a file for another trunk is a clear error
    with pytest.raises(CheckpointError, match="does not fit the resnet-101 trunk"):
        load_pretrained_trunk(r101, tmp_path / "resnet50.pth")


# -- hanet.checkpoints: one schema, the old paths as aliases, no import cycle --------------------------


FIRST_IMPORTS = ["hanet.checkpoints", "hanet.models", "hanet.models.checkpoint", "hanet.models.official",
                 "hanet.checkpoints.official", "hanet.training.trainer", "hanet.evaluation"]
_ALIASES_ARE_ONE = (
    "import hanet.models as m, hanet.checkpoints as c, hanet.models.checkpoint as old, "
    "hanet.models.official as old_official\n"
    "assert m.load is c.load is old.load and m.save is c.save and m.load_official is c.load_official\n"
    "assert m.CheckpointError is c.CheckpointError is old.CheckpointError and m.safe_load is c.safe_load\n"
    "assert old.load_matching is c.load_matching and old_official.convert_official is c.convert_official\n")
_MODELS_ALONE = ("import sys, hanet.models\n"
                 "print(sorted(m for m in sys.modules if m.startswith('hanet.checkpoints')))")


@pytest.fixture(scope="module")
def fresh_interpreters():
    """Every fresh-interpreter check of this section, started at once (each one mostly
    waits for torch to import): {name: CompletedProcess-like (returncode, stdout, stderr)}."""
    scripts = {first: f"import {first}\n" + _ALIASES_ARE_ONE for first in FIRST_IMPORTS}
    scripts["models alone"] = _MODELS_ALONE
    cwd = pathlib.Path(__file__).resolve().parents[1]
    procs = {name: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=cwd) for name, code in scripts.items()}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_every_checkpoint_module_imports_first_in_a_fresh_interpreter(first, fresh_interpreters):
    """hanet.checkpoints builds on hanet.models; hanet.models reaches it only lazily, so
    whichever is imported first, nothing meets a half-initialised module."""
    proc = fresh_interpreters[first]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_hanet_models_does_not_import_hanet_checkpoints_at_start_up(fresh_interpreters):
    proc = fresh_interpreters["models alone"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_training_state_round_trips_and_keeps_the_file_layout():
    from hanet.checkpoints import FORMAT, VERSION, TrainingState

    model = build_model("deeplabv3plus_shufflenetv2_os32", num_classes=3, hanet=[0, 0, 0, 0, 1], hanet_set=[3, 16, 3])
    state = TrainingState(model_config=model.config, state_dict=model.state_dict(), iteration=7,
                          optimizer={"state": {}, "param_groups": []}, scheduler={"last_epoch": 7},
                          scaler={"scale": 1.0}, rng=[{"torch": torch.get_rng_state()}], world_size=1,
                          best_miou=0.25, config={"output_dir": "x"})
    payload = state.to_payload()
    # The layout the files have always had (files written before hanet.checkpoints must still load).
    assert list(payload) == ["format", "version", "model_config", "state_dict", "meta", "training"]
    assert (payload["format"], payload["version"]) == (FORMAT, VERSION)
    assert payload["meta"] == {"iteration": 7, "best_miou": 0.25}
    assert list(payload["training"]) == ["iteration", "optimizer", "scheduler", "scaler", "rng", "world_size",
                                         "best_miou", "config"]
    assert list(payload["model_config"]) == list(model.config.to_dict())
    back = TrainingState.from_payload(payload, "mem")
    assert back.model_config == model.config and back.iteration == 7 and back.best_miou == 0.25
    assert back.rng[0]["torch"].equal(state.rng[0]["torch"]) and back.config == {"output_dir": "x"}
    with pytest.raises(CheckpointError, match="holds no training state"):
        TrainingState.from_payload({k: v for k, v in payload.items() if k != "training"}, "mem")
    with pytest.raises(CheckpointError, match="malformed training state"):
        TrainingState.from_payload({**payload, "training": {**payload["training"], "world_size": "two"}}, "mem")


def test_official_reader_keeps_the_bookkeeping_for_the_converter_only(tmp_path, r50_official):
    """A bad mean_iu does not stop loading an official file (only converting it keeps it)."""
    from hanet.checkpoints import OfficialCheckpoint, convert_official

    path = r50_official[0]
    ckpt = torch.load(path, weights_only=False)
    ckpt["mean_iu"] = "n/a"
    bad = tmp_path / "bad_mean_iu.pth"
    torch.save(ckpt, bad)
    load_official(bad)
    with pytest.raises(CheckpointError, match="'mean_iu' must be a number"):
        convert_official(bad, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    official = OfficialCheckpoint.from_payload(torch.load(path, weights_only=False), "mem")
    assert set(official.numbers("mem")) == {"mean_iu", "epoch"}
    assert not any(k.startswith("module.") for k in official.state_dict)


def test_position_constants_have_one_name_each():
    import hanet.data.position as data_pos
    import hanet.inference as inference
    import hanet.models.pos_encoding as model_pos

    assert data_pos.FRAME_HEIGHT == 1024 and data_pos.POSITION_ROWS == model_pos.POSITION_ROWS == 128
    assert data_pos.POS_PAD == 128 and inference.POS_PAD is data_pos.POS_PAD
    for module in (data_pos, model_pos, inference):
        assert not hasattr(module, "FRAME_ROWS") and not hasattr(module, "PAD_POSITION")
