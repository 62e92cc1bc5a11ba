"""Class-uniform sampling: centroids, their cache, epoch statistics and determinism,
crops around centroids, coarse boosting, DistributedSampler compatibility."""
from __future__ import annotations

import collections
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from hanet.data import CityscapesDataset, UniformClassDataset, tile_centroids
from hanet.data.transforms import Compose, RandomCrop, RandomHorizontalFlip, ToTensorNormalize
from hanet.synthetic import make_synthetic_cityscapes
from hanet.data.uniform_sampling import cache_path, class_centroids

TILE = 64


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), train=12, val=0, size=(96, 192), seed=5)


@pytest.fixture
def dataset(root):
    return CityscapesDataset(root, "train")


def test_tile_centroids_lie_on_their_class():
    label = np.full((8, 12), 255, np.uint8)
    label[1:7, 1:7] = 3
    label[3:5, 3:5] = 255  # a ring: its centre of mass is not on the class
    label[:, 8:] = 4
    label[0, 11] = 5
    cents = tile_centroids(label, 19, tile=100)
    assert set(cents) == {3, 4, 5}
    for c, pts in cents.items():
        assert len(pts) == 1 and label[pts[0]] == c
    assert cents[5] == [(0, 11)]
    tiled = tile_centroids(label, 19, tile=6)  # tiles (0..5, 6..7) x (0..5, 6..11)
    assert len(tiled[3]) == 4 and len(tiled[4]) == 2
    for c, pts in tiled.items():
        assert all(label[p] == c for p in pts)
    assert tile_centroids(np.full((4, 4), 255, np.uint8), 19, 2) == {}


def test_centroid_cache_is_written_reused_and_invalidated(root, tmp_path):
    ds = CityscapesDataset(root, "train")
    path = cache_path(ds, TILE, tmp_path)
    first, hit = class_centroids(ds, TILE, tmp_path)
    assert not hit and path.is_file()
    again, hit = class_centroids(ds, TILE, tmp_path)
    assert hit and first.keys() == again.keys()
    assert all(np.array_equal(first[c], again[c]) for c in first)
    for c, arr in first.items():  # every point is on its class in its image
        for i, r, q in arr[:5]:
            assert ds.load_label(int(i))[r, q] == c
    assert not class_centroids(ds, TILE * 2, tmp_path)[1]  # another tile: another cache
    # A changed file list invalidates the cache.
    copy = shutil.copytree(root, tmp_path / "copy")
    ds_copy = CityscapesDataset(copy, "train")
    class_centroids(ds_copy, TILE, tmp_path)
    assert class_centroids(ds_copy, TILE, tmp_path)[1]
    victim = ds_copy.pairs[0]
    victim.image.unlink()
    victim.label.unlink()
    shrunk = CityscapesDataset(copy, "train")
    assert cache_path(shrunk, TILE, tmp_path) == cache_path(ds_copy, TILE, tmp_path)
    cents, hit = class_centroids(shrunk, TILE, tmp_path)
    assert not hit and all(arr[:, 0].max() < len(shrunk) for arr in cents.values())
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable centroid cache"):
        assert not class_centroids(ds, TILE, tmp_path)[1]


def test_all_class_uniform_draws_classes_uniformly(dataset, tmp_path):
    u = UniformClassDataset(dataset, class_uniform_pct=1.0, class_uniform_tile=TILE, cache_dir=tmp_path,
                            epoch_size=19 * 40)
    assert len(u) == 19 * 40
    counts = collections.Counter(item.class_id for item in u.items)
    assert -1 not in counts and set(counts) == set(u.pools)
    assert len(u.pools) >= 15
    assert max(counts.values()) - min(counts.values()) <= 1
    for item in u.items[:50]:
        assert dataset.load_label(item.index)[item.centroid] == item.class_id


def test_no_class_uniform_is_a_shuffled_pass(dataset, tmp_path):
    u = UniformClassDataset(dataset, class_uniform_pct=0.0, cache_dir=tmp_path)
    assert len(u) == len(dataset)
    assert all(item.class_id == -1 and item.centroid is None for item in u.items)
    assert sorted(item.index for item in u.items) == list(range(len(dataset)))
    assert not list(tmp_path.iterdir())  # nothing computed or cached


def test_mixed_epochs_are_deterministic_per_seed_and_epoch(dataset, tmp_path):
    make = lambda seed: UniformClassDataset(dataset, 0.5, TILE, seed=seed, cache_dir=tmp_path)  # noqa: E731
    a, b, c = make(1), make(1), make(2)
    assert a.items == b.items and a.items != c.items
    assert sum(item.class_id >= 0 for item in a.items) == round(0.5 * len(dataset))
    a.build_epoch(3)
    b.build_epoch(3)
    assert a.items == b.items
    epoch3 = list(a.items)
    a.build_epoch(4)
    assert a.items != epoch3 and len(a) == len(epoch3) == len(dataset)


def test_class_uniform_crop_contains_the_class(dataset, tmp_path):
    gen = torch.Generator().manual_seed(0)
    dataset.transform = Compose([RandomCrop(24, generator=gen), RandomHorizontalFlip(generator=gen),
                                 ToTensorNormalize()])
    u = UniformClassDataset(dataset, 1.0, TILE, cache_dir=tmp_path, epoch_size=60)
    for i, item in enumerate(u.items):
        sample = u[i]
        assert sample["image"].shape == (3, 24, 24)
        assert (sample["label"] == item.class_id).any(), item
    loader = torch.utils.data.DataLoader(u, batch_size=4)
    batch = next(iter(loader))
    assert batch["label"].shape == (4, 24, 24) and batch["pos_h"].dtype == torch.int64


def test_distributed_sampler_splits_the_epoch(dataset, tmp_path):
    u = UniformClassDataset(dataset, 0.5, TILE, seed=0, cache_dir=tmp_path)
    shares = []
    for rank in range(2):
        sampler = DistributedSampler(u, num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(1)
        shares.append(list(sampler))
    assert len(shares[0]) == len(shares[1]) == len(u) // 2
    assert sorted(shares[0] + shares[1]) == list(range(len(u)))


def test_coarse_boost_adds_coarse_centroids_of_boosted_classes(root, tmp_path):
    coarse_root = tmp_path / "coarse"
    shutil.copytree(root / "leftImg8bit" / "train", coarse_root / "leftImg8bit" / "train_extra")
    for src in (root / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"):
        dst = coarse_root / "gtCoarse" / "train_extra" / src.parent.name / src.name.replace("gtFine", "gtCoarse")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    fine = CityscapesDataset(root, "train")
    coarse = CityscapesDataset(coarse_root, "train_extra", quality="coarse")
    u = UniformClassDataset(fine, 1.0, TILE, cache_dir=tmp_path, coarse=coarse, coarse_boost_classes=[13],
                            epoch_size=400)
    assert set(u.pools[13][:, 0].tolist()) == {0, 1}
    assert all(set(u.pools[c][:, 0].tolist()) == {0} for c in u.pools if c != 13)
    from_coarse = [item for item in u.items if item.source == 1]
    assert from_coarse and all(item.class_id == 13 for item in from_coarse)
    assert coarse.get(from_coarse[0].index)["label"].shape == (96, 192)
    with pytest.raises(ValueError, match="coarse"):
        UniformClassDataset(fine, 0.5, TILE, cache_dir=tmp_path, coarse_boost_classes=[13])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        UniformClassDataset(fine, 1.5, TILE, cache_dir=tmp_path)
