"""The launches the ``hanet_triton`` ops make at representative HANet shapes, for the
ahead-of-time compile test (tests/test_triton_aot.py): the same ``plan_*`` functions
the launchers call, so the test compiles exactly what runs."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from . import KERNELS  # noqa: F401  (the test checks every kernel is planned)
from .attention_rescale import plan_attention_rescale, plan_attention_rescale_backward
from ..contract import RESCALE_SAVES_OUTPUT
from .common import Launch, Plan
from .height_interp import plan_height_interp, plan_height_interp_backward
from .width_pool import plan_width_pool, plan_width_pool_backward

POOL_SHAPES = ((2, 1024, 96, 96), (2, 304, 192, 192))
RESCALE_SHAPES = ((2, 2048, 96, 96), (2, 256, 192, 192))
HANET_ROWS = 16


def launch_configs(dtype: torch.dtype = torch.float32,
                   pool_shapes: Sequence[Tuple[int, int, int, int]] = POOL_SHAPES,
                   rescale_shapes: Sequence[Tuple[int, int, int, int]] = RESCALE_SHAPES,
                   rows: int = HANET_ROWS) -> List[Tuple[str, Launch]]:
    """(label, launch) for every launch the ops make at representative HANet shapes,
    both layouts, both pool modes, forward and backward."""
    out: List[Tuple[str, Launch]] = []

    def add(label: str, plan: Plan) -> None:
        for k, launch in enumerate(plan.launches):
            out.append((f"{label}#{k}:{launch.name}", launch))

    for (B, C, H, W) in pool_shapes:
        for layout in ("nchw", "nhwc"):
            for mode in ("mean", "max"):
                tag = f"{B}x{C}x{H}x{W}/{layout}/{mode}"
                add(f"width_pool/{tag}", plan_width_pool(B, C, H, W, rows, mode, dtype, layout))
                add(f"width_pool_backward/{tag}",
                    plan_width_pool_backward(B, C, rows, H, W, mode, dtype, layout))
        add(f"height_interp/{B}x{C}:{rows}->{H}", plan_height_interp(B * C, rows, H, dtype))
        add(f"height_interp_backward/{B}x{C}:{H}->{rows}",
            plan_height_interp_backward(B * C, rows, H, dtype))
    for (B, C, H, W) in rescale_shapes:
        for layout in ("nchw", "nhwc"):
            tag = f"{B}x{C}x{H}x{W}/{layout}/h={rows}"
            add(f"attention_rescale/{tag}",
                plan_attention_rescale(B, C, H, W, rows, dtype, layout))
            add(f"attention_rescale_backward/{tag}",
                plan_attention_rescale_backward(B, C, H, W, rows, dtype, layout))
            if dtype in RESCALE_SAVES_OUTPUT:  # the variant the autograd formula calls
                add(f"attention_rescale_backward/{tag}/feat_is_output",
                    plan_attention_rescale_backward(B, C, H, W, rows, dtype, layout, True))
            # what a captured HANet branch calls (the gradient of A, HANet(cuda_graph=True))
            add(f"attention_rescale_backward/{tag}/attention_grad",
                plan_attention_rescale_backward(B, C, H, W, rows, dtype, layout,
                                                dtype in RESCALE_SAVES_OUTPUT, True))
    return out
