"""Export a HANet model for deployment: ONNX (onnxruntime, TensorRT) or a
``torch.export`` ExportedProgram (``.pt2``).

Both take a normalised image batch ``images`` (B, 3, H, W) (ImageNet mean/std, as
:class:`hanet.Segmenter` prepares it) treated as whole frames, and return ``logits``
(B, classes, H, W): the ``logits`` field of the model's
:class:`~hanet.models.SegmentationOutput` (:func:`logits_only`).  Batch, height and
width are dynamic (``size`` is only the example input the graph is traced with).

* ONNX: the fused HANet ops (``torch.ops.hanet.*``) are translated into standard ONNX
  operators (:mod:`hanet.onnx_ops`), so onnxruntime runs the model on the CPU.  Where
  the C++ extension is not built the model is exported with the pure-PyTorch reference
  backend instead (the same function in standard operators; its adaptive pooling then
  fixes H and W at ``size``).  Needs ``pip install 'hanet[export]'`` (onnx, onnxscript;
  onnxruntime for the check).
* ExportedProgram: the graph keeps our custom ops as ``torch.ops.hanet.*`` nodes (the
  C++/CUDA kernels); load it with ``import hanet.ops`` (registers them) and then
  ``torch.export.load(path)``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

FORMATS = ("onnx", "exported-program")
_EXTRA = "pip install 'hanet[export]'"


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module}: {_EXTRA}") from None


def with_backend(model: torch.nn.Module, backend: str | None) -> torch.nn.Module:
    """A copy of `model` (eval mode, CPU tensors kept where they are) whose HANet sites
    run on `backend`."""
    from hanet.models import HANet

    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, HANet):
            m.backend = backend
    return model


class LogitsOnly(torch.nn.Module):
    """`model` as exported: ``images -> logits``, the one tensor of the model's
    :class:`~hanet.models.SegmentationOutput` (eval mode: no aux logits, no attention).

    The model's submodules, parameters and buffers are registered here under their own
    names (the model itself is not a submodule), so the exported weights keep the
    model's names (``layer0.0.0.weight``, not ``model.layer0.0.0.weight``)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "wrapped", model)  # not registered: no "wrapped." prefix on the names
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in model.named_buffers(recurse=False):
            self.register_buffer(name, b)
        self.training = model.training  # export looks at the top module's mode

    def train(self, mode: bool = True) -> "LogitsOnly":
        super().train(mode)
        self.wrapped.train(mode)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from hanet.models import logits_of

        return logits_of(self.wrapped(images))


def logits_only(model: torch.nn.Module) -> torch.nn.Module:
    """`model` wrapped to return the logits tensor (once: a wrapped model stays as it is)."""
    return model if isinstance(model, LogitsOnly) else LogitsOnly(model)


def example_input(model: torch.nn.Module, size: tuple[int, int], batch: int = 2) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)


def _dynamic(size: bool = True) -> dict:
    dims = {0: torch.export.Dim("batch", min=1, max=1024)}
    if size:
        dims.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
    return {"images": dims}


def fused_ops_available() -> bool:
    """Whether the C++ extension (torch.ops.hanet.*) is built: ONNX export then
    translates the fused ops and keeps H and W dynamic."""
    from hanet.ops import available_backends

    return "cpu" in available_backends()


def to_onnx(model: torch.nn.Module, out: str | Path, size: tuple[int, int], opset: int | None = None) -> Path:
    """Writes `model` as ONNX to `out`: dynamic batch, and dynamic H, W where the fused
    ops are available (else H, W fixed at ``size``)."""
    _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    kwargs = {} if opset is None else {"opset_version": opset}
    if fused_ops_available():
        from hanet.onnx_ops import translation_table

        model = with_backend(model.cpu(), "cpu")
        kwargs.update(custom_translation_table=translation_table(), dynamic_shapes=_dynamic(size=True))
    else:
        model = with_backend(model, "reference")
        kwargs.update(dynamic_shapes=_dynamic(size=False))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(logits_only(model), (example_input(model, size),), dynamo=True,
                                input_names=["images"], output_names=["logits"], optimize=True, verbose=False, **kwargs)
    program.save(str(out))
    return out


def to_exported_program(model: torch.nn.Module, out: str | Path, size: tuple[int, int]) -> Path:
    """Writes ``torch.export.export(model)`` to `out` (.pt2; dynamic batch, H and W)."""
    model = copy.deepcopy(model).eval()
    program = torch.export.export(logits_only(model), (example_input(model, size),), dynamic_shapes=_dynamic())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out))
    return out


def check(model: torch.nn.Module, path: str | Path, fmt: str, size: tuple[int, int], batch: int = 2) -> float:
    """Max abs difference between `model`'s logits and those of the exported file (run
    by onnxruntime on the CPU, or by ``torch.export.load``) on a random batch."""
    x = example_input(model, size, batch)
    with torch.inference_mode():
        want = logits_only(model.eval())(x).float().cpu()
    if fmt == "onnx":
        ort = _require("onnxruntime", "checking an ONNX export")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["logits"], {"images": x.cpu().numpy()})[0])
    else:
        import hanet.ops  # noqa: F401  (registers torch.ops.hanet.* before the program loads)

        with torch.inference_mode():
            got = torch.export.load(str(path)).module()(x).float().cpu()
    return float((got - want).abs().max())


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path, size: tuple[int, int],
                      backend: str | None = None) -> tuple[Path, torch.nn.Module]:
    """Loads `checkpoint` (ours, training, or official) on the CPU and exports it;
    returns the file and the loaded model."""
    from hanet.models import load

    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"export size must be (H, W) with positive sides, got {size}")
    model = load(str(checkpoint), **({"backend": backend} if backend else {})).cpu().eval()
    return (to_onnx if fmt == "onnx" else to_exported_program)(model, out, size), model
