"""Kernel launches of one HANet site (issue 13 asks for <= 4 per site per direction):
counted at the ATen level on small CPU tensors through the C++ kernels.
The ceilings are today's counts, so a change that adds launches fails; the GPU count
comes from `python -m hanet.bench launches --device cuda` (scripts/gpu_check.sh)."""
from __future__ import annotations

import pytest

from hanet.bench import launches
from hanet.ops import _extension

pytestmark = pytest.mark.skipif(not _extension.extension_loaded(), reason="needs hanet._C")

# (forward, backward) kernel ops of an R101-OS8 site in training on CPU, measured
# 2026-12-06 (a GPU: one op fewer forward, the positions asserted on the device).
CEILING = (33, 12)


@pytest.mark.parametrize("name", list(launches.SITES))
def test_site_launches_stay_within_todays_count(name):
    c_low, c_high, H = launches.SITES[name]
    site = launches.make_site(c_low, c_high, "cpu", backend="cpu")
    fwd, bwd = launches.count_ops(site, 8)  # the count does not depend on the spatial size
    # the fused ops, once each, and none of the reference ops they replace
    assert fwd["hanet.width_pool"] == 1 and fwd["hanet.attention_rescale"] == 1
    assert bwd["hanet.width_pool_backward"] == 1 and bwd["hanet.attention_rescale_backward"] == 1
    assert not any(k in fwd for k in ("aten._adaptive_avg_pool2d", "aten.upsample_linear1d", "aten.sigmoid"))
    # the pool gradient is added into x_low's existing gradient in one op (stride-0 rows)
    assert bwd["aten.add_"] == 1
    assert sum(fwd.values()) <= CEILING[0] and sum(bwd.values()) <= CEILING[1], (fwd, bwd)
