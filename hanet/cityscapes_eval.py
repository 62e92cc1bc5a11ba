"""The official Cityscapes pixel-level evaluation (cityscapesscripts), callable on
lists of prediction and ground-truth labelIds PNGs.

cityscapesscripts 2.3.0 calls ``np.in1d``, which numpy 2.4 removed; ``np.isin``
computes the same thing (the evaluator reshapes the result itself), so it is
provided under the old name while the evaluator runs.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np


@contextlib.contextmanager
def _numpy_in1d():
    added = not hasattr(np, "in1d")
    if added:
        np.in1d = lambda ar1, ar2, assume_unique=False, invert=False: np.isin(  # type: ignore[attr-defined]
            np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)
    try:
        yield
    finally:
        if added:
            del np.in1d


def official_scores(prediction_files: list[str], ground_truth_files: list[str]) -> dict:
    """Per-class IoU (by class name) and the mean, as the official script computes them."""
    if len(prediction_files) != len(ground_truth_files):
        raise ValueError(f"{len(prediction_files)} predictions for {len(ground_truth_files)} ground-truth files")
    with _numpy_in1d():
        from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
        from cityscapesscripts.helpers.labels import labels

        args = ev.args
        args.evalInstLevelScore = False
        args.JSONOutput = False
        args.quiet = True
        args.colorized = False
        with contextlib.redirect_stdout(io.StringIO()):
            conf = ev.generateMatrix(args)
            inst = ev.generateInstanceStats(args)
            per_image = {}
            for p, g in zip(prediction_files, ground_truth_files):
                ev.evaluatePair(p, g, conf, inst, per_image, args)
            class_scores = {}
            for label in labels:
                if label.ignoreInEval:
                    continue
                class_scores[label.name] = ev.getIouScoreForLabel(label.id, conf, args)
    values = [v for v in class_scores.values() if not np.isnan(v)]
    return {"per_class": class_scores, "miou": float(np.mean(values)) if values else float("nan")}
