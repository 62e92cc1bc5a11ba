"""Test session set-up.

Triton kernels run on the CPU only when TRITON_INTERPRET=1 is set before triton is
first imported, so it is set here, before any test module imports hanet or torch.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

from train_fixtures import tiny_cityscapes  # noqa: E402,F401  (a session fixture shared by several test files)
