"""Hostile and damaged files on every loading path.

Checkpoints: truncated at several points, bit-flipped, random bytes, a directory, a
missing file, a zip that is not a torch file, a torch file holding a list or a
tensor, wrong and mis-shaped keys, and pickled code payloads (a plain pickle, a
torch zip whose data.pkl is the payload, a payload hidden inside an otherwise valid
state dict, a legacy non-zip torch.save file).  They go through hanet.models.load,
safe_load, load_official, convert_official and `hanet convert-official`,
load_matching, the pretrained-trunk loader, training resume (Trainer and `hanet
train ... train.resume=true`), `hanet eval` and `hanet predict`: each must fail with
an error that names the file and says what is wrong (on the command line: exit
status 1, the message, no traceback), quickly, and no payload may ever run.

Images: zero-byte, truncated-IDAT, truncated-JPEG and text-renamed-.png files and a
label whose size differs from its image, in a Cityscapes tree and in a folder for
`hanet predict`: by default the error names the bad file; with skip_corrupt (the
``data.skip_corrupt`` key of the training and evaluation configs) the bad files are
skipped, counted, reported as a warning, and the rest loads.
"""
from __future__ import annotations

import builtins
import io
import logging
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hanet import cli
from hanet.data import BadFileError, CityscapesDataset, CorruptFileError, ImageFolder, SizeMismatchError
from hanet.models import CheckpointError, build_model, convert_official, load, load_official, safe_load
from hanet.models.checkpoint import load_matching
from hanet.models.pretrained import load_pretrained_trunk
from train_fixtures import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "train" / "configs" / "demo.yaml"
ARCH = "deeplabv3plus_shufflenetv2_os32"  # the training fixtures' model
OFFICIAL_COMMAND = ("python -m torch.distributed.launch --nproc_per_node=2 train.py --dataset cityscapes "
                    "--arch network.deepv3.DeepShuffleNetV3PlusD_HANet_OS32 --hanet 1 1 1 1 1 --hanet_set 3 16 3 "
                    "--hanet_pos 2 1 --pos_rfactor 8 --dropout 0.1 --pos_noise 0.5 --aux_loss --local_rank=0")
# Fast resume runs: no class-uniform centroid pass.
FAST = ("data.class_uniform_pct=0",)


# -- nothing may hang ----------------------------------------------------------------------------


class Hang(Exception):
    pass


@pytest.fixture(autouse=True)
def no_hang():
    """Fails a test that runs longer than 60 s (a loader stuck on a hostile file)."""
    def alarm(signum, frame):
        raise Hang("the test ran past 60 s: a loader hangs on a hostile file")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- payloads ------------------------------------------------------------------------------------


class SystemPayload:
    """Unpickles as os.system("touch <marker>")."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


class ExecPayload:
    """Unpickles as exec("open(<marker>, 'w').close()")."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def _zip_with_pickle(base: Path, dst: Path, pkl: bytes) -> None:
    """A copy of the torch zip archive `base` whose data.pkl is `pkl` (CRCs consistent)."""
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, pkl if info.filename.endswith("/data.pkl") else zin.read(info.filename))


def write_payloads(base: Path, obj: dict, out: Path, markers: Path) -> dict[str, tuple[Path, Path]]:
    """{case: (file, marker it would create if its payload ran)}."""
    out.mkdir(parents=True, exist_ok=True)
    markers.mkdir(parents=True, exist_ok=True)
    files = {}

    def add(name):
        files[name] = (out / f"{name}.pt", markers / name)
        return files[name]

    path, marker = add("plain_pickle")
    path.write_bytes(pickle.dumps({"state_dict": {"w": SystemPayload(marker)}}, protocol=2))
    path, marker = add("plain_pickle_protocol0")
    path.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    path, marker = add("zip_data_pkl_payload")
    _zip_with_pickle(base, path, pickle.dumps(SystemPayload(marker), protocol=2))
    path, marker = add("hidden_in_state_dict")
    torch.save({**obj, "state_dict": {**obj["state_dict"], "layer0.0.weight_extra": ExecPayload(marker)}}, path)
    path, marker = add("legacy_format_payload")
    torch.save({**obj, "state_dict": {"w": torch.zeros(2), "x": SystemPayload(marker)}}, path,
               _use_new_zipfile_serialization=False)
    return files


PAYLOAD_CASES = ["plain_pickle", "plain_pickle_protocol0", "zip_data_pkl_payload", "hidden_in_state_dict",
                 "legacy_format_payload"]
# The file-level cases (every loader, whatever the checkpoint kind).
FILE_CASES = ["empty", "cut_8_bytes", "cut_100_bytes", "cut_half", "cut_last_byte", "bit_flipped", "random_bytes",
              "directory", "missing", "zip_not_torch", "holds_a_list", "holds_a_tensor"]


@dataclass
class Case:
    path: Path
    error: type
    pattern: str  # what the message must say (regex, DOTALL)
    marker: Path | None = None  # for payloads: the file the payload would create


def file_cases(base: Path, out: Path) -> dict[str, Case]:
    data = base.read_bytes()
    out.mkdir(parents=True)
    cases = {}

    def write(name, content, pattern):
        path = out / f"{name}.pt"
        path.write_bytes(content)
        cases[name] = Case(path, CheckpointError, pattern)

    truncated = r"truncated or corrupt"
    write("empty", b"", r"empty \(0 bytes\)")
    write("cut_8_bytes", data[:8], truncated)
    write("cut_100_bytes", data[:100], truncated)
    write("cut_half", data[: len(data) // 2], truncated)
    write("cut_last_byte", data[:-1], truncated)
    flipped = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 16):
        flipped[i] ^= 0xFF
    write("bit_flipped", bytes(flipped), r"CRC-32 mismatch")
    write("random_bytes", random.Random(0).randbytes(4096), r"not a torch checkpoint|truncated or corrupt")
    (out / "directory.pt").mkdir()
    cases["directory"] = Case(out / "directory.pt", CheckpointError, r"is a directory, not a file")
    cases["missing"] = Case(out / "missing.pt", FileNotFoundError, r"checkpoint not found")
    with zipfile.ZipFile(out / "zip_not_torch.pt", "w") as z:
        z.writestr("readme.txt", "hello")
        z.writestr("weights/numbers.csv", "1,2,3\n")
    cases["zip_not_torch"] = Case(out / "zip_not_torch.pt", CheckpointError, r"zip archive but not a torch checkpoint")
    torch.save([torch.zeros(2), 3], out / "holds_a_list.pt")
    cases["holds_a_list"] = Case(out / "holds_a_list.pt", CheckpointError, r"expected a dict, got list")
    torch.save(torch.zeros(3, 3), out / "holds_a_tensor.pt")
    cases["holds_a_tensor"] = Case(out / "holds_a_tensor.pt", CheckpointError, r"expected a dict, got Tensor")
    return cases


def key_cases(obj: dict, out: Path, rename: str, reshape: str, prefix: str = "") -> dict[str, Case]:
    """A state dict with one key renamed, and one with a tensor of the wrong shape."""
    out.mkdir(parents=True, exist_ok=True)
    state = obj["state_dict"]
    renamed = {(k + "_renamed" if k == prefix + rename else k): v for k, v in state.items()}
    torch.save({**obj, "state_dict": renamed}, out / "wrong_keys.pt")
    bad = state[prefix + reshape]
    misshaped = {**state, prefix + reshape: torch.zeros(bad.shape[0] + 1, *bad.shape[1:])}
    torch.save({**obj, "state_dict": misshaped}, out / "misshaped.pt")
    return {
        "wrong_keys": Case(out / "wrong_keys.pt", CheckpointError,
                           rf"missing keys \(1\):\s+{re.escape(rename)}\b.*unexpected keys \(1\):\s+"
                           rf"{re.escape(rename)}_renamed"),
        "misshaped": Case(out / "misshaped.pt", CheckpointError,
                          rf"mis-shaped keys \(1\):\s+{re.escape(reshape)}: checkpoint \({bad.shape[0] + 1},"),
    }


def payload_cases(base: Path, obj: dict, out: Path, markers: Path) -> dict[str, Case]:
    return {name: Case(path, CheckpointError, r"refused to load|not a torch checkpoint", marker)
            for name, (path, marker) in write_payloads(base, obj, out, markers).items()}


# -- the checkpoints -----------------------------------------------------------------------------


@dataclass
class Family:
    base: Path
    obj: dict
    cases: dict[str, Case]


def _drop_run_logger() -> None:
    """Closes the log file of a Trainer whose construction failed (nobody can close it)."""
    log = logging.getLogger("hanet.train.rank0")
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


def _trainer(root: Path, out: Path, *extra: str):
    from hanet.training.config import load_config
    from hanet.training.distributed import init_distributed
    from hanet.training.trainer import Trainer

    cfg = load_config(DEMO, tiny_overrides(root, out, *FAST, *extra))
    try:
        return Trainer(cfg, init_distributed("cpu", use_process_group=False))
    except BaseException:
        _drop_run_logger()
        raise


@pytest.fixture(scope="module")
def ours(tiny_cityscapes, tmp_path_factory) -> Family:
    """A training checkpoint (hanet format + training state) and its hostile variants."""
    tmp = tmp_path_factory.mktemp("ours")
    trainer = _trainer(tiny_cityscapes, tmp / "run")
    trainer.save()
    trainer.close()
    base = tmp / "run" / "checkpoints" / "last.pt"
    obj = torch.load(base, weights_only=True)
    cases = file_cases(base, tmp / "files")
    cases |= payload_cases(base, obj, tmp / "payloads", tmp / "markers")
    cases |= key_cases(obj, tmp / "keys", rename="bot_fine.0.weight", reshape="bot_aspp.0.weight")
    # hanet-format structure damage (model_config / state_dict of the wrong type, a bad config value)
    extra = tmp / "struct"
    extra.mkdir()
    for name, change, pattern in [
        ("config_not_a_dict", {"model_config": "resnet"}, r"needs a 'model_config' dict, got str"),
        ("state_dict_a_list", {"state_dict": [torch.zeros(1)]}, r"needs a 'state_dict' dict, got list"),
        ("config_bad_value", {"model_config": {**obj["model_config"], "hanet": 7}}, r"invalid model_config"),
        ("config_unknown_key", {"model_config": {**obj["model_config"], "depth": 3}}, r"unknown model config keys: depth"),
        ("non_string_keys", {"state_dict": {**obj["state_dict"], 0: torch.zeros(1)}}, r"unexpected keys \(1\):\s+0\b"),
    ]:
        torch.save({**obj, **change}, extra / f"{name}.pt")
        cases[name] = Case(extra / f"{name}.pt", CheckpointError, pattern)
    return Family(base, obj, cases)


@pytest.fixture(scope="module")
def official(ours, tmp_path_factory) -> Family:
    """An official-format checkpoint of the same model (module. prefixes, numpy mean_iu, the
    training command) and its hostile variants."""
    tmp = tmp_path_factory.mktemp("official")
    obj = {"state_dict": {"module." + k: v for k, v in ours.obj["state_dict"].items()},
           "optimizer": {"state": {}, "param_groups": []}, "epoch": 3, "mean_iu": np.float64(0.5),
           "command": OFFICIAL_COMMAND}
    base = tmp / "best_epoch_3.pth"
    torch.save(obj, base)
    cases = file_cases(base, tmp / "files")
    cases |= payload_cases(base, obj, tmp / "payloads", tmp / "markers")
    cases |= key_cases(obj, tmp / "keys", rename="bot_fine.0.weight", reshape="bot_aspp.0.weight", prefix="module.")
    extra = tmp / "struct"
    extra.mkdir()
    final = obj["state_dict"]["module.final2.0.weight"]
    for name, change, pattern in [
        ("bad_command", {"command": "--arch 'DeepShuffleNetV3PlusD_HANet_OS32"}, r"cannot parse the model flags"),
        ("command_without_arch", {"command": "--hanet 1 1 1 1 1"}, r"no --arch flag"),
        ("final_not_a_tensor", {"state_dict": {**obj["state_dict"], "module.final2.0.weight": [1, 2]}},
         r"final2.0.weight must be a 4-D tensor"),
        ("final_wrong_rank", {"state_dict": {**obj["state_dict"], "module.final2.0.weight": final[:, :, 0, 0]}},
         r"final2.0.weight must be a 4-D tensor .*\(19, 256\)"),
        ("non_string_keys", {"state_dict": {**obj["state_dict"], 7: torch.zeros(1)}}, r"keys must be parameter names"),
        ("state_dict_a_list", {"state_dict": [1, 2]}, r"no 'state_dict' dict"),
        ("ours_not_official", {"command": None, "format": "x"}, r"'command' must be the training flags"),
    ]:
        torch.save({**obj, **change}, extra / f"{name}.pt")
        cases[name] = Case(extra / f"{name}.pt", CheckpointError, pattern)
    not_official = extra / "no_command.pt"
    torch.save({"state_dict": obj["state_dict"]}, not_official)
    cases["no_command"] = Case(not_official, CheckpointError, r"not an official HANet checkpoint")
    return Family(base, obj, cases)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Family:
    """torchvision's ShuffleNetV2 ImageNet layout (random weights) and its hostile variants."""
    import torchvision

    tmp = tmp_path_factory.mktemp("imagenet")
    obj = {"state_dict": torchvision.models.shufflenet_v2_x1_0(weights=None).state_dict()}
    base = tmp / "shufflenetv2_x1-imagenet.pth"
    torch.save(obj, base)
    cases = file_cases(base, tmp / "files")
    cases |= payload_cases(base, obj, tmp / "payloads", tmp / "markers")
    state = obj["state_dict"]
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "stage3.0.branch1.0.weight"}},
               tmp / "missing_trunk_key.pt")
    cases["wrong_keys"] = Case(tmp / "missing_trunk_key.pt", CheckpointError,
                               r"does not fit the shufflenetv2 trunk.*missing \(1\): layer2.0.branch1.0.weight")
    w = state["conv5.0.weight"]
    torch.save({"state_dict": {**state, "conv5.0.weight": torch.zeros(w.shape[0] // 2, *w.shape[1:])}},
               tmp / "misshaped.pt")
    cases["misshaped"] = Case(tmp / "misshaped.pt", CheckpointError, r"mis-shaped \(\d+\): layer4.0.weight")
    torch.save({"state_dict": {**state, 3: torch.zeros(1), "conv1.0.weight": "not a tensor"}}, tmp / "junk_entries.pt")
    cases["junk_entries"] = Case(tmp / "junk_entries.pt", CheckpointError, r"missing \(1\): layer0.0.0.weight")
    return Family(base, obj, cases)


def _model():
    return build_model(ARCH, hanet=[1, 1, 1, 1, 1], hanet_set=[3, 16, 3], aux_loss=True)


@pytest.fixture(scope="module")
def model():
    """The fixtures' architecture, for the loaders that fill a given model."""
    return _model()


WATCHED = ("layer0.0.0.weight", "layer4.0.weight", "bot_aspp.0.weight", "final2.0.weight")


def _snapshot(model) -> dict:
    """Copies of a few tensors spread over the model (a partial load would change some)."""
    state = model.state_dict()
    return {k: state[k].clone() for k in WATCHED}


def _unchanged(model, before: dict) -> bool:
    state = model.state_dict()
    return all(torch.equal(before[k], state[k]) for k in WATCHED)


def _check_error(exc: BaseException, case: Case) -> None:
    msg = str(exc)
    assert isinstance(exc, case.error), f"{type(exc).__name__}: {msg}"
    assert str(case.path) in msg, f"the message does not name the file: {msg}"
    assert re.search(case.pattern, msg, re.S), f"the message does not say {case.pattern!r}: {msg}"
    if case.marker is not None:
        assert not case.marker.exists(), f"the payload ran ({case.marker} was created)"


def _expect_failure(call, case: Case) -> BaseException:
    with pytest.raises(Exception) as info:
        call(case.path)
    _check_error(info.value, case)
    return info.value


def _check_cli(capsys, rc: int, case: Case, prefix: str) -> str:
    out = capsys.readouterr()
    err = out.err
    assert rc == 1, f"exit status {rc}; stderr: {err[-2000:]}"
    assert "Traceback" not in err + out.out, err
    lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip()]  # (progress bars redraw with \r)
    first = next((ln for ln in lines if re.match(prefix, ln)), None)
    assert first is not None, f"no '{prefix}' line in stderr: {err!r}"
    assert str(case.path) in first, f"the error line does not name the file: {first}"
    message = err[err.index(first):]
    assert re.search(case.pattern, message, re.S), f"the message does not say {case.pattern!r}: {message}"
    if not re.search(r"keys \(\d+\):", message):  # only key listings take more than one line
        assert len(message.strip().splitlines()) == 1, f"more than one line: {message}"
    if case.marker is not None:
        assert not case.marker.exists(), f"the payload ran ({case.marker} was created)"
    return message


OURS_CASES = FILE_CASES + PAYLOAD_CASES + ["wrong_keys", "misshaped"]
OURS_STRUCT = ["config_not_a_dict", "state_dict_a_list", "config_bad_value", "config_unknown_key", "non_string_keys"]
OFFICIAL_STRUCT = ["bad_command", "command_without_arch", "final_not_a_tensor", "final_wrong_rank", "non_string_keys",
                   "state_dict_a_list", "ours_not_official", "no_command"]


# -- the payloads are real -------------------------------------------------------------------------


def test_payloads_run_when_loaded_unsafely(ours, tmp_path):
    """The hostile files are live: an unrestricted unpickler runs every payload (so the
    tests below, where the markers stay absent, show the loaders refuse them)."""
    files = write_payloads(ours.base, ours.obj, tmp_path / "files", tmp_path / "markers")
    for name, (path, marker) in files.items():
        assert not marker.exists()
        if name.startswith("plain_pickle"):
            pickle.loads(path.read_bytes())
        else:
            torch.load(path, weights_only=False)
        assert marker.exists(), f"{name}: the payload did not run under an unsafe load"


# -- the library loaders ---------------------------------------------------------------------------


def test_controls_load(ours, official, imagenet, model, tmp_path, capsys):
    """Every loader accepts the intact files the hostile ones are made from, so each
    failure below is the damage's doing."""
    assert set(safe_load(ours.base)) >= {"format", "state_dict", "model_config", "training"}
    assert load(ours.base).config.hanet == [1, 1, 1, 1, 1]
    m = load_official(official.base)
    assert (m.config.trunk, m.config.output_stride, m.config.aux_loss) == ("shufflenetv2", 32, True)
    assert load(official.base).config == m.config
    convert_official(official.base, tmp_path / "a.pt")
    assert load(tmp_path / "a.pt").config == m.config
    assert cli.main(["convert-official", str(official.base), str(tmp_path / "b.pt")]) == 0
    assert "wrote" in capsys.readouterr().out and load(tmp_path / "b.pt").config == m.config
    loaded, skipped = load_matching(_model(), ours.base)
    assert skipped == [] and len(loaded) == len(model.state_dict())
    fresh = _model()
    load_pretrained_trunk(fresh, imagenet.base)
    assert torch.equal(fresh.layer4[0].weight, imagenet.obj["state_dict"]["conv5.0.weight"])


@pytest.mark.parametrize("name", FILE_CASES + PAYLOAD_CASES)
def test_safe_load(ours, name):
    _expect_failure(safe_load, ours.cases[name])


@pytest.mark.parametrize("name", OURS_CASES + OURS_STRUCT)
def test_hanet_models_load(ours, name):
    _expect_failure(load, ours.cases[name])


@pytest.mark.parametrize("name", OURS_CASES + OFFICIAL_STRUCT)
def test_load_official(official, name):
    _expect_failure(load_official, official.cases[name])


@pytest.mark.parametrize("name", ["wrong_keys", "misshaped", "zip_data_pkl_payload", "hidden_in_state_dict",
                                  "cut_half", "bit_flipped", "final_not_a_tensor", "non_string_keys"])
def test_hanet_models_load_of_official_files(official, name):
    _expect_failure(load, official.cases[name])


@pytest.mark.parametrize("name", OURS_CASES + OFFICIAL_STRUCT + ["bad_mean_iu"])
def test_convert_official(official, tmp_path, name):
    if name == "bad_mean_iu":
        path = tmp_path / "bad_mean_iu.pth"
        torch.save({**official.obj, "mean_iu": {"miou": 0.5}}, path)
        case = Case(path, CheckpointError, r"'mean_iu' must be a number, got dict")
    else:
        case = official.cases[name]
    dst = tmp_path / "converted.pt"
    _expect_failure(lambda p: convert_official(p, dst), case)
    assert not dst.exists() and not list(tmp_path.glob(".converted.pt.*")), "a file was written"


@pytest.mark.parametrize("name", OURS_CASES + OFFICIAL_STRUCT)
def test_convert_official_cli(official, tmp_path, capsys, name):
    case = official.cases[name]
    dst = tmp_path / "converted.pt"
    rc = cli.main(["convert-official", str(case.path), str(dst)])
    _check_cli(capsys, rc, case, r"hanet convert-official: error: ")
    assert not dst.exists()


@pytest.mark.parametrize("name", FILE_CASES + PAYLOAD_CASES + ["no_match"])
def test_load_matching(ours, model, tmp_path, name):
    if name == "no_match":
        path = tmp_path / "other_model.pt"
        torch.save({"state_dict": {"fc.weight": torch.zeros(3, 3), 5: torch.zeros(1), "conv": "text"}}, path)
        case = Case(path, CheckpointError, r"no tensor matches the model by name and shape")
    else:
        case = ours.cases[name]
    before = _snapshot(model)
    _expect_failure(lambda p: load_matching(model, p), case)
    assert _unchanged(model, before), "the model was changed"


def test_load_matching_lists_misshaped_tensors(ours, model):
    """By contract a mis-shaped tensor is skipped and listed, not an error."""
    loaded, skipped = load_matching(model, ours.cases["misshaped"].path)
    assert skipped == ["bot_aspp.0.weight (shape (257, 1280, 1, 1) vs (256, 1280, 1, 1))"]
    assert len(loaded) == len(model.state_dict()) - 1


@pytest.mark.parametrize("name", FILE_CASES + PAYLOAD_CASES + ["wrong_keys", "misshaped", "junk_entries"])
def test_pretrained_trunk(imagenet, model, name):
    before = _snapshot(model)
    _expect_failure(lambda p: load_pretrained_trunk(model, p), imagenet.cases[name])
    assert _unchanged(model, before), "the model was changed"


# -- training resume -------------------------------------------------------------------------------


def _run_dir(tmp_path: Path, checkpoint: Path | None) -> Path:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    if checkpoint is not None:
        if checkpoint.is_dir():
            (out / "checkpoints" / "last.pt").mkdir()
        elif checkpoint.exists():
            shutil.copyfile(checkpoint, out / "checkpoints" / "last.pt")
    return out


def _as_last(case: Case, out: Path) -> Case:
    """The case with its file at <run>/checkpoints/last.pt, where resume reads it."""
    return Case(out / "checkpoints" / "last.pt", case.error, case.pattern, case.marker)


RESUME_CASES = [c for c in OURS_CASES if c != "missing"]


@pytest.mark.parametrize("name", ["cut_half", "bit_flipped", "directory", "holds_a_list", "zip_data_pkl_payload",
                                  "hidden_in_state_dict", "misshaped"])
def test_trainer_resume(ours, tiny_cityscapes, tmp_path, name):
    out = _run_dir(tmp_path, ours.cases[name].path)
    case = _as_last(ours.cases[name], out)
    with pytest.raises(Exception) as info:
        _trainer(tiny_cityscapes, out, "train.resume=true")
    _check_error(info.value, case)


def test_trainer_resume_control(ours, tiny_cityscapes, tmp_path, caplog):
    """The intact checkpoint resumes; a missing one starts from iteration 0, saying so."""
    out = _run_dir(tmp_path / "a", ours.base)
    trainer = _trainer(tiny_cityscapes, out, "train.resume=true")
    trainer.close()
    assert "resumed from" in (out / "train.log").read_text()
    out = _run_dir(tmp_path / "b", None)
    trainer = _trainer(tiny_cityscapes, out, "train.resume=true")
    trainer.close()
    assert trainer.iteration == 0 and "does not exist yet" in (out / "train.log").read_text()


@pytest.mark.parametrize("name", RESUME_CASES)
def test_train_cli_resume(ours, tiny_cityscapes, tmp_path, capsys, name):
    out = _run_dir(tmp_path, ours.cases[name].path)
    case = _as_last(ours.cases[name], out)
    args = ["train", str(DEMO), *tiny_overrides(tiny_cityscapes, out, *FAST, "train.resume=true",
                                                 "train.max_iter=1")]
    try:
        rc = cli.main(args)
    finally:
        _drop_run_logger()
    _check_cli(capsys, rc, case, r"(\[rank \d+\] )?(hanet train: )?error: ")


# -- hanet eval / hanet predict ----------------------------------------------------------------------


EVAL_CASES = OURS_CASES + OURS_STRUCT


@pytest.fixture(scope="module")
def eval_control(ours, tiny_cityscapes, tmp_path_factory):
    """Both commands work with the intact checkpoint (so a failure below is the file's)."""
    out = tmp_path_factory.mktemp("control")
    assert cli.main(["eval", str(ours.base), f"data.root={tiny_cityscapes}", "data.max_images=1"]) == 0
    image = sorted((tiny_cityscapes / "leftImg8bit" / "val").rglob("*.png"))[0]
    assert cli.main(["predict", str(ours.base), str(image), "--out", str(out / "pics")]) == 0
    assert (out / "pics" / "index.html").exists()


@pytest.mark.parametrize("name", EVAL_CASES)
def test_eval_cli(ours, tiny_cityscapes, eval_control, capsys, name):
    capsys.readouterr()
    case = ours.cases[name]
    rc = cli.main(["eval", str(case.path), f"data.root={tiny_cityscapes}"])
    _check_cli(capsys, rc, case, r"hanet eval: error: ")


@pytest.mark.parametrize("name", EVAL_CASES)
def test_predict_cli(ours, tiny_cityscapes, eval_control, tmp_path, capsys, name):
    capsys.readouterr()
    case = ours.cases[name]
    rc = cli.main(["predict", str(case.path), str(tiny_cityscapes / "leftImg8bit" / "val"), "--out",
                   str(tmp_path / "pics")])
    _check_cli(capsys, rc, case, r"hanet predict: error: ")
    assert not (tmp_path / "pics" / "index.html").exists()


def test_eval_cli_malformed_training_record(ours, tiny_cityscapes, tmp_path, capsys):
    """A checkpoint whose training record is not a dict still evaluates (its data
    defaults are just not used)."""
    path = tmp_path / "odd_training_record.pt"
    torch.save({**ours.obj, "training": ["not", "a", "dict"]}, path)
    rc = cli.main(["eval", str(path), f"data.root={tiny_cityscapes}", "data.max_images=1"])
    assert rc == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", ["zip_data_pkl_payload", "cut_half", "bit_flipped"])
def test_eval_cli_official_files(official, tiny_cityscapes, eval_control, capsys, name):
    capsys.readouterr()
    case = official.cases[name]
    rc = cli.main(["eval", str(case.path), f"data.root={tiny_cityscapes}"])
    _check_cli(capsys, rc, case, r"hanet eval: error: ")


# -- damaged images --------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return chunks


def truncate_idat(path: Path) -> None:
    """Rewrites a PNG with half of its compressed pixel data, as one well-formed IDAT
    chunk (valid CRC) followed by IEND: only the decoder can tell."""
    chunks = _png_chunks(path.read_bytes())
    idat = b"".join(d for t, d in chunks if t == b"IDAT")
    out = [c for c in chunks if c[0] not in (b"IDAT", b"IEND")] + [(b"IDAT", idat[: len(idat) // 2]), (b"IEND", b"")]
    blob = b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
                                           for t, d in out)
    path.write_bytes(blob)


def truncated_jpeg(path: Path, source: Path) -> None:
    """The image of `source` as JPEG bytes, cut in half, written to `path`."""
    buf = io.BytesIO()
    Image.open(source).convert("RGB").save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _damage_cityscapes(root: Path, split: str) -> dict[Path, str]:
    """Damages pairs 0..4 of `split`; {bad file: what its error must say}."""
    pairs = CityscapesDataset(root, split).pairs
    bad = {}
    pairs[0].image.write_bytes(b"")
    bad[pairs[0].image] = r"cannot read image"
    truncate_idat(pairs[1].image)
    bad[pairs[1].image] = r"cannot read image: .*truncated"
    truncated_jpeg(pairs[2].image, pairs[2].image)
    bad[pairs[2].image] = r"cannot read image: .*truncated"
    label = Image.open(pairs[3].label)
    label.resize((label.width // 2, label.height // 2), Image.NEAREST).save(pairs[3].label)
    bad[pairs[3].label] = r"label is 64x32 \(WxH\) but its image .* is 128x64"
    pairs[4].label.write_text("P2\nthis is a text file renamed to .png\n")
    bad[pairs[4].label] = r"cannot read label"
    return bad


@pytest.fixture
def damaged_cityscapes(tiny_cityscapes, tmp_path):
    root = shutil.copytree(tiny_cityscapes, tmp_path / "cs")
    return root, _damage_cityscapes(root, "train")


def test_cityscapes_damaged_files_are_named(damaged_cityscapes):
    root, bad = damaged_cityscapes
    ds = CityscapesDataset(root, "train")
    assert len(ds) == 8
    for i, (path, pattern) in enumerate(bad.items()):
        with pytest.raises(BadFileError) as info:
            ds[i]
        assert info.value.path == str(path) and str(path) in str(info.value)
        assert re.search(pattern, str(info.value)), str(info.value)
        if i == 3:
            assert isinstance(info.value, SizeMismatchError) and str(ds.pairs[3].image) in str(info.value)
        else:
            assert isinstance(info.value, CorruptFileError)
    for i in range(5, 8):
        assert ds[i]["label"].shape == (64, 128)
    with pytest.raises(BadFileError, match=re.escape(str(next(iter(bad))))):
        list(ds)  # iterating stops at the first bad file, naming it


def test_cityscapes_skip_corrupt_counts_and_reports(damaged_cityscapes, caplog):
    root, bad = damaged_cityscapes
    with caplog.at_level(logging.WARNING, logger="hanet.data"):
        ds = CityscapesDataset(root, "train", skip_corrupt=True)
    assert len(ds) == 3 and ds.num_skipped == 5
    assert {p for p, _ in ds.skipped} == {str(p) for p in bad}
    for path, problem in ds.skipped:
        assert re.search(bad[Path(path)], f"{path}: {problem}")
    records = [r for r in caplog.records if r.name == "hanet.data" and r.levelno == logging.WARNING]
    assert len(records) == 1 and "skipped 5 unreadable file(s) of 8" in records[0].getMessage()
    assert all(str(p) in records[0].getMessage() for p in bad)
    items = list(ds)  # the rest loads
    assert len(items) == 3 and all(item["label"].shape == (64, 128) for item in items)


def test_training_data_skip_corrupt(damaged_cityscapes, tmp_path, capsys, caplog):
    """data.skip_corrupt=true: a run on a tree with bad files trains on the rest (and a
    bad validation file is skipped too); without it the run stops, naming a bad file."""
    root, bad = damaged_cityscapes
    val_bad = _damage_cityscapes_val(root)
    args = ["train", str(DEMO), *tiny_overrides(root, tmp_path / "run", "train.max_iter=1", "train.val_every=1")]
    try:
        rc = cli.main(args)
    finally:
        _drop_run_logger()
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert any(str(p) in err for p in list(bad) + [val_bad]), err
    with caplog.at_level(logging.WARNING, logger="hanet.data"):
        assert cli.main(args + ["data.skip_corrupt=true"]) == 0
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "hanet.data")
    assert "skipped 5 unreadable file(s) of 8" in text and "skipped 1 unreadable file(s) of 2" in text
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["training"]["iteration"] == 1 and ckpt["training"]["config"]["data"]["skip_corrupt"] is True


def _damage_cityscapes_val(root: Path) -> Path:
    label = CityscapesDataset(root, "val").pairs[0].label
    label.write_bytes(label.read_bytes()[:60])
    return label


def test_eval_cli_skip_corrupt(tiny_cityscapes, ours, tmp_path, capsys, caplog):
    root = shutil.copytree(tiny_cityscapes, tmp_path / "cs")
    bad = _damage_cityscapes_val(root)
    rc = cli.main(["eval", str(ours.base), f"data.root={root}"])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err and "Traceback" not in err
    with caplog.at_level(logging.WARNING, logger="hanet.data"):
        rc = cli.main(["eval", str(ours.base), f"data.root={root}", "data.skip_corrupt=true", "--json",
                       str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    assert any("skipped 1 unreadable file(s) of 2" in r.getMessage() and str(bad) in r.getMessage()
               for r in caplog.records)


@pytest.fixture
def image_folder(tiny_cityscapes, tmp_path) -> tuple[Path, dict[Path, str]]:
    """Two good images (PNG, JPEG) and five damaged ones."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((tiny_cityscapes / "leftImg8bit" / "train").rglob("*.png"))
    shutil.copy(sources[0], folder / "y_good.png")
    Image.open(sources[1]).convert("RGB").save(folder / "z_good.jpg", quality=90)
    bad = {}
    (folder / "c_zero_bytes.png").write_bytes(b"")
    bad[folder / "c_zero_bytes.png"] = r"cannot identify image file"
    shutil.copy(sources[2], folder / "d_truncated_idat.png")
    truncate_idat(folder / "d_truncated_idat.png")
    bad[folder / "d_truncated_idat.png"] = r"truncated"
    (folder / "e_text.png").write_text("just some notes, not an image\n")
    bad[folder / "e_text.png"] = r"cannot identify image file"
    truncated_jpeg(folder / "f_truncated.jpg", sources[3])
    bad[folder / "f_truncated.jpg"] = r"truncated"
    buf = io.BytesIO()
    Image.open(sources[4]).convert("RGB").save(buf, "JPEG")
    (folder / "g_no_end_marker.jpeg").write_bytes(buf.getvalue()[:-300])
    bad[folder / "g_no_end_marker.jpeg"] = r"truncated"
    return folder, bad


def test_image_folder_damaged_files(image_folder, caplog):
    folder, bad = image_folder
    images = ImageFolder(folder)
    assert [p.name for p in images.files][5:] == ["y_good.png", "z_good.jpg"] and len(images) == 7
    for i in (5, 6):
        assert images[i]["size"] == (64, 128)
    for i, (path, pattern) in enumerate(bad.items()):
        with pytest.raises(CorruptFileError) as info:
            images[i]
        assert info.value.path == str(path) and str(path) in str(info.value)
        assert re.search(pattern, str(info.value)), str(info.value)
    with caplog.at_level(logging.WARNING, logger="hanet.data"):
        skipping = ImageFolder(folder, skip_corrupt=True)
    assert len(skipping) == 2 and skipping.num_skipped == 5
    assert {p for p, _ in skipping.skipped} == {str(p) for p in bad}
    assert any("skipped 5 unreadable file(s) of 7" in r.getMessage() for r in caplog.records)
    assert [item["name"] for item in skipping] == ["y_good", "z_good"]


def test_predict_cli_damaged_images(image_folder, ours, tmp_path, capsys, caplog):
    folder, bad = image_folder
    rc = cli.main(["predict", str(ours.base), str(folder), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert re.search(rf"^hanet predict: error: {re.escape(str(next(iter(bad))))}: cannot read image", err, re.M), err
    with caplog.at_level(logging.WARNING, logger="hanet.data"):
        rc = cli.main(["predict", str(ours.base), str(folder), "--out", str(tmp_path / "b"),
                       "--set", "data.skip_corrupt=true"])
    assert rc == 0, capsys.readouterr().err
    assert any("skipped 5 unreadable file(s) of 7" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in (tmp_path / "b").glob("*_mask.png")) == ["y_good_mask.png", "z_good_mask.png"]
    assert (tmp_path / "b" / "index.html").read_text().count("<section>") == 2


# -- the real command line, in processes of its own -------------------------------------------------


def test_real_processes_exit_cleanly(ours, official, image_folder, tmp_path):
    """`hanet` as a process: exit status 1 and a one-line message (no traceback) for a
    payload, and the skipped images reported on stderr (Python's default logging)."""
    folder, bad = image_folder
    (folder / "z_good.jpg").unlink()  # one good image is enough here
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    payload = official.cases["zip_data_pkl_payload"]
    runs = {
        "convert": (["convert-official", payload.path, tmp_path / "x.pt"], 1, payload),
        "predict": (["predict", ours.base, folder, "--out", tmp_path / "pics", "--set", "data.skip_corrupt=true"],
                    0, None),
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "hanet", *map(str, args)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
             for k, (args, _, _) in runs.items()}
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"hanet {name} hangs")
        _, rc, case = runs[name]
        assert proc.returncode == rc, f"{name}: {err[-2000:]}"
        assert "Traceback" not in err, err
        if case is not None:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and str(case.path) in lines[0], err
            assert re.search(case.pattern, lines[0])
            if case.marker is not None:
                assert not case.marker.exists()
        else:
            assert "skipped 5 unreadable file(s) of 6" in err and all(str(p) in err for p in bad)
    assert not (tmp_path / "x.pt").exists()
