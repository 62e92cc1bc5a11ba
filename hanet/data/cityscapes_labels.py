"""The Cityscapes label definitions (labelId, name, trainId, instances, colour), as
published with the dataset.  Kept here so that ``hanet.data`` imports without
``cityscapesscripts``; tests/test_labels.py checks every row against
``cityscapesscripts.helpers.labels`` (the table the benchmark server uses)."""
from __future__ import annotations

from typing import NamedTuple


class Label(NamedTuple):
    name: str
    id: int
    trainId: int  # 255: not evaluated
    hasInstances: bool
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, False, (0, 0, 0)),
    Label("ego vehicle", 1, 255, False, (0, 0, 0)),
    Label("rectification border", 2, 255, False, (0, 0, 0)),
    Label("out of roi", 3, 255, False, (0, 0, 0)),
    Label("static", 4, 255, False, (0, 0, 0)),
    Label("dynamic", 5, 255, False, (111, 74, 0)),
    Label("ground", 6, 255, False, (81, 0, 81)),
    Label("road", 7, 0, False, (128, 64, 128)),
    Label("sidewalk", 8, 1, False, (244, 35, 232)),
    Label("parking", 9, 255, False, (250, 170, 160)),
    Label("rail track", 10, 255, False, (230, 150, 140)),
    Label("building", 11, 2, False, (70, 70, 70)),
    Label("wall", 12, 3, False, (102, 102, 156)),
    Label("fence", 13, 4, False, (190, 153, 153)),
    Label("guard rail", 14, 255, False, (180, 165, 180)),
    Label("bridge", 15, 255, False, (150, 100, 100)),
    Label("tunnel", 16, 255, False, (150, 120, 90)),
    Label("pole", 17, 5, False, (153, 153, 153)),
    Label("polegroup", 18, 255, False, (153, 153, 153)),
    Label("traffic light", 19, 6, False, (250, 170, 30)),
    Label("traffic sign", 20, 7, False, (220, 220, 0)),
    Label("vegetation", 21, 8, False, (107, 142, 35)),
    Label("terrain", 22, 9, False, (152, 251, 152)),
    Label("sky", 23, 10, False, (70, 130, 180)),
    Label("person", 24, 11, True, (220, 20, 60)),
    Label("rider", 25, 12, True, (255, 0, 0)),
    Label("car", 26, 13, True, (0, 0, 142)),
    Label("truck", 27, 14, True, (0, 0, 70)),
    Label("bus", 28, 15, True, (0, 60, 100)),
    Label("caravan", 29, 255, True, (0, 0, 90)),
    Label("trailer", 30, 255, True, (0, 0, 110)),
    Label("train", 31, 16, True, (0, 80, 100)),
    Label("motorcycle", 32, 17, True, (0, 0, 230)),
    Label("bicycle", 33, 18, True, (119, 11, 32)),
    Label("license plate", -1, -1, False, (0, 0, 142)),  # id -1: never in a label image
)
NAME_TO_LABEL = {lab.name: lab for lab in LABELS}
