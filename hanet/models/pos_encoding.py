"""Height positional encodings of HANet, exactly as the original computes them.

The data pipeline carries ``pos_h``: for every pixel, its row in the original full
1024-row frame divided by 8 (0..127; crop padding is 128).  A HANet site divides
it by ``pos_rfactor`` f, keeps one column, resamples it to the site's 128 // f rows
with PyTorch's ``nearest`` rule, and adds a looked-up table row to its features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The number of positions of the map: 1024 frame rows // 8 (0..127; 128 marks padding).
# Same value as hanet.data.position.POSITION_ROWS (the models do not import the data package).
POSITION_ROWS = 128


def sinusoid_table(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, dim) table: angle p / base^(2*(j//2)/dim), sin on even j, cos on
    odd j, base 10 if dim > 50 else 100 (the original's choice), then + 1 everywhere
    (the original adds 1; the official checkpoints store the shifted table)."""
    base = 10.0 if dim > 50 else 100.0
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = p / torch.pow(torch.tensor(base, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    # The original builds the table in float64 (numpy) and stores it as float32.
    return (table.float() + 1.0)


def whole_frame_positions(batch: int, height: int, device=None) -> torch.Tensor:
    """pos_h (B, H) of an input that is a whole frame: row * 128 // H."""
    rows = torch.arange(height, device=device, dtype=torch.long) * POSITION_ROWS // height
    return rows.unsqueeze(0).expand(batch, height)


def check_pos_h(pos_h: torch.Tensor, batch: int, where: str) -> torch.Tensor:
    """Validates a position map, (B, H) or (B, H, W) integers; returns (B, H) column 0."""
    if not isinstance(pos_h, torch.Tensor):
        raise TypeError(f"{where}: pos_h must be a tensor, got {type(pos_h).__name__}")
    if pos_h.dim() not in (2, 3):
        raise ValueError(f"{where}: pos_h must be (B, H) or (B, H, W), got shape {tuple(pos_h.shape)}")
    if pos_h.shape[0] != batch:
        raise ValueError(f"{where}: pos_h has batch {pos_h.shape[0]}, the input has {batch}")
    if pos_h.dtype.is_floating_point or pos_h.dtype == torch.bool or pos_h.dtype.is_complex:
        raise TypeError(f"{where}: pos_h must hold integers (row // 8 of the frame), got {pos_h.dtype}")
    return pos_h[:, :, 0] if pos_h.dim() == 3 else pos_h


class HeightPositionTable(nn.Module):
    """Adds the positional vectors of the rows of (B, dim, rows) features.

    ``kind``: "sinusoid" (frozen table, stored in checkpoints) or "learned" (an
    embedding initialised to zeros).  The state-dict entry is ``pos_layer.weight``
    of shape (128 // pos_rfactor + 1, dim), as in the original.
    """

    def __init__(self, pos_rfactor: int, dim: int, kind: str = "sinusoid", pos_noise: float = 0.0):
        super().__init__()
        if kind not in ("sinusoid", "learned"):
            raise ValueError(f'positional encoding must be "sinusoid" or "learned", got {kind!r}')
        self.pos_rfactor = pos_rfactor
        self.kind = kind
        self.pos_noise = float(pos_noise)
        self.max_pos = POSITION_ROWS // pos_rfactor
        self.noise_clamp = 16 // pos_rfactor
        n = self.max_pos + 1
        if kind == "sinusoid":
            self.pos_layer = nn.Embedding.from_pretrained(sinusoid_table(n, dim), freeze=True)
        else:
            self.pos_layer = nn.Embedding(n, dim)
            nn.init.zeros_(self.pos_layer.weight)

    def positions(self, pos_h: torch.Tensor, rows: int) -> torch.Tensor:
        """(B, H) frame positions -> (B, rows) table indices (int64)."""
        p = torch.div(pos_h, self.pos_rfactor, rounding_mode="floor")
        # Nearest resampling exactly as F.interpolate(mode="nearest") does it.
        p = F.interpolate(p.unsqueeze(1).float(), size=rows, mode="nearest").squeeze(1).long()
        if self.training and self.pos_noise > 0:
            # The original's noise, kept integer (its float positions crash the lookup
            # on current PyTorch): p += clamp(floor(N(0, sigma)), -16//f, 16//f).
            noise = torch.floor(torch.randn(p.shape, device=p.device) * self.pos_noise).long()
            p = p + noise.clamp(-self.noise_clamp, self.noise_clamp)
            p = p.clamp(0, self.max_pos)
        rule = (f"pos_h // {self.pos_rfactor} must lie in [0, {self.max_pos}]; pos_h is row // 8 of a "
                f"1024-row frame (0..127, 128 for padding)")
        if p.device.type != "cpu":
            # On an accelerator a Python-side check would stall the stream at every site
            # (a device-to-host sync, and no CUDA graph): the device asserts instead.
            torch._assert_async(((p >= 0) & (p <= self.max_pos)).all(), rule)
        elif not torch.compiler.is_compiling() and ((p < 0).any() or (p > self.max_pos).any()):
            # On the CPU the values are at hand: a clear error (eager only; traces skip it).
            raise ValueError(f"{rule}, got values in [{int(pos_h.min())}, {int(pos_h.max())}]")
        return p

    def forward(self, z: torch.Tensor, pos_h: torch.Tensor) -> torch.Tensor:
        p = self.positions(pos_h, z.shape[2])
        return z + self.pos_layer(p).transpose(1, 2).to(z.dtype)


def mid_channels(in_channels: int, r_factor: int) -> int:
    """Width of HANet's first 1-D conv: ceil(C / r) for r > 0, C * |r| for r < 0."""
    if r_factor > 0:
        return math.ceil(in_channels / r_factor)
    if r_factor < 0:
        return in_channels * -r_factor
    raise ValueError("HANet r_factor must be non-zero (ceil(C / r) channels, or C * |r| when negative)")
