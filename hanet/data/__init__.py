"""Data for HANet: datasets, joint transforms carrying the row-position map and class-uniform
sampling.  The synthetic Cityscapes-layout generator is :mod:`hanet.synthetic`
(``make_synthetic_cityscapes`` here is an alias of it, imported on first use).

Datasets return dicts ``{"image", "label", "pos_h", "name", "path"}``: ``label`` int64
train ids (255 ignored), ``pos_h`` int64 row positions, ``(row * 1024 // H) // 8`` of
the full frame, carried through scale/crop/flip like the label (128 on padding).

    from hanet.data import CityscapesDataset, UniformClassDataset, train_transforms
    ds = CityscapesDataset("data/cityscapes", "train", transform=train_transforms(768))
    train = UniformClassDataset(ds, class_uniform_pct=0.5, class_uniform_tile=1024)
"""
from .base import Pair, SegmentationDataset
from .bdd100k import BDD100K_CLASSES, BDD100KDataset
from .camvid import CAMVID_CLASSES, CamVidDataset
from .cityscapes import CityscapesDataset
from .errors import BadFileError, CorruptFileError, DatasetNotFoundError, SizeMismatchError
from .factory import DATASETS, build_dataset
from .folder import FolderDataset
from .gtav import GTAV_CLASSES, GTAVDataset
from .images import ImageFolder
from .kitti import KITTI_CLASSES, KITTIDataset
from .labels import (CITYSCAPES, CLASS_NAMES, IGNORE_INDEX, LABEL_TO_TRAIN, NUM_CLASSES, PALETTE, TRAIN_TO_LABEL,
                     ClassTable, load_class_table, train_to_label_ids)
from .mapillary import MAPILLARY_CLASSES, MapillaryDataset
from .position import POS_PAD, position_map
from .transforms import (ColorJitter, Compose, RandomCrop, RandomGaussianBlur, RandomHorizontalFlip, RandomScale,
                         ToTensorNormalize, eval_transforms, train_transforms)
from .uniform_sampling import UniformClassDataset, class_centroids, tile_centroids

__all__ = [
    "BDD100KDataset", "BDD100K_CLASSES", "BadFileError", "CAMVID_CLASSES", "CITYSCAPES", "CLASS_NAMES",
    "CamVidDataset", "CityscapesDataset", "GTAVDataset", "GTAV_CLASSES", "KITTIDataset", "KITTI_CLASSES",
    "MAPILLARY_CLASSES", "MapillaryDataset",
    "ClassTable", "ColorJitter", "Compose", "CorruptFileError", "DATASETS", "DatasetNotFoundError", "FolderDataset",
    "IGNORE_INDEX", "ImageFolder", "LABEL_TO_TRAIN", "NUM_CLASSES", "PALETTE", "POS_PAD", "Pair", "RandomCrop",
    "RandomGaussianBlur", "RandomHorizontalFlip", "RandomScale", "SegmentationDataset", "SizeMismatchError",
    "TRAIN_TO_LABEL", "ToTensorNormalize", "UniformClassDataset", "build_dataset", "class_centroids",
    "eval_transforms", "load_class_table", "make_synthetic_cityscapes", "position_map", "tile_centroids",
    "train_to_label_ids", "train_transforms",
]


def __getattr__(name: str):
    # An alias of hanet.synthetic's, imported on first use: the generator builds on this
    # package (the label tables), so hanet.data does not import it at import time.
    if name == "make_synthetic_cityscapes":
        from hanet.synthetic import make_synthetic_cityscapes

        return make_synthetic_cityscapes
    raise AttributeError(f"module 'hanet.data' has no attribute {name!r}")
