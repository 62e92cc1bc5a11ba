"""Exceptions of the data package.

They subclass the built-in types that callers (and ``hanet``'s command line) already
catch: a missing dataset is a ``FileNotFoundError``, a bad file is a ``ValueError``.
Every message names the file or folder at fault.
"""
from __future__ import annotations

from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root or split folder is missing or empty; the message shows the expected tree."""


class BadFileError(ValueError):
    """A file of a dataset cannot be used; ``path`` is that file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CorruptFileError(BadFileError):
    """An image or label file cannot be decoded (truncated, not an image, wrong mode...)."""


class SizeMismatchError(BadFileError):
    """An image and its label differ in size; ``path`` is the label, the message names both."""
