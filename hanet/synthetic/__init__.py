"""Synthetic urban scenes in the exact Cityscapes layout, for tests, demos and smoke runs.

    from hanet.synthetic import make_synthetic_cityscapes
    root = make_synthetic_cityscapes("data/synthetic_cityscapes", train=80, val=20, size=(256, 512), seed=0)

or ``python -m hanet.synthetic OUT --train 80 --val 20 --size 256 512 --seed 0``
(``hanet make-synthetic-cityscapes`` on the command line).  Modules:

* :mod:`hanet.synthetic.writer`: the dataset layout, file formats and per-image seeds;
* :mod:`hanet.synthetic.scene`: the procedural street scenes (labelled polygons);
* :mod:`hanet.synthetic.render`: scene -> RGB image, labelIds and instanceIds;
* :mod:`hanet.synthetic.shapes`: looks, polygon clipping and shape templates;
* :mod:`hanet.synthetic.cli`: the command line.

The generator builds on :mod:`hanet.data` (the Cityscapes label tables); ``hanet.data``
does not import it, and keeps ``hanet.data.make_synthetic_cityscapes`` and
``python -m hanet.data.synthetic`` as aliases of this package's.
"""
from .cli import main
from .writer import CITIES, FRAME, image_name, image_names, make_synthetic_cityscapes, write_sample

__all__ = ["CITIES", "FRAME", "image_name", "image_names", "main", "make_synthetic_cityscapes", "write_sample"]
