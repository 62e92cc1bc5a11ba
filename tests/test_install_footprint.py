"""`pip install .` gives inference, evaluation, prediction and exported-program export:
run them in a fresh interpreter where the optional packages cannot be imported
(``sys.modules[name] = None``: import raises ModuleNotFoundError and find_spec finds
nothing, as if they were not installed), and check that a
feature that needs a missing extra stops with a one-line error naming the extra."""
import json
import os
import subprocess
import sys

import pytest
import torch

from hanet.models import build_model, save

TRAIN_EXTRA = ["tensorboard", "cityscapesscripts"]  # pyproject.toml [project.optional-dependencies] train
EXPORT_EXTRA = ["onnx", "onnxscript", "onnxruntime"]  # ... export
VIS_EXTRA = ["matplotlib"]  # ... vis
RUNTIME_MODULES = ["hanet", "hanet.models", "hanet.inference", "hanet.inference_original", "hanet.data",
                   "hanet.synthetic", "hanet.evaluation", "hanet.segmenter", "hanet.predict", "hanet.export",
                   "hanet.cli"]

CHILD = r'''
import contextlib, importlib, io, json, sys

blocked, commands = json.loads(sys.argv[1]), json.loads(sys.argv[2])
# As if not installed: `import onnx` raises ModuleNotFoundError and importlib.util.find_spec("onnx")
# returns None (what torch probes optional packages with).
for name in blocked:
    sys.modules[name] = None
report = {"imports": {}, "commands": []}
for module in %r:
    try:
        importlib.import_module(module)
        report["imports"][module] = "ok"
    except Exception as exc:
        report["imports"][module] = f"{type(exc).__name__}: {exc}"
from hanet.cli import main

for argv in commands:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException as exc:
            import traceback

            traceback.print_exc(file=err)
            rc = f"raised {type(exc).__name__}"
    report["commands"].append({"argv": argv, "rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()})
report["loaded"] = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] in blocked and mod is not None)
print("REPORT" + json.dumps(report))
''' % (RUNTIME_MODULES,)


def _run(tmp_path, blocked, commands):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), json.dumps(blocked), json.dumps(commands)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("REPORT", 1)[1])


def _one_line_error(result, command: str, needle: str):
    lines = [l for l in result["stderr"].splitlines() if l.strip()]
    assert result["rc"] == 1, result
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert lines[-1].startswith(f"hanet {command}: error: ") and needle in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("footprint") / "model.pt"
    save(build_model("deeplabv3plus_shufflenetv2_os16", hanet=[1, 0, 0, 0, 1], hanet_set=[3, 16, 3]).eval(), path)
    return str(path)


@pytest.fixture(scope="module")
def without_extras(tiny_cityscapes, checkpoint, tmp_path_factory):
    """One interpreter without the train, vis and export extras: the imports, the scene
    generator, eval, predict, exported-program export; then the features that need an extra."""
    root = str(tiny_cityscapes)
    tmp = tmp_path_factory.mktemp("no_extras")
    report = _run(tmp, TRAIN_EXTRA + VIS_EXTRA + EXPORT_EXTRA, [
        ["make-synthetic-cityscapes", "scenes", "--train", "1", "--val", "0", "--size", "32x64"],
        ["eval", checkpoint, f"data.root={root}", "--json", "r.json"],
        ["predict", checkpoint, f"{root}/leftImg8bit/val", "--out", "pics"],
        ["export", checkpoint, "--format", "exported-program", "--out", "m.pt2", "--size", "64x128"],
        ["eval", checkpoint, f"data.root={root}", "--tensorboard", "tb"],
        ["export", checkpoint, "--format", "onnx", "--out", "m.onnx", "--size", "64x128"],
    ])
    return report, tmp


def test_inference_eval_predict_export_without_the_extras(without_extras):
    report, tmp = without_extras
    assert report["imports"] == {m: "ok" for m in RUNTIME_MODULES}
    assert report["loaded"] == [], "nothing imported a blocked module"
    generate, ok_eval, ok_predict, ok_export = report["commands"][:4]
    for r in (generate, ok_eval, ok_predict, ok_export):
        assert r["rc"] == 0, r
    assert (tmp / "scenes/leftImg8bit/train").is_dir()
    assert "mIoU" in ok_eval["stdout"] and (tmp / "r.json").exists()
    assert (tmp / "pics/index.html").exists() and (tmp / "m.pt2").exists()
    # without matplotlib predict draws the plain pictures and says which extra gives the figures
    assert "pip install 'hanet[vis]'" in ok_predict["stderr"]


def test_a_missing_extra_is_a_one_line_error_naming_it(without_extras):
    report, _ = without_extras
    tb, onnx = report["commands"][4:]
    _one_line_error(tb, "eval", "pip install 'hanet[train]'")
    _one_line_error(onnx, "export", "pip install 'hanet[export]'")
