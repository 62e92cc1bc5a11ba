"""TensorBoard writers (training logs, ``hanet eval --tensorboard``): TensorBoard is an
optional dependency (``hanet[train]``), so a missing one is a one-line error naming it."""
from __future__ import annotations


def summary_writer(log_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("TensorBoard logging needs tensorboard: pip install 'hanet[train]' "
                          "(or pip install tensorboard)") from None
    return SummaryWriter(str(log_dir))
