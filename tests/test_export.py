"""hanet export: onnxruntime's logits against PyTorch's on a demo-sized model, the
ONNX graph made of standard operators only, torch.export keeping torch.ops.hanet.*
visible and its saved .pt2 giving PyTorch's logits, the CLI, and the error for a
missing extra."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hanet import export as hexport
from hanet.models import build_model, save

SIZE = (128, 256)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_model():
    # the demo's trunk and HANet sites (train/configs/demo.yaml), with weights and BN statistics that are not
    # the initial ones, so that the logits spread over several units
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_shufflenetv2_os16", hanet=[1, 1, 1, 1, 0], hanet_set=[3, 16, 3])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        classifier = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 19][-1]
        classifier.weight.mul_(20)
    return model.eval()


def _pytorch_logits(model, x):
    with torch.no_grad():
        return model(x).logits.numpy()


def test_onnxruntime_gives_pytorchs_logits(demo_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = hexport.to_onnx(demo_model, tmp_path / "demo.onnx", SIZE)
    graph = onnx.load(str(path)).graph
    domains = {n.domain for n in graph.node}
    assert domains <= {"", "ai.onnx"}, f"non-standard operators: {domains}"
    assert not any("hanet" in n.op_type.lower() for n in graph.node)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    # exported at batch 2 and 128x256; batch, height and width dynamic where the fused ops are built
    shapes = [(1, *SIZE), (3, *SIZE)] + ([(1, 96, 160), (2, 200, 328)] if hexport.fused_ops_available() else [])
    for batch, h, w in shapes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        want = _pytorch_logits(demo_model, x)  # the model's own (fused C++) backend
        got = session.run(["logits"], {"images": x.numpy()})[0]
        assert got.shape == (batch, 19, h, w)
        diff = float(np.abs(got - want).max())
        print(f"{batch}x3x{h}x{w}: max abs diff {diff:.3g}, logits up to {np.abs(want).max():.3g}")
        assert np.abs(want).max() > 1.0  # a comparison of values, not of near-zeros
        assert diff <= 1e-4


class _Ops(torch.nn.Module):
    """The three ops as a model: width_pool (mean and max) of x, height_interp, attention_rescale."""

    def forward(self, x, feat, logits):
        import hanet.ops as hops

        mean = hops.width_pool(x, 16, "mean", backend="cpu")
        high = hops.width_pool(x, 16, "max", backend="cpu")
        up = hops.height_interp(logits, feat.shape[2], backend="cpu")
        return mean, high, up, hops.attention_rescale(feat, logits, backend="cpu")


def test_onnx_translations_of_the_fused_ops_equal_pytorchs_ops(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if not hexport.fused_ops_available():
        pytest.skip("the C++ extension is not built: ONNX export uses the reference backend")
    from torch.export import Dim

    from hanet.onnx_ops import translation_table

    gen = torch.Generator().manual_seed(3)
    args = (torch.randn(2, 5, 40, 7, generator=gen), torch.randn(2, 3, 24, 5, generator=gen),
            torch.randn(2, 3, 16, generator=gen))
    dyn = {"x": {0: Dim("b"), 2: Dim("hx", min=2, max=4096), 3: Dim("wx", min=2, max=4096)},
           "feat": {2: Dim("hf", min=2, max=4096), 3: Dim("wf", min=2, max=4096)}, "logits": None}
    program = torch.onnx.export(_Ops(), args, dynamo=True, input_names=["x", "feat", "logits"],
                                custom_translation_table=translation_table(), dynamic_shapes=dyn, verbose=False)
    program.save(str(tmp_path / "ops.onnx"))
    session = ort.InferenceSession(str(tmp_path / "ops.onnx"), providers=["CPUExecutionProvider"])
    # bins of unequal size (H=37, 9 < 16 rows: repeated rows), upsampling 16 -> 40 and downsampling 16 -> 7
    for hx, hf in ((40, 24), (37, 40), (9, 7)):
        x = torch.randn(1, 5, hx, 6, generator=gen)
        feat = torch.randn(2, 3, hf, 4, generator=gen)
        logits = torch.randn(2, 3, 16, generator=gen)
        got = session.run(None, {"x": x.numpy(), "feat": feat.numpy(), "logits": logits.numpy()})
        want = [F.adaptive_avg_pool2d(x, (16, 1))[..., 0], F.adaptive_max_pool2d(x, (16, 1))[..., 0],
                F.interpolate(logits, size=hf, mode="linear", align_corners=False)]
        # sigmoid first, then interpolation, as the original
        want.append(feat * F.interpolate(torch.sigmoid(logits), size=hf, mode="linear", align_corners=False)[..., None])
        for name, g, w in zip(("width_pool mean", "width_pool max", "height_interp", "attention_rescale"), got, want):
            assert g.shape == tuple(w.shape), name
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-5, err_msg=f"{name} at {hx}, {hf}")


def test_exported_program_from_the_cli_keeps_the_custom_ops_and_reloads(demo_model, tmp_path, capsys):
    from hanet.cli import main
    from hanet.ops import available_backends

    if "cpu" not in available_backends():
        pytest.skip("the C++ extension is not built: the model runs on the reference ops")
    save(demo_model, tmp_path / "demo.pt")
    path = tmp_path / "demo.pt2"
    assert main(["export", str(tmp_path / "demo.pt"), "--format", "exported-program", "--out", str(path),
                 "--size", "x".join(map(str, SIZE)), "--check"]) == 0
    text = capsys.readouterr().out
    assert "max abs difference of the logits from PyTorch's" in text and float(text.rsplit(": ", 1)[1]) <= 1e-5
    program = torch.export.load(str(path))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"hanet.width_pool.default", "hanet.attention_rescale.default"} <= targets, sorted(targets)
    # the weights keep the model's own names (the logits-only wrapper adds no prefix)
    assert "final2.0.weight" in program.state_dict and set(program.state_dict) <= set(demo_model.state_dict())
    gen = torch.Generator().manual_seed(2)
    for shape in ((3, 3, *SIZE), (1, 3, 96, 160)):  # traced at 2x3x128x256: batch, H and W dynamic
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            got = program.module()(x)
        want = _pytorch_logits(demo_model, x)
        assert float(np.abs(got.numpy() - want).max()) <= 1e-5
    # a bad size is a one-line error
    assert main(["export", str(tmp_path / "demo.pt"), "--format", "onnx", "--out", str(tmp_path / "x.onnx"),
                 "--size", "64"]) == 1
    assert "--size must look like HxW" in capsys.readouterr().err


def test_missing_onnx_names_the_extra(demo_model, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnxscript" or name.startswith("onnxscript."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.setattr("importlib.import_module", lambda name: no_onnx(name))
    with pytest.raises(ImportError, match=r"ONNX export needs onnxscript: pip install 'hanet\[export\]'"):
        hexport.to_onnx(demo_model, tmp_path / "x.onnx", SIZE)
