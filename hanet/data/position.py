"""The row-position map ``pos_h`` that HANet's positional encoding reads.

For an image of H rows, pixel row r gets ``(r * 1024 // H) // 8``: its row in the
full 1024-row Cityscapes frame, divided by 8, so values run 0..127 whatever the
image's resolution.  (This equals ``r * 128 // H``, the model's default for an
uncropped input.)  The map is built when an image is loaded, at its full size,
and then goes through scaling, cropping and flipping exactly like the label
(nearest neighbour), so a crop still knows where each of its rows sat in the frame.
Pixels that crop padding adds get ``POS_PAD`` = 128, one past the last position.
"""
from __future__ import annotations

import torch

FRAME_HEIGHT = 1024  # pixel rows of the Cityscapes frame the original's positions refer to
POS_FACTOR = 8  # frame rows per position step
POSITION_ROWS = FRAME_HEIGHT // POS_FACTOR  # 128 positions, 0..127 (hanet.models.pos_encoding's too)
POS_PAD = POSITION_ROWS  # 128: the value of padded pixels


def position_map(height: int, width: int) -> torch.Tensor:
    """(height, width) uint8 map, row r -> (r * 1024 // height) // 8, in 0..127."""
    if height < 1 or width < 1:
        raise ValueError(f"position_map: size must be positive, got {height}x{width}")
    rows = torch.arange(height, dtype=torch.int64) * FRAME_HEIGHT // height // POS_FACTOR
    return rows.to(torch.uint8)[:, None].expand(height, width).contiguous()
