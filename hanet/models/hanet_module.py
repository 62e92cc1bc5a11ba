"""The HANet add-on module: height-driven attention for any network.

From a low-level feature map ``x_low`` it computes, for every channel of a
higher-level map ``x_high`` and every row, an attention weight in (0, 1), and
rescales ``x_high`` with it (broadcast over the width).  Width pooling and the
rescale run on the fused ops of :mod:`hanet.ops`.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import hanet.ops as hops

from . import branch_graph
from .pos_encoding import POSITION_ROWS, HeightPositionTable, check_pos_h, mid_channels, whole_frame_positions

_ENCODINGS = ("sinusoid", "learned", None)


class HANet(nn.Module):
    """Height-driven attention (one HANet "site").

    Args:
        in_channels: channels C_l of ``x_low`` (attention is computed from it).
        out_channels: channels C_h of ``x_high`` (the map that is rescaled).
        kernel_size: kernel of the last 1-D conv (the original's ``hanet_set[0]``), any
            positive int.  Padding is kernel_size // 2 as in the original, so an even
            kernel yields 128 // pos_rfactor + 1 rows of attention; they are interpolated
            to the height of ``x_high`` like any other length.
        r_factor: channel reduction r of the first conv: ceil(C_l / r) channels, or
            C_l * |r| when negative (``hanet_set[1]``; the best recipe uses 64).
        layers: 1-D conv layers, 2 or 3 (``hanet_set[2]``).
        pos_injection: where the positional term is added: 1 = on the pooled features
            before the first conv, 2 = after it, 0 = nowhere (``hanet_pos[0]``; with 0 the
            original builds no position table and adds nothing, whatever the encoding).
        pos_encoding: "sinusoid" (fixed, ``hanet_pos[1]=1``), "learned"
            (``hanet_pos[1]=0``) or None (no positional term).
        pos_rfactor: f; the module pools to 128 // f rows (``pos_rfactor``).
        pooling: "mean" or "max" width pooling.
        dropout: channel dropout on the pooled features while training.
        pos_noise: std of the integer noise added to positions while training.
        backend: op backend of :mod:`hanet.ops` (None: the fastest available).
        cuda_graph: while training on a CUDA device, replay the small branch (pooled rows
            to logits) from a CUDA graph captured once per shape: 4 launches per direction
            instead of about 45 (:mod:`hanet.models.branch_graph`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        r_factor: int = 64,
        layers: int = 3,
        pos_injection: int = 2,
        pos_encoding: str | None = "sinusoid",
        pos_rfactor: int = 8,
        pooling: str = "mean",
        dropout: float = 0.0,
        pos_noise: float = 0.0,
        backend: str | None = None,
        cuda_graph: bool = False,
    ):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"HANet: {name} must be a positive int, got {v!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"HANet: kernel_size must be a positive int, got {kernel_size!r}")
        if not isinstance(r_factor, int) or r_factor == 0:
            raise ValueError(
                f"HANet: r_factor must be a non-zero int (the official best recipe uses 64, "
                f"hanet_set=[3, 64, 3]), got {r_factor!r}"
            )
        if layers not in (2, 3):
            raise ValueError(f"HANet: layers must be 2 or 3, got {layers!r}")
        if pos_injection not in (0, 1, 2):
            raise ValueError(f"HANet: pos_injection must be 1 (before the first conv), 2 (after it) or 0 "
                             f"(no positional term), got {pos_injection!r}")
        if pos_encoding not in _ENCODINGS:
            raise ValueError(f'HANet: pos_encoding must be "sinusoid", "learned" or None, got {pos_encoding!r}')
        if not isinstance(pos_rfactor, int) or not 1 <= pos_rfactor <= POSITION_ROWS:
            raise ValueError(f"HANet: pos_rfactor must be an int in [1, 128] (128 // pos_rfactor rows), got {pos_rfactor!r}")
        if pooling not in ("mean", "max"):
            raise ValueError(f'HANet: pooling must be "mean" or "max", got {pooling!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"HANet: dropout must be in [0, 1), got {dropout!r}")
        if pos_noise < 0:
            raise ValueError(f"HANet: pos_noise must be >= 0, got {pos_noise!r}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.rows = POSITION_ROWS // pos_rfactor
        self.pooling = pooling
        self.dropout = float(dropout)
        self.layers = layers
        self.pos_injection = pos_injection
        self.backend = backend
        self.cuda_graph = bool(cuda_graph)
        # captured branches by input shape; a plain dict, so neither state_dict nor
        # parameters() sees them (they hold tensors, not modules)
        self._graphs: dict = {}
        m1 = mid_channels(in_channels, r_factor)
        # Module names and order follow the original, so its checkpoints load as they are.
        # BatchNorm1d: the original's BN runs on (B, C, rows) tensors; same math and keys.
        self.attention_first = nn.Sequential(
            nn.Conv1d(in_channels, m1, 1, bias=False), nn.BatchNorm1d(m1), nn.ReLU(inplace=True)
        )
        if layers == 2:
            self.attention_second = nn.Sequential(
                nn.Conv1d(m1, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
            )
        else:
            self.attention_second = nn.Sequential(
                nn.Conv1d(m1, 2 * m1, 3, padding=1, bias=True), nn.BatchNorm1d(2 * m1), nn.ReLU(inplace=True)
            )
            self.attention_third = nn.Sequential(
                nn.Conv1d(2 * m1, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
            )
        # Injection 0: the original creates no table and adds no positional term.
        self.pos_encoding = pos_encoding if pos_injection else None
        if self.pos_encoding is not None:
            table = HeightPositionTable(pos_rfactor, in_channels if pos_injection == 1 else m1, pos_encoding, pos_noise)
            setattr(self, "pos_emb1d_1st" if pos_injection == 1 else "pos_emb1d_2nd", table)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's initialisation: Kaiming normal convs, zero biases, BN (1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _position_table(self):
        if self.pos_encoding is None:
            return None
        return self.pos_emb1d_1st if self.pos_injection == 1 else self.pos_emb1d_2nd

    def attention_logits(self, x_low: torch.Tensor, pos_h: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, C_h, 128 // pos_rfactor) attention logits, before the sigmoid (one row
        more with an even kernel_size, as in the original)."""
        if x_low.dim() != 4 or x_low.shape[1] != self.in_channels:
            raise ValueError(
                f"HANet: x_low must be (B, {self.in_channels}, H, W), got shape {tuple(x_low.shape)}"
            )
        pos_h = self._positions(x_low, pos_h)
        if self.cuda_graph and branch_graph.can_capture(self, x_low):
            return self._captured_branch(*self._graph_pool(x_low), pos_h)
        z = hops.width_pool(x_low, self.rows, self.pooling, backend=self.backend)
        return self._branch(z, pos_h)

    def _graph_pool(self, x_low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled rows, x_low or None) for a captured branch: with mean pooling the graph
        returns x_low's row gradient itself (the pool's backward folded in), so the rows are
        pooled without autograd and x_low is handed to the graph."""
        if self.pooling == "mean" and x_low.requires_grad:
            with torch.no_grad():
                return hops.width_pool(x_low, self.rows, self.pooling, backend=self.backend), x_low
        return hops.width_pool(x_low, self.rows, self.pooling, backend=self.backend), None

    def _positions(self, x_low: torch.Tensor, pos_h: torch.Tensor | None) -> torch.Tensor | None:
        """The row positions the position term reads (None: the site has none)."""
        if self._position_table() is None:
            return None
        if pos_h is None:
            return whole_frame_positions(x_low.shape[0], x_low.shape[2], x_low.device)
        return check_pos_h(pos_h, x_low.shape[0], "HANet")

    def _branch(self, z: torch.Tensor, pos_h: torch.Tensor | None) -> torch.Tensor:
        """Pooled rows (B, C_l, R) -> logits: position term, dropout, the 1-D conv stack."""
        table = self._position_table()
        if table is not None and self.pos_injection == 1:
            z = table(z, pos_h)
        if self.dropout > 0 and self.training:
            # Channel dropout: whole (b, c) rows of the pooled features.
            z = F.dropout1d(z, self.dropout, training=True)
        z = self.attention_first(z)
        if table is not None and self.pos_injection == 2:
            z = table(z, pos_h)
        z = self.attention_second(z)
        if self.layers == 3:
            z = self.attention_third(z)
        return z

    def _branch_modules(self):
        mods = [self.attention_first, self.attention_second]
        if self.layers == 3:
            mods.append(self.attention_third)
        if self._position_table() is not None:
            mods.append(self._position_table())
        return mods

    def _has_sync_batchnorm(self) -> bool:
        """SyncBatchNorm (multi-GPU training) all-reduces its statistics on the host's
        schedule: the branch then runs eagerly (said once)."""
        if any(isinstance(m, nn.SyncBatchNorm) for b in self._branch_modules() for m in b.modules()):
            if not getattr(self, "_warned_sync_bn", False):
                warnings.warn("HANet cuda_graph: the branch holds SyncBatchNorm layers (multi-GPU training with "
                              "train.syncbn); it runs eagerly", stacklevel=3)
                self._warned_sync_bn = True
            return True
        return False

    def _captured_branch(self, z: torch.Tensor, x_low: torch.Tensor | None, pos_h: torch.Tensor | None,
                         head=None) -> torch.Tensor:
        """The branch replayed from its CUDA graph; ``x_low``: given when ``z`` was pooled
        without autograd (mean pooling), the graph then returning x_low's gradient.
        ``head``: (x_high, relu, ops): the replay and the rescale of x_high in one node
        (BranchGraph.rescale): the site's output is returned."""
        params = [p for m in self._branch_modules() for p in m.parameters()]
        z_grad = x_low is not None or z.requires_grad
        if not (z_grad or any(p.requires_grad for p in params)) or self._has_sync_batchnorm():
            return self._eager_branch(z, pos_h, x_low, head)
        rows = None if head is None else (head[0].shape[2], head[0].dtype)
        key = (tuple(z.shape), z.dtype, z_grad, None if x_low is None else tuple(x_low.shape[2:]),
               None if pos_h is None else tuple(pos_h.shape), branch_graph.autocast_state(), z.device.index,
               rows, None if head is None else head[2])
        buffers = [b for m in self._branch_modules() for b in m.buffers()]
        graph = self._graphs.get(key)
        if graph is None or graph.stale(params, buffers):
            # graphs of moved or converted tensors are dropped, not kept beside the new one
            self._graphs = {k: g for k, g in self._graphs.items() if not g.stale(params, buffers)}
            fn = self._branch if head is None else self._attention_body(*rows, head[2])
            graph = self._graphs[key] = branch_graph.BranchGraph(
                fn, params, buffers, z.detach().requires_grad_(z_grad), pos_h,
                None if x_low is None else tuple(x_low.shape[2:]), attention=head is not None)
        elif graph.busy():
            # the previous replay's logits are still held (two forwards before a backward)
            return self._eager_branch(z, pos_h, x_low, head)
        if head is None:
            return graph(z, pos_h, x_low)
        x_high, relu, ops = head
        return graph.rescale(x_high, ops, relu, z, pos_h, x_low)

    def _eager_branch(self, z, pos_h, x_low, head):
        """The branch run eagerly (and with ``head`` the rescale after it)."""
        if x_low is not None:
            z = hops.width_pool(x_low, self.rows, self.pooling, backend=self.backend)
        logits = self._branch(z, pos_h)
        if head is None:
            return logits
        return self._rescale(head[0], logits, head[1])

    def _rescale(self, x_high: torch.Tensor, logits: torch.Tensor, relu: bool) -> torch.Tensor:
        rescale = hops.relu_attention_rescale if relu else hops.attention_rescale
        return rescale(x_high, logits.to(x_high.dtype), backend=self.backend)

    def _attention_body(self, height: int, dtype: torch.dtype, ops):
        """The captured body of the fused path: (logits in x_high's dtype, and A =
        interp(sigmoid(logits), height), whose gradient the graph's backward starts from;
        our own interpolation kernel: a deterministic backward)."""
        def body(z, pos_h):
            logits = self._branch(z, pos_h).to(dtype)
            return logits, ops.height_interp(torch.sigmoid(logits), height)
        return body

    def _captured_site(self, x_low, x_high, pos_h, relu_x_high) -> torch.Tensor | None:
        """The site's output with the branch replayed and the rescale in one node (the
        backward: 4 launches, :mod:`.branch_graph`); None where that does not apply (the
        reference backend, no capture possible): the caller runs the site as usual."""
        backend = hops.dispatch.resolve(self.backend, x_high.device)
        if backend == "reference" or not branch_graph.can_capture(self, x_low):
            return None
        if x_low.dim() != 4 or x_low.shape[1] != self.in_channels:
            return None  # attention_logits raises the error
        head = (x_high, relu_x_high, hops.dispatch.kernel_ops(backend))
        return self._captured_branch(*self._graph_pool(x_low), self._positions(x_low, pos_h), head)

    def forward(self, x_low: torch.Tensor, x_high: torch.Tensor, pos_h: torch.Tensor | None = None,
                return_attention: bool = False, relu_x_high: bool = False):
        """Rescale ``x_high`` (B, C_h, H, W) by the attention computed from ``x_low``.

        ``relu_x_high``: ``x_high`` is a pre-activation and the site rescales
        ``relu(x_high)``, the ReLU fused into the rescale's autograd node so that neither
        tensor is kept for the backward (:func:`hanet.ops.relu_attention_rescale`).

        ``pos_h``: the row-position map (row // 8 of the 1024-row frame), (B, H') or
        (B, H', W') at any resolution; None treats ``x_low`` as a whole frame.
        Returns the rescaled map, and with ``return_attention`` also the attention
        (B, C_h, H) in (0, 1) (sigmoid first, then linear interpolation to H).
        """
        if x_high.dim() != 4 or x_high.shape[1] != self.out_channels:
            raise ValueError(
                f"HANet: x_high must be (B, {self.out_channels}, H, W), got shape {tuple(x_high.shape)}"
            )
        if x_high.shape[0] != x_low.shape[0]:
            raise ValueError(f"HANet: x_low has batch {x_low.shape[0]}, x_high has {x_high.shape[0]}")
        if self.cuda_graph and not return_attention:
            out = self._captured_site(x_low, x_high, pos_h, relu_x_high)
            if out is not None:
                return out
        logits = self.attention_logits(x_low, pos_h).to(x_high.dtype)
        out = self._rescale(x_high, logits, relu_x_high)
        if not return_attention:
            return out
        attention = hops.height_interp(torch.sigmoid(logits), x_high.shape[2], backend=self.backend)
        return out, attention

    def __getstate__(self):
        # captured graphs are tied to this module's storage: copies and pickles start without
        state = self.__dict__.copy()
        state["_graphs"] = {}
        return state

    def __setstate__(self, state):
        state.setdefault("_graphs", {})
        super().__setstate__(state)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, rows={self.rows}, pooling={self.pooling}, "
                f"pos={self.pos_encoding}@{self.pos_injection}, dropout={self.dropout}")
