"""Exceptions of the data package.

They subclass the built-in types that callers (and ``hanet``'s command line) already
catch: a missing dataset is a ``FileNotFoundError``, a bad file is a ``ValueError``.
Every message names the file or folder at fault.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("hanet.data")


def report_skipped(what: str, skipped: list[tuple[str, str]], total: int) -> None:
    """Logs (warning) how many files ``skip_corrupt=True`` dropped, and which."""
    if not skipped:
        return
    shown = "\n".join(f"  {path}: {problem}" for path, problem in skipped[:10])
    more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    log.warning(f"{what}: skipped {len(skipped)} unreadable file(s) of {total} (skip_corrupt=True):\n{shown}{more}")


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
