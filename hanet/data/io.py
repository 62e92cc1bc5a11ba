"""Reading image and label files, with errors that name the file.

PIL reports a damaged file in many ways (OSError "image file is truncated",
SyntaxError for a broken PNG chunk, zlib errors, ValueError...); all of them become a
:class:`~hanet.data.errors.CorruptFileError` carrying the path, so that a bad file
among thousands is found at once.  Files are decoded fully here (``load()``), not
lazily, so the error surfaces at read time rather than deep inside a transform.
(PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` would hide truncation; it is
off by default and this package never sets it.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CorruptFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _open(path: str | Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decode now; the pixel data outlives the closed file
        return im
    except FileNotFoundError:
        raise CorruptFileError(path, f"{what} file does not exist") from None
    except MemoryError:
        raise
    except Exception as exc:  # PIL raises many types for damaged files; keep the cause chained
        raise CorruptFileError(path, f"cannot read {what}: {type(exc).__name__}: {exc}") from exc


def read_image(path: str | Path) -> Image.Image:
    """The image at ``path`` as a fully decoded RGB PIL image."""
    im = _open(path, "image")
    return im if im.mode == "RGB" else im.convert("RGB")


def read_label(path: str | Path) -> np.ndarray:
    """The label image at ``path`` as an (H, W) integer array of raw values.

    Accepts single-channel files: 8-bit ("L"), palette ("P": the indices are the
    values), 16/32-bit integer ("I;16", "I").  Colour label files are rejected, since
    their colours would have to be mapped back to ids.
    """
    im = _open(path, "label")
    if im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        arr = np.asarray(im)
        return arr.astype(np.uint8) if im.mode == "1" else arr
    raise CorruptFileError(path, f"label image has mode {im.mode!r} ({len(im.getbands())} channels); "
                                 "expected a single-channel id image (L, P, I;16 or I)")

