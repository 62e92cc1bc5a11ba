"""Alias of :mod:`hanet.synthetic`, where the synthetic Cityscapes-layout generator
lives: ``from hanet.data.synthetic import make_synthetic_cityscapes`` and
``python -m hanet.data.synthetic OUT ...`` keep working (same functions, same files)."""
import sys

from hanet.synthetic import CITIES, FRAME, image_name, image_names, main, make_synthetic_cityscapes, write_sample

__all__ = ["CITIES", "FRAME", "image_name", "image_names", "main", "make_synthetic_cityscapes", "write_sample"]

if __name__ == "__main__":
    sys.exit(main())
