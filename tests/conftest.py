"""Test session set-up.

Triton kernels run on the CPU only when TRITON_INTERPRET=1 is set before triton is
first imported, so it is set here, before any test module imports hanet or torch.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

from train_fixtures import tiny_cityscapes  # noqa: E402,F401  (a session fixture shared by several test files)

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small convolutions and big copies on a few shared cores, where a second
    intra-op thread mostly waits: one thread for the module, restored afterwards.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
