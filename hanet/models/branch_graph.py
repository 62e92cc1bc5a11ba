"""CUDA-graph replay of a HANet site's small branch, for training (issue 13).

The branch — pooled rows (B, C_l, R) -> position term, dropout, three 1-D convs with
batch statistics -> attention logits (B, C_h, R) — is about thirty kernels forward and
a dozen backward, each a few microseconds of work behind a launch.  Captured once per
shape, a site runs four launches per direction:

    forward:  width pool, copy of the pooled rows into the graph's input, the graph, the rescale
    backward: the rescale's streaming pass, copy of the attention's gradient into the graph,
              the graph (which also spreads the rows' gradient over the input rows), the
              stride-0 add of that (B, C, H, 1) gradient into x_low's

The replay and the rescale are one autograd node (:class:`_ReplayRescale`): the rescale's
backward returns the per-row sums of grad * feat, the gradient of the attention
A = interp(sigmoid(logits), H) (``attention_rescale_backward(..., attention_grad=True)``),
and the graph differentiates A itself (it computes A beside the logits), so the gather of
those sums into the logits' gradient — a second kernel on CUDA — runs inside the graph.
With mean pooling the pool's own backward (a division and a kernel) moves into the graph
as one (R, H) matrix product; max pooling keeps its backward (one op more).  (With
``return_attention``, or on the reference backend, the logits leave the graph
(:class:`_Replay`) and the rescale runs as its own op: one backward launch more.)
The row positions are a graph input too; the model copies them once per step into a
tensor all its sites read (:class:`StaticPositions`), so they cost no copy per site.

What keeps replay exact:
* a forward replays only when no tensor of the previous replay is alive (the logits
  are kept by the rescale for its backward): two forwards before one backward (a
  second micro-batch, a retained graph) run the branch eagerly instead;
* a parameter gradient that aliases the graph's gradient buffer (autograd takes the
  returned tensor as ``.grad`` when ``.grad`` was None) is cloned before the next
  backward replay overwrites it, so accumulation across backward passes stays right;
* the warm-up runs before capture update the BatchNorm running statistics; they are
  put back, so a captured step changes them exactly once, as an eager step does.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn

from hanet.ops.functional import rescale_saved_grads, rescale_saving_less

# The attribute StaticPositions sets on the tensor it owns: sites read it in place.
_STATIC_MARK = "_hanet_static_positions"


class StaticPositions:
    """One position tensor per model, rewritten in place at every step (one copy), so the
    captured branches of all sites read it without a copy of their own."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None

    def update(self, pos_h: torch.Tensor) -> torch.Tensor:
        b = self.buffer
        if b is None or b.shape != pos_h.shape or b.device != pos_h.device or b.dtype != pos_h.dtype:
            b = torch.empty(pos_h.shape, dtype=pos_h.dtype, device=pos_h.device)
            setattr(b, _STATIC_MARK, True)
            self.buffer = b
        b.copy_(pos_h)
        return b


def is_static_positions(t: torch.Tensor) -> bool:
    return getattr(t, _STATIC_MARK, False)


def mean_rows_matrix(rows: int, height: int, width: int, device, dtype=torch.float32) -> torch.Tensor:
    """(R, H): the gradient of mean width pooling as a matrix, d z[r] / d x[h, w]
    = 1 / (|bin r| * W) for the input rows h of bin r = [floor(r*H/R), ceil((r+1)*H/R))."""
    m = torch.zeros(rows, height, dtype=torch.float64)
    for r in range(rows):
        start, end = (r * height) // rows, -((-(r + 1) * height) // rows)
        m[r, start:end] = 1.0 / ((end - start) * width)
    return m.to(device=device, dtype=dtype)


def autocast_state():
    if not torch.is_autocast_enabled("cuda"):
        return None
    return torch.get_autocast_dtype("cuda")


class BranchGraph:
    """The captured forward and backward of ``fn(z, pos) -> logits`` for one input shape.

    ``params``: every tensor ``fn`` reads that may need a gradient (the branch's
    parameters); ``buffers``: the tensors ``fn`` updates in place (BatchNorm running
    statistics), restored after the warm-up.  ``x_shape``: (H, W) of the pooled input
    when the pooling was a mean: the graph then returns the gradient of the input rows
    (B, C, H, 1) rather than of the pooled rows.  ``attention``: ``fn`` returns
    (logits, A), A the attention rows the rescale applies; the backward then takes A's
    gradient (:meth:`rescale`) instead of the logits'."""

    WARMUP = 2

    def __init__(self, fn, params, buffers, z: torch.Tensor, pos: torch.Tensor | None,
                 x_shape: tuple[int, int] | None = None, attention: bool = False):
        self.params = tuple(p for p in params if p.requires_grad)
        self.x_shape = x_shape
        self.attention = attention
        # built before the capture: a host-to-device copy cannot be captured
        # (float32 math for half types, float64 for float64)
        self._rows_matrix = None if x_shape is None else mean_rows_matrix(
            z.shape[2], *x_shape, z.device, torch.promote_types(z.dtype, torch.float32))
        self.static_z = z.detach().clone().requires_grad_(z.requires_grad)
        if pos is None or is_static_positions(pos):
            self.static_pos = pos
        else:  # a caller's tensor: never written; the graph reads its own copy
            self.static_pos = pos.clone()
        inputs = ((self.static_z,) if z.requires_grad else ()) + self.params
        saved = [b.detach().clone() for b in buffers]

        def forward_body():
            return fn(self.static_z, self.static_pos)

        def backward_body():
            target = self.static_rows if attention else self.static_out
            grads = list(torch.autograd.grad(target, inputs, self.static_grad_out, allow_unused=True))
            if x_shape is not None and z.requires_grad:
                grads[0] = self._input_rows(grads[0], z.dtype)
            return grads

        cache = torch.is_autocast_cache_enabled()
        torch.set_autocast_cache_enabled(False)  # a cached cast would outlive the capture
        try:
            self._capture(forward_body, backward_body, inputs, z.device)
        finally:
            torch.set_autocast_cache_enabled(cache)
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)
        grads = self._captured_grads
        self.static_grad_z = grads[0] if z.requires_grad else None
        self.static_grad_params = tuple(grads[1:] if z.requires_grad else grads)
        # where the graph reads its parameters and writes the BatchNorm statistics: a
        # module moved or converted after the capture (`.to()`, `.half()`) has new storage
        self._storage = tuple(t.data_ptr() for t in (*params, *buffers))
        self._last_output = None  # weakref to the tensor of the latest forward replay

    def _capture(self, forward_body, backward_body, inputs, device) -> None:
        # on the tensors' GPU, whichever is current
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            self._warm_up(forward_body, inputs)
            self.fwd, out = self._record(forward_body, None)
            self.static_out, self.static_rows = out if self.attention else (out, None)
            # the gradient the backward replay starts from: A's, or the logits'
            self.static_grad_out = torch.empty_like(self.static_rows if self.attention else self.static_out)
            self.bwd, self._captured_grads = self._record(backward_body, self.fwd)

    def _warm_up(self, forward_body, inputs) -> None:
        """Runs the branch before its capture (lazy initialisation: cuBLAS handles,
        workspaces), on a side stream as CUDA graphs require."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                out = forward_body()
                if self.attention:
                    out = out[1]
                torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
            del out
        torch.cuda.current_stream().wait_stream(side)

    def _record(self, body, share_pool_with):
        """(graph, what body returned): body captured, its tensors the graph's static ones."""
        graph = torch.cuda.CUDAGraph()
        pool = None if share_pool_with is None else share_pool_with.pool()
        # thread_local: a DataLoader's pinning thread may call CUDA during the capture
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            result = body()
        return graph, result

    def _input_rows(self, grad_z: torch.Tensor, dtype) -> torch.Tensor:
        """(B, C, R) gradient of the pooled rows -> (B, C, H, 1) of the input rows."""
        with torch.autocast("cuda", enabled=False):
            m = self._rows_matrix
            return torch.matmul(grad_z.to(m.dtype), m).to(dtype).unsqueeze(-1)

    def stale(self, params, buffers) -> bool:
        """The module's tensors no longer live where the graph reads them."""
        live = tuple(t.data_ptr() for t in (*params, *buffers))
        return live != self._storage

    def busy(self) -> bool:
        """A tensor of the previous replay is still alive (its backward may still run)."""
        return self._last_output is not None and self._last_output() is not None

    def __call__(self, z: torch.Tensor, pos: torch.Tensor | None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The logits.  ``x``: the pooled input, when the graph returns its gradient (mean
        pooling; ``z`` then carries no autograd history of its own)."""
        out = _Replay.apply(self, pos, x, z, *self.params)
        self._last_output = weakref.ref(out)
        return out

    def rescale(self, feat: torch.Tensor, ops, relu: bool, z: torch.Tensor, pos: torch.Tensor | None,
                x: torch.Tensor | None = None) -> torch.Tensor:
        """``ops.attention_rescale(relu(feat) if relu else feat, logits)``, the logits
        replayed from the graph (built with ``attention=True``); ``ops``: the namespace of a
        kernel backend (torch.ops.hanet or .hanet_triton)."""
        held = []
        out = _ReplayRescale.apply(self, ops, relu, held, pos, x, z, feat, *self.params)
        self._last_output = weakref.ref(held[0])
        return out

    def replay_forward(self, pos: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        if pos is not None and pos.data_ptr() != self.static_pos.data_ptr():
            self.static_pos.copy_(pos)
        self.static_z.copy_(z)
        self.fwd.replay()
        return self.static_out.detach()

    def replay_backward(self, grad_out: torch.Tensor, x_width: int | None) -> tuple:
        """(grad of x, grad of z, *grads of the parameters) from the gradient of the
        graph's output (the logits', or A's with ``attention``)."""
        for p, sg in zip(self.params, self.static_grad_params):
            # `.grad` taken over from the previous replay: the replay below would overwrite it
            if p.grad is not None and sg is not None and p.grad.data_ptr() == sg.data_ptr():
                p.grad = p.grad.clone()
        self.static_grad_out.copy_(grad_out)
        self.bwd.replay()
        grad_z = self.static_grad_z.detach() if self.static_grad_z is not None else None
        grad_x = None
        if x_width is not None and grad_z is not None:
            # the input rows' gradient, constant along W: a stride-0 view that autograd
            # adds into x's other gradient without a dense tensor
            grad_x, grad_z = grad_z.expand(-1, -1, -1, x_width), None
        grads = [None if sg is None else sg.detach() for sg in self.static_grad_params]
        return (grad_x, grad_z, *grads)


class _Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graph: BranchGraph, pos, x, z, *params):
        ctx.graph = graph
        ctx.x_width = None if x is None else x.shape[3]
        return graph.replay_forward(pos, z)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        # one gradient per input of forward: graph, pos, x, z, then the parameters
        return (None, None, *ctx.graph.replay_backward(grad_out, ctx.x_width))


class _ReplayRescale(torch.autograd.Function):
    """The replay and the rescale in one node.  Saved: the rescale's output in fp32 / fp64
    (contract.RESCALE_SAVES_OUTPUT; feat can then be freed, and with ``relu`` the ReLU's
    mask is read from it, as in hanet.ops.relu_attention_rescale) or its input, and the
    replayed logits.  The backward's first op returns A's gradient, which the graph takes."""

    @staticmethod
    def forward(ctx, graph: BranchGraph, ops, relu, held, pos, x, z, feat, *params):
        logits = graph.replay_forward(pos, z)
        held.append(logits)  # alive while the backward may still read the graph's buffer
        ctx.graph = graph
        ctx.x_width = None if x is None else x.shape[3]
        return rescale_saving_less(ctx, ops, feat, logits, relu, attention_grad=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad_feat, grad_rows = rescale_saved_grads(ctx, grad)
        # graph, ops, relu, held, pos, then x, z, feat and the parameters
        grad_x, grad_z, *grads = ctx.graph.replay_backward(grad_rows, ctx.x_width)
        return (None, None, None, None, None, grad_x, grad_z, grad_feat, *grads)


def can_capture(module: nn.Module, z: torch.Tensor) -> bool:
    """Training on a CUDA device, eager (a compiler or tracer captures on its own), with grad."""
    return (z.is_cuda and module.training and torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and not torch.cuda.is_current_stream_capturing())
