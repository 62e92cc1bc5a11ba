"""Joint transforms keep image, label and position map aligned (property-based), pad
with 0 / 255 / 128, and the position map is row // 8 of the 1024-row frame."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from hanet.data.position import POS_PAD, position_map
from hanet.data.transforms import (ColorJitter, Compose, RandomCrop, RandomGaussianBlur, RandomHorizontalFlip,
                                   RandomScale, ToTensorNormalize, eval_transforms, train_transforms)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def coded_sample(h, w, label_axis="row"):
    """Image channel 0 = row, 1 = column, 2 = 200 (0 only on padding); label = the row
    (or column); pos_h = the frame position map."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    image = torch.stack([rows, cols, torch.full((h, w), 200)]).to(torch.uint8)
    label = (rows if label_axis == "row" else cols).to(torch.uint8).contiguous()
    return {"image": image, "label": label, "pos_h": position_map(h, w)}


@st.composite
def geometry(draw):
    h, w = draw(st.integers(4, 120)), draw(st.integers(4, 120))
    return dict(h=h, w=w, scale=draw(st.just(1.0) | st.floats(0.5, 2.0)),
                crop=(draw(st.integers(1, 150)), draw(st.integers(1, 150))),
                flip=draw(st.booleans()), seed=draw(st.integers(0, 2**31)), axis=draw(st.sampled_from(["row", "col"])),
                centroid=draw(st.none() | st.tuples(st.floats(0, 0.999), st.floats(0, 0.999))))


@FAST
@given(geometry())
def test_scale_crop_flip_keep_everything_aligned(g):
    h, w = g["h"], g["w"]
    gen = torch.Generator().manual_seed(g["seed"])
    sample = coded_sample(h, w, g["axis"])
    centroid = None
    if g["centroid"] is not None:
        centroid = (int(g["centroid"][0] * h), int(g["centroid"][1] * w))
        sample["centroid"] = centroid
    pipeline = Compose([RandomScale(g["scale"], g["scale"], generator=gen), RandomCrop(g["crop"], generator=gen),
                        RandomHorizontalFlip(1.0 if g["flip"] else 0.0, generator=gen)])
    out = pipeline(sample)
    image, label, pos = out["image"].long(), out["label"].long(), out["pos_h"].long()
    assert "centroid" not in out
    assert image.shape == (3, *g["crop"]) and label.shape == g["crop"] and pos.shape == g["crop"]

    pad = label == 255
    assert (pos[pad] == POS_PAD).all() and (image[:, pad] == 0).all()
    real = ~pad
    assert (image[2][real] == 200).all()
    assert real.any() or centroid is None
    # Label and image agree on where each pixel came from: exactly without scaling;
    # bilinear (rounded) vs nearest-exact after scaling, within 1 (on a ramp, the bilinear
    # value is the source coordinate x, the nearest-exact label round(x)).
    coded = image[0] if g["axis"] == "row" else image[1]
    diff = (coded[real] - label[real]).abs()
    assert (diff == 0).all() if g["scale"] == 1.0 else (diff <= 1).all()
    if g["axis"] == "row":
        # The position map is the frame position of the pixel's source row, exactly.
        assert torch.equal(pos[real], (label[real] * 1024 // h) // 8)
    else:
        src_rows = image[0][real]  # source row from the image: position within one step of it
        assert ((pos[real] - (src_rows * 1024 // h) // 8).abs() <= 1 + 1024 // h // 8).all()
    if g["flip"] and real.sum() > 1:
        cols = image[1].float()
        inside = real.all(0)
        if inside.sum() > 1:  # columns run right to left after a flip
            c = cols[:, inside].mean(0)
            assert c[0] >= c[-1]
    if centroid is not None:  # the crop contains the centroid's neighbourhood
        target = centroid[0] if g["axis"] == "row" else centroid[1]
        assert (label[real] - target).abs().min() <= 1 + 1 / g["scale"]


def test_padding_values_and_image_fill():
    s = coded_sample(6, 5)
    out = RandomCrop((10, 12), image_fill="mean", generator=torch.Generator().manual_seed(0))(s)
    pad = out["label"] == 255
    assert pad.sum() == 10 * 12 - 6 * 5
    assert (out["pos_h"][pad] == 128).all()
    assert out["image"][:, pad].T.unique(dim=0).tolist() == [[124, 116, 104]]
    assert torch.equal(out["label"][~pad].reshape(6, 5), s["label"])


@pytest.mark.parametrize("h", [1024, 512, 256, 100, 2048, 7])
def test_position_map_is_row_of_the_1024_frame_div_8(h):
    pos = position_map(h, 3)
    assert pos.shape == (h, 3) and pos.dtype == torch.uint8
    for r in range(h):
        assert int(pos[r, 0]) == (r * 1024 // h) // 8 == r * 128 // h
    assert int(pos.max()) <= 127 and (pos == pos[:, :1]).all()
    if h == 1024:
        assert torch.equal(pos[:, 0].long(), torch.arange(1024) // 8)


def test_scale_uses_only_existing_label_values():
    s = coded_sample(37, 23)
    s["label"] = torch.randint(0, 19, (37, 23), dtype=torch.uint8)
    for f in (0.5, 0.77, 1.3, 2.0):
        out = RandomScale(f, f)(dict(s))
        assert set(out["label"].unique().tolist()) <= set(s["label"].unique().tolist())
        assert out["label"].shape == (round(37 * f), round(23 * f))


def test_photometric_steps_leave_label_and_pos_alone():
    s = coded_sample(40, 50)
    s["image"] = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(3)
    for t in (ColorJitter(0.25, 0.25, 0.25, 0.1, generator=gen), RandomGaussianBlur(1.0, generator=gen)):
        out = t(dict(s))
        assert out["label"] is s["label"] and out["pos_h"] is s["pos_h"]
        assert out["image"].dtype == torch.float32 and 0 <= float(out["image"].min()) <= float(out["image"].max()) <= 1
        assert out["image"].shape == (3, 40, 50)
    out = ToTensorNormalize()(dict(s))
    expected = (s["image"].float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(out["image"], expected)
    assert out["label"].dtype == out["pos_h"].dtype == torch.int64


def test_train_pipeline_is_seeded_by_its_generator():
    s = coded_sample(60, 90)
    a = train_transforms(32, generator=torch.Generator().manual_seed(5))(dict(s))
    b = train_transforms(32, generator=torch.Generator().manual_seed(5))(dict(s))
    c = train_transforms(32, generator=torch.Generator().manual_seed(6))(dict(s))
    assert all(torch.equal(a[k], b[k]) for k in ("image", "label", "pos_h"))
    assert not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (3, 32, 32) and a["image"].dtype == torch.float32
    torch.manual_seed(0)
    d = train_transforms(32)(dict(s))  # global RNG
    torch.manual_seed(0)
    e = train_transforms(32)(dict(s))
    assert torch.equal(d["image"], e["image"])
    full = eval_transforms()(dict(s))
    assert full["image"].shape == (3, 60, 90) and torch.equal(full["pos_h"], s["pos_h"].long())


def test_transforms_without_label_for_inference():
    s = coded_sample(30, 40)
    del s["label"]
    out = train_transforms(16, generator=torch.Generator().manual_seed(0))(s)
    assert "label" not in out and out["pos_h"].shape == (16, 16)


class _Same(Dataset):
    """The same sample twice; each DataLoader worker loads one copy."""

    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.transform(coded_sample(64, 64))["pos_h"]


@pytest.mark.parametrize("explicit", [False, True])
def test_workers_draw_different_augmentations(explicit):
    gen = torch.Generator().manual_seed(0) if explicit else None
    t = Compose([RandomScale(0.5, 2.0, generator=gen), RandomCrop(24, generator=gen)])
    torch.manual_seed(0)
    loader = DataLoader(_Same(t), batch_size=1, num_workers=2, multiprocessing_context="fork")
    a, b = list(loader)
    assert not torch.equal(a, b)
