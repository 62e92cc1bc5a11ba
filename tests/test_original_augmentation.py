"""The original's training augmentation (data.pre_size, crop_nopad, rrotate, color_aug,
gblur, bblur): sizes, crop placement and position maps, rotation fills, the colour
jitter's ranges, order and 8-bit arithmetic, and both blurs, each against values
worked out from the original's code and the libraries it called."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from hanet.data.blur import SkimageBilateralBlur, SkimageGaussianBlur, bilateral_blur, gaussian_blur
from hanet.data.color_jitter import ColorJitterPIL, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation
from hanet.data.joint_geometry import RandomRotate, RandomSizeAndCrop, ResizeSquare
from hanet.data.position import position_map
from hanet.data.transforms import train_transforms


def coded(h, w):
    """label = 10 * row + col (< 256), image = the label in every channel, frame positions."""
    label = (torch.arange(h)[:, None] * 10 + torch.arange(w)[None, :]).to(torch.uint8)
    return {"image": label.expand(3, h, w).clone(), "label": label, "pos_h": position_map(h, w)}


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- RandomSizeAndCrop, Resize --------------------------------------------------------------------

def test_pad_mode_centres_the_image_with_a_margin_of_one():
    # 6x10 image, crop 8: pad (8 - 6) // 2 + 1 = 2 rows on each side, then a window among 3 offsets.
    tops = set()
    for seed in range(60):
        out = RandomSizeAndCrop(8, scale_min=1, scale_max=1, generator=gen(seed))(coded(6, 10))
        assert out["label"].shape == (8, 8)
        real = (out["label"] != 255).all(1).nonzero().flatten().tolist()
        top = real[0]
        assert real == list(range(top, top + 6))
        tops.add(top)
        assert (out["pos_h"][:top] == 128).all() and (out["pos_h"][top + 6:] == 128).all()
        assert out["pos_h"][top:top + 6, 0].tolist() == [0, 21, 42, 64, 85, 106]  # row * 128 // 6
        assert (out["image"][:, :top] == 0).all() and (out["label"][top + 6:] == 255).all()
    assert tops == {0, 1, 2}


def test_crop_nopad_shrinks_the_window_then_resizes():
    out = RandomSizeAndCrop(8, crop_nopad=True, scale_min=1, scale_max=1, generator=gen(0))(coded(6, 10))
    assert out["label"].shape == (6, 6) and (out["label"] != 255).all()
    assert out["pos_h"][:, 0].tolist() == [0, 21, 42, 64, 85, 106]
    left = int(out["label"][0, 0])
    assert 0 <= left <= 4 and out["label"][0].tolist() == list(range(left, left + 6))
    out = ResizeSquare(8)(out)  # nearest: source index floor((i + 0.5) * 6 / 8)
    assert out["label"].shape == (8, 8) and out["image"].shape == (3, 8, 8)
    assert out["pos_h"][:, 0].tolist() == [0, 21, 21, 42, 64, 85, 85, 106]
    assert out["label"][:, 0].tolist() == [left + 10 * r for r in (0, 1, 1, 2, 3, 4, 4, 5)]
    # Larger than the crop: a plain 8x8 window, no resize.
    big = RandomSizeAndCrop(8, crop_nopad=True, scale_min=1, scale_max=1, generator=gen(0))(coded(12, 20))
    assert big["label"].shape == (8, 8) and ResizeSquare(8)(big)["label"].equal(big["label"])


@pytest.mark.parametrize("h,w,pre,size", [(6, 10, 12, (12, 20)), (10, 6, 12, (20, 12)), (6, 10, 7, (7, 11)),
                                          (6, 10, None, (6, 10))])
def test_pre_size_scales_the_shorter_edge_and_truncates(h, w, pre, size):
    # s = pre_size / shorter edge; new size int(w * s) x int(h * s): 10 * 7 / 6 = 11.67 -> 11.
    t = RandomSizeAndCrop(max(size), crop_nopad=True, scale_min=1, scale_max=1, pre_size=pre, generator=gen(0))
    scaled = t.rescale(coded(h, w))
    assert scaled["label"].shape == size and scaled["image"].shape == (3, *size)
    rows = [int((i + 0.5) * h / size[0]) for i in range(size[0])]  # PIL's nearest: the source under the centre
    assert scaled["pos_h"][:, 0].tolist() == [r * 128 // h for r in rows]


def test_scale_factor_draws_from_the_range():
    t = RandomSizeAndCrop(8, scale_min=0.5, scale_max=2.0, pre_size=20, generator=gen(0))
    draws = [t.scale_factor(10, 40) for _ in range(300)]  # pre: 20 / 10 = 2
    assert 1.0 <= min(draws) < 1.05 and 3.95 < max(draws) <= 4.0


def test_centroid_corner_is_drawn_from_c_minus_size_to_c_and_clamped():
    # 20x20, crop 8, centroid (10, 10): x1 = clamp(randint(2, 10), 0, 12), so the window
    # [2, 10) can miss the centroid column, as in the original.
    lefts = set()
    for seed in range(200):
        s = coded(20, 20)
        s["label"] = torch.arange(20).expand(20, 20).to(torch.uint8).clone()
        s["centroid"] = (10, 10)
        out = RandomSizeAndCrop(8, scale_min=1, scale_max=1, generator=gen(seed))(s)
        lefts.add(int(out["label"][0, 0]))
    assert lefts == set(range(2, 11))
    s = coded(20, 20)
    s["centroid"] = (0, 0)  # x1 = max(0, randint(-8, 0)) = 0 and y1 = 0 always
    for seed in range(5):
        assert RandomSizeAndCrop(8, scale_min=1, scale_max=1, generator=gen(seed))(dict(s))["label"].equal(
            s["label"][0:8, 0:8])
    s["centroid"] = (19, 19)  # randint(11, 19) clamped to 12: the corner is 11 (1 in 9) or 12
    corners = {int(RandomSizeAndCrop(8, scale_min=1, scale_max=1, generator=gen(seed))(dict(s))["label"][0, 0])
               for seed in range(100)}
    assert corners == {10 * y + x for y in (11, 12) for x in (11, 12)}


# ---- RandomRotate ------------------------------------------------------------------------------------

def test_rotation_180_shows_the_half_pixel_centre_and_the_fills():
    # torchvision 0.5 rotates about (w/2 + 0.5, h/2 + 0.5): output (y, x) reads (h - y, w - x),
    # so row 0 and column 0 come from outside: label 255, position 128, image 0.
    s = coded(6, 10)
    out = RandomRotate(10).rotate(s, 180.0)
    lab, pos = out["label"].long(), out["pos_h"].long()
    assert (lab[0] == 255).all() and (lab[:, 0] == 255).all()
    assert (pos[0] == 128).all() and (pos[:, 0] == 128).all()
    assert (out["image"][:, 0] == 0).all() and (out["image"][:, :, 0] == 0).all()
    for y in range(1, 6):
        for x in range(1, 10):
            assert lab[y, x] == 10 * (6 - y) + (10 - x)
            assert pos[y, x] == (6 - y) * 128 // 6


def test_rotation_corners_are_filled_and_angles_stay_in_range():
    s = {"image": torch.full((3, 20, 20), 200, dtype=torch.uint8), "label": torch.full((20, 20), 7, dtype=torch.uint8),
         "pos_h": torch.full((20, 20), 50, dtype=torch.uint8)}
    out = RandomRotate(45).rotate(s, 45.0)
    assert out["label"][0, 0] == 255 and out["pos_h"][0, 0] == 128 and (out["image"][:, 0, 0] == 0).all()
    assert out["label"][10, 10] == 7 and out["pos_h"][10, 10] == 50
    assert set(out["label"].unique().tolist()) == {7, 255}
    t = RandomRotate(10, generator=gen(0))
    angles = [t.draw_angle() for _ in range(300)]
    assert -10 <= min(angles) < -9.5 and 9.5 < max(angles) <= 10


# ---- colour jitter -----------------------------------------------------------------------------------

PIXELS = torch.tensor([[(100, 50, 201), (0, 0, 0), (255, 255, 255), (255, 0, 0)]], dtype=torch.uint8).permute(2, 0, 1)


def rows(img):
    return img.permute(1, 2, 0)[0].tolist()


def test_jitter_steps_literal_pil_arithmetic():
    # Brightness: trunc(f * x), clipped: 201 * 1.25 = 251.25 -> 251; 50 * 1.25 = 62.5 -> 62.
    assert rows(adjust_brightness(PIXELS, 1.25)) == [[125, 62, 251], [0, 0, 0], [255, 255, 255], [255, 0, 0]]
    # Contrast: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 = 82, 0, 255, 76; mean 103.25 -> 103.
    assert rows(adjust_contrast(PIXELS, 0.5)) == [[101, 76, 152], [51, 51, 51], [179, 179, 179], [179, 51, 51]]
    # Saturation: blend with the pixel's own L: red -> 76 + 0.5 * (255 - 76) = 165.5 -> 165.
    assert rows(adjust_saturation(PIXELS, 0.5)) == [[91, 66, 141], [0, 0, 0], [255, 255, 255], [165, 38, 38]]
    # Hue: h += uint8(f * 255) in PIL's 8-bit HSV; red + 0.25 -> h 63 -> (132, 255, 0); -0.25 wraps to 193.
    assert rows(adjust_hue(PIXELS[:, :, 3:], 0.25)) == [[132, 255, 0]]
    assert rows(adjust_hue(PIXELS[:, :, 3:], -0.25)) == [[138, 0, 255]]


def test_jitter_steps_equal_pillow_on_random_images():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    arr[:4] = 128  # grey rows (saturation 0)
    im, t = Image.fromarray(arr), torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    for f in (0.0, 0.3, 0.75, 0.9871, 1.0, 1.1234, 1.25, 2.0):
        for ours, pil in ((adjust_brightness, ImageEnhance.Brightness), (adjust_contrast, ImageEnhance.Contrast),
                          (adjust_saturation, ImageEnhance.Color)):
            assert np.array_equal(ours(t, f).permute(1, 2, 0).numpy(), np.asarray(pil(im).enhance(f))), (ours, f)
    for f in (-0.5, -0.25, -0.1, 0.004, 0.1, 0.25, 0.5):
        h, s, v = im.convert("HSV").split()
        h = Image.fromarray(((np.asarray(h).astype(int) + int(f * 255)) % 256).astype(np.uint8), "L")
        expected = np.asarray(Image.merge("HSV", (h, s, v)).convert("RGB"))
        assert np.array_equal(adjust_hue(t, f).permute(1, 2, 0).numpy(), expected), f


def test_jitter_ranges_and_random_order():
    jitter = ColorJitterPIL(0.25, 0.25, 0.25, 0.25, generator=gen(0))
    factors = {"brightness": [], "contrast": [], "saturation": [], "hue": []}
    orders = set()
    for _ in range(400):
        steps = jitter.draw()
        assert sorted(n for n, _ in steps) == sorted(factors)
        orders.add(tuple(n for n, _ in steps))
        for name, f in steps:
            factors[name].append(f)
    assert len(orders) == 24  # every order of the four steps
    for name in ("brightness", "contrast", "saturation"):
        assert 0.75 <= min(factors[name]) < 0.76 and 1.24 < max(factors[name]) <= 1.25
    assert -0.25 <= min(factors["hue"]) < -0.24 and 0.24 < max(factors["hue"]) <= 0.25
    wide = ColorJitterPIL(1.5, 0, 0, 0, generator=gen(1))  # [max(0, 1 - x), 1 + x]
    draws = [wide.draw() for _ in range(200)]
    assert all(len(d) == 1 and d[0][0] == "brightness" and 0 <= d[0][1] <= 2.5 for d in draws)
    assert min(d[0][1] for d in draws) < 0.1


def test_jitter_applies_its_draws_in_order_as_pillow_would():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    enh = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast, "saturation": ImageEnhance.Color}
    for seed in range(6):
        steps = ColorJitterPIL(generator=gen(seed)).draw()
        im = Image.fromarray(arr)
        for name, f in steps:
            if name == "hue":
                h, s, v = im.convert("HSV").split()
                h = Image.fromarray(((np.asarray(h).astype(int) + int(f * 255)) % 256).astype(np.uint8), "L")
                im = Image.merge("HSV", (h, s, v)).convert("RGB")
            else:
                im = enh[name](im).enhance(f)
        out = ColorJitterPIL(generator=gen(seed))({"image": torch.from_numpy(arr).permute(2, 0, 1).contiguous()})
        assert np.array_equal(out["image"].permute(1, 2, 0).numpy(), np.asarray(im)), steps


# ---- blurs ---------------------------------------------------------------------------------------

def scipy_gaussian_reference(arr: np.ndarray, sigma: float) -> np.ndarray:
    """skimage 0.16 gaussian -> scipy 1.4 gaussian_filter, written out per pixel: x * (1/255),
    kernel exp(-0.5 / s^2 * x^2) normalised (SciPy's numpy code), rows then columns,
    acc = x[i] * w0, then acc += (x[i-j] + x[i+j]) * w_j for j = r..1, edges repeated."""
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    w = [float(v) for v in (phi / phi.sum())[r:]]
    img = [[[float(v) * (1.0 / 255) for v in px] for px in row] for row in arr.tolist()]
    H, W = len(img), len(img[0])

    def filt(get, n):
        out = []
        for i in range(n):
            acc = get(i) * w[0]
            for j in range(r, 0, -1):
                acc += (get(max(i - j, 0)) + get(min(i + j, n - 1))) * w[j]
            out.append(acc)
        return out

    for c in range(3):
        for col in range(W):
            vals = filt(lambda i: img[i][col][c], H)
            for i in range(H):
                img[i][col][c] = vals[i]
        for row in range(H):
            vals = filt(lambda i: img[row][i][c], W)
            for i in range(W):
                img[row][i][c] = vals[i]
    return np.array([[[int(v * 255) for v in px] for px in row] for row in img], dtype=np.uint8)


@pytest.mark.parametrize("sigma", [0.15, 0.6, 1.29])
def test_gaussian_blur_equals_scipy_per_pixel(sigma):
    arr = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ours = gaussian_blur(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), sigma).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, scipy_gaussian_reference(arr, sigma))


@pytest.mark.parametrize("sigma", [0.45, 0.9, 1.29])
def test_gaussian_blur_of_flat_images_as_scipy(sigma):
    # On flat images the order of SciPy's float64 sums decides the truncation: e.g. a flat 73
    # comes out 72 at sigma 0.45 (the other summation order would give 73).
    for v in range(256):
        arr = np.full((3, 4, 3), v, dtype=np.uint8)
        ours = gaussian_blur(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), sigma).permute(1, 2, 0).numpy()
        assert np.array_equal(ours, scipy_gaussian_reference(arr, sigma)), v
    if sigma == 0.45:
        assert (gaussian_blur(torch.full((3, 3, 4), 73, dtype=torch.uint8), sigma) == 72).all()


def test_gaussian_blur_is_always_applied_with_sigma_in_range():
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 255).to(torch.uint8).expand(3, 8, 8)
    t = SkimageGaussianBlur(generator=gen(0))
    for _ in range(20):  # even sigma 0.15 turns 255 next to 0 into 254 (truncation)
        assert not torch.equal(t({"image": board})["image"], board)
    sigmas = [t.draw_sigma() for _ in range(300)]
    assert 0.15 <= min(sigmas) < 0.17 and 1.28 < max(sigmas) < 1.3


def skimage_bilateral_reference(arr: np.ndarray, sigma_spatial: float) -> np.ndarray:
    """skimage 0.16 denoise_bilateral(multichannel=True) written out per pixel, with its tables
    (its numpy code) and its Cython loop; NaN (all weights underflowed) becomes 0."""
    bins, rows_, cols = 10000, arr.shape[0], arr.shape[1]
    win = max(5, 2 * int(math.ceil(3 * sigma_spatial)) + 1)
    if arr.min() == arr.max():
        return (arr.astype(np.int64) * 255 % 256).astype(np.uint8)
    x = np.multiply(arr, 1.0 / 255, dtype=np.float64)
    sigma_color = x.std()
    color_lut = np.exp(-0.5 * (np.linspace(0, arr.max(), bins, endpoint=False) ** 2 / sigma_color ** 2))
    grid = np.arange(-win // 2, win // 2 + 1)
    rr, cc = np.meshgrid(grid, grid, indexing="ij")
    range_lut = np.exp(-0.5 * (np.hypot(rr, cc) ** 2 / sigma_spatial ** 2)).ravel()
    dist_scale = bins / 3 / float(x.max())
    ext = (win - 1) // 2
    out = np.zeros(arr.shape, dtype=np.uint8)
    for r in range(rows_):
        for c in range(cols):
            total, total_w = [0.0, 0.0, 0.0], 0.0
            for wr in range(-ext, ext + 1):
                for wc in range(-ext, ext + 1):
                    inside = 0 <= r + wr < rows_ and 0 <= c + wc < cols
                    vals = [float(x[r + wr, c + wc, d]) if inside else 0.0 for d in range(3)]
                    dist = 0.0
                    for d in range(3):
                        t = float(x[r, c, d]) - vals[d]
                        dist += t * t
                    dist = math.sqrt(dist)
                    weight = float(range_lut[(wr + ext) * win + (wc + ext)]) * float(
                        color_lut[min(int(dist * dist_scale), bins - 1)])
                    for d in range(3):
                        total[d] += vals[d] * weight
                    total_w += weight
            for d in range(3):
                out[r, c, d] = 0 if total_w == 0 else int(total[d] / total_w * 255)
    return out


@pytest.mark.parametrize("sigma", [0.05, 0.3, 0.7])
def test_bilateral_blur_equals_skimage_per_pixel(sigma):
    rng = np.random.default_rng(3)
    arr = (100 + rng.integers(0, 3, (6, 7, 3))).astype(np.uint8)  # near-identical colours get weight
    arr[4:, 5:] = rng.integers(0, 256, (2, 2, 3))  # and a few strong edges
    ours = bilateral_blur(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), sigma).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, skimage_bilateral_reference(arr, sigma))


def test_bilateral_blur_quirks_literal():
    flat = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    assert (bilateral_blur(flat, 0.3) == 156).all()  # 100 * 255 mod 256: the uint8 input comes back
    t = SkimageBilateralBlur(generator=gen(0))
    sigmas = [t.draw_sigma() for _ in range(300)]
    assert 0.05 <= min(sigmas) < 0.06 and 0.74 < max(sigmas) < 0.75


# ---- the pipeline ----------------------------------------------------------------------------------

def _steps(**kw):
    return [type(s).__name__ for s in train_transforms(16, **kw).transforms]


def test_pipeline_steps_follow_the_flags():
    assert _steps() == ["RandomSizeAndCrop", "ResizeSquare", "RandomHorizontalFlip", "ColorJitterPIL",
                        "SkimageGaussianBlur", "ToTensorNormalize"]
    assert "RandomRotate" in _steps(rrotate=10) and "RandomRotate" not in _steps(rrotate=0)
    assert "ColorJitterPIL" not in _steps(color_aug=0)
    both = _steps(bblur=True, gblur=True)
    assert "SkimageBilateralBlur" in both and "SkimageGaussianBlur" not in both
    assert "SkimageGaussianBlur" not in _steps(gblur=False)
    jitter = train_transforms(16, color_aug=0.3).transforms[3]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (0.3, 0.3, 0.3, 0.3)
    out = train_transforms(16, crop_nopad=True, pre_size=20, rrotate=5, bblur=True, generator=gen(0))(coded(12, 20))
    assert out["image"].shape == (3, 16, 16) and out["label"].shape == out["pos_h"].shape == (16, 16)
