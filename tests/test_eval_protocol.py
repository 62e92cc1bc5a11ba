"""``infer.protocol=original``: the original eval.py's inference, pixel for pixel; its
5-band report, its --dump_images pictures, its sharding, and the official eval/submit
configs.  Truths: predictions of the original eval.py (tests/data, see the README
there) and literal values worked out from its code by hand."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval_protocol_cases import CASES, ORACLE, official_file, scene
from hanet.evaluation import load_eval_config, load_model_for_inference, shard
from hanet.inference import InferenceConfig, predict_probs
from hanet.inference_original import (overlap_divisor, predict_original, sliding_windows,
                                      window_positions)
from hanet.metrics import BandedConfusion, band_rows
from hanet.models import load_official

REPO = Path(__file__).resolve().parents[1]
TIE = 1e-6  # top-2 score margins below this are float32 noise between CPUs, not a protocol difference


@pytest.fixture(scope="module")
def case_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol")
    path = official_file(tmp / "official.pth", scene(tmp, (128, 256)))
    return tmp, path, load_official(path, backend="reference").eval()


@pytest.mark.parametrize("name", list(CASES))
def test_original_protocol_gives_the_original_eval_py_predictions(case_setup, name):
    tmp, _, model = case_setup
    size, mode, scales, flip, crop = CASES[name]
    oracle = np.load(ORACLE)
    want, margin = oracle[f"{name}_labels"], oracle[f"{name}_margin"]
    cfg = InferenceConfig(protocol="original", mode=mode, scales=scales, flip=flip, crop_size=crop)
    got, scores = predict_original(model, scene(tmp, size), cfg)
    assert got.shape == want.shape and scores.shape == (19, *want.shape)
    decided = margin >= TIE
    assert decided.mean() > 0.99
    assert np.unique(want).size == 19  # the case exercises every class
    differ = (got != want) & decided
    assert not differ.any(), f"{differ.sum()} of {decided.sum()} decided pixels differ from the original"


def test_the_oracle_comparison_can_tell_the_protocols_apart(case_setup):
    """The standard protocol, run on the same case, disagrees with the original's
    predictions, so the equality above is not a weak check."""
    tmp, _, model = case_setup
    from torchvision.transforms import functional as TF

    image = scene(tmp, (128, 256))
    x = TF.normalize(TF.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
    for name in ("whole_multi_flip", "sliding_multi_flip"):
        _, mode, scales, flip, crop = CASES[name]
        std = predict_probs(model, x, cfg=InferenceConfig(mode=mode, scales=scales, flip=flip, crop_size=crop))
        want = np.load(ORACLE)[f"{name}_labels"]
        agree = (std.argmax(1)[0].numpy() == want).mean()
        assert 0.5 < agree < 0.999, (name, agree)


def test_windows_of_a_cityscapes_frame_at_the_three_scales():
    third = 1 / 3
    # scale 1.0: 1024-pixel tiles, stride ceil(1024 * 2/3) = 683, the last pushed back inside.
    assert sliding_windows(1024, 2048, 1024, third, 1.0) == [(0, 0, 1024, 1024), (683, 0, 1707, 1024),
                                                             (1024, 0, 2048, 1024)]
    # scale 2.0: the tile grows with the scale (2048), stride 1366.
    assert sliding_windows(2048, 4096, 1024, third, 2.0) == [(0, 0, 2048, 2048), (1366, 0, 3414, 2048),
                                                             (2048, 0, 4096, 2048)]
    # scale 0.5: one window, clipped to the 512x1024 image (no padding).
    assert sliding_windows(512, 1024, 1024, third, 0.5) == [(0, 0, 1024, 512)]


def test_windows_run_columns_outer_rows_inner():
    w = sliding_windows(256, 384, 128, 1 / 3, 1.0)  # stride 86: 4 columns x 3 rows
    xs = [(0, 128), (86, 214), (172, 300), (256, 384)]
    ys = [(0, 128), (86, 214), (128, 256)]
    assert w == [(x1, y1, x2, y2) for x1, x2 in xs for y1, y2 in ys]
    with pytest.raises(ValueError, match="no 1024-pixel window"):
        sliding_windows(200, 300, 1024, 1 / 3, 1.0)


def test_overlap_divisor_indexes_classes_with_rows_and_rows_with_columns():
    count = overlap_divisor([(0, 0, 2, 2), (1, 1, 3, 3)], classes=3, height=4)[..., 0]
    assert count.tolist() == [[1, 1, 0, 0], [1, 2, 1, 0], [0, 1, 1, 0]]
    # The Cityscapes frame at scale 1.0: every class is divided by 2 on rows 683.. (not columns).
    count = overlap_divisor(sliding_windows(1024, 2048, 1024, 1 / 3, 1.0), 19, 1024)[..., 0]
    assert (count[:, :683] == 1).all() and (count[:, 683:] == 2).all()


def test_window_positions_are_truncated_rows_of_the_1024_row_frame():
    assert window_positions(0, 1024, 1024).tolist() == [[r // 8 for r in range(1024)]]
    # A window on rows 86..214 of a 256-row image: frame rows int(86 * 4) .. int(214 * 4).
    assert window_positions(86, 214, 256).tolist() == [[r // 8 for r in range(344, 856)]]
    # 1024 / 192 = 5.333..: int(64 * 5.333..) = 341, int(192 * 5.333..) = 1024.
    assert window_positions(64, 192, 192)[0, 0].item() == 341 // 8
    assert window_positions(64, 192, 192).shape[1] == 1024 - 341


def test_band_metrics_against_hand_counts():
    assert band_rows(10) == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 10)]
    label = torch.tensor([[0, 0], [0, 0], [1, 1], [1, 1], [0, 1], [0, 1], [1, 1], [1, 1]])
    pred = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 1], [0, 1], [1, 1], [1, 1], [0, 1]])
    cm = BandedConfusion(2)
    cm.update(pred, label)
    m = cm.compute()
    # whole: class 0: TP 4, GT 6, PRED 5 -> 4/7; class 1: TP 9, GT 10, PRED 11 -> 9/12
    assert m.miou == pytest.approx((4 / 7 + 9 / 12) / 2)
    # upper (rows 0-1): class 0 3/4, class 1 0/1; mid 1 (rows 2-3): only class 1, 4/4
    assert m.bands["upper"].miou == pytest.approx((3 / 4 + 0) / 2)
    assert m.bands["mid1"].miou == pytest.approx(1.0)
    # mid 2 (rows 4-5): class 0 1/2, class 1 2/3; lower (rows 6-7): class 0 0/1, class 1 3/4
    assert m.bands["mid2"].miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m.bands["lower"].miou == pytest.approx((0 + 3 / 4) / 2)


def test_shards_are_contiguous_and_cover_everything():
    assert [list(shard(10, i, 3)) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


@pytest.mark.parametrize("name,arch,split", [
    ("eval_r101_os8", "DeepR101V3PlusD_HANet_OS8", "val"),
    ("eval_resnext_os8", "DeepResNext101V3PlusD_HANet_OS8", "val"),
    ("eval_resnext_os4", "DeepResNext101V3PlusD_HANet_OS4", "val"),
    ("submit_r101_os8", "DeepR101V3PlusD_HANet_OS8", "test"),
    ("submit_cityscapes_resnext", "DeepResNext101V3PlusD_HANet_OS8", "test"),
])
def test_official_eval_configs_state_the_scripts_flags(name, arch, split):
    from hanet.models.registry import parse_arch

    cfg = load_eval_config([], path=REPO / "train" / "configs" / f"{name}.yaml")
    assert (cfg.model.arch, cfg.data.dataset, cfg.data.split) == (arch, "cityscapes", split)
    parse_arch(arch)  # a name we build
    assert (cfg.model.hanet, cfg.model.hanet_set, cfg.model.hanet_pos, cfg.model.pos_rfactor) == \
        ([1, 1, 1, 1, 0], [3, 64, 3], [2, 1], 8)
    i = cfg.infer
    assert (i.protocol, i.mode, i.crop_size, i.scales, i.flip) == ("original", "sliding", (1024, 1024),
                                                                  [0.5, 1.0, 2.0], True)
    assert i.overlap == 1 / 3 and math.ceil(1024 * (1 - i.overlap)) == 683


def test_eval_arch_changes_the_output_stride_and_hanet_flags_must_match(case_setup):
    """eval_resnext_os4 evaluates weights trained at OS8 at OS4: same tensors, other
    dilations.  A HANet flag that differs from the checkpoint's is refused."""
    _, path, model = case_setup
    cfg = load_eval_config(["model.arch=DeepShuffleNetV3PlusD_HANet_OS8", "device=cpu"])
    other = load_model_for_inference(str(path), cfg)
    assert other.config.output_stride == 8 and model.config.output_stride == 16
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    with pytest.raises(ValueError, match="model.hanet_set=\\[3, 64, 3\\].*hanet_set=\\[3, 16, 3\\]"):
        load_model_for_inference(str(path), load_eval_config(["model.hanet_set=[3,64,3]"]))
    with pytest.raises(ValueError, match="trunk"):
        load_model_for_inference(str(path), load_eval_config(["model.arch=DeepR101V3PlusD_HANet_OS8"]))


def test_bad_protocol_settings_are_named():
    with pytest.raises(ValueError, match="infer.protocol"):
        InferenceConfig(protocol="paper")
    with pytest.raises(ValueError, match="data.split_index"):
        load_eval_config(["data.split_index=3", "data.split_count=3"])
    with pytest.raises(ValueError, match="square windows"):
        predict_original(torch.nn.Conv2d(3, 3, 1), Image.new("RGB", (64, 32)),
                         InferenceConfig(protocol="original", mode="sliding", crop_size=(32, 64)))
    with pytest.raises(TypeError, match="PIL image"):
        predict_original(torch.nn.Conv2d(3, 3, 1), np.zeros((32, 64, 3), np.uint8), InferenceConfig(protocol="original"))


def test_fixed_aspp_pool_replaces_global_pooling_and_names_small_inputs(case_setup):
    _, _, model = case_setup
    big = Image.new("RGB", (64 * 16 + 16, 112 * 16), (90, 120, 60))  # ASPP input 113x65 at OS16: pooled 105x105 ...
    cfg = InferenceConfig(protocol="original", fixed_aspp_pool=True)
    with pytest.raises(ValueError, match="smaller than the fixed 105x105 pool"):
        predict_original(model, big, cfg)  # ... but 65 < 105 columns
    assert type(model.aspp.img_pooling).__name__ == "AdaptiveAvgPool2d"  # restored after the error


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hanet", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_eval_cli_reports_bands_and_dumps_the_original_pictures(tiny_cityscapes, case_setup, tmp_path):
    _, path, model = case_setup
    dumps, tb = tmp_path / "dump", tmp_path / "tb"
    proc = _cli("eval", path, f"data.root={tiny_cityscapes}", "infer.protocol=original", "infer.mode=sliding",
                "infer.crop_size=[64,64]", "--json", tmp_path / "r.json", "--dump-images", dumps,
                "--tensorboard", tb, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("Mean IoU (whole, upper, mid 1, mid 2, lower)")]
    assert len(line) == 1 and len(line[0].split(": ")[1].split()) == 5
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["bands"]) == {"upper", "mid1", "mid2", "lower"} and record["protocol"] == "original"
    assert list(tb.glob("events.out.tfevents.*"))

    image_path = sorted((tiny_cityscapes / "leftImg8bit" / "val").rglob("*.png"))[0]
    stem = image_path.stem  # <city>_<seq>_<frame>_leftImg8bit, as the original names its dumps
    for rel in (f"rgb/{stem}_color.png", f"compose/{stem}_compose.png", f"diff/{stem}_diff.png", f"pred/{stem}.png"):
        assert (dumps / rel).exists(), rel
    from hanet.data import LABEL_TO_TRAIN, TRAIN_TO_LABEL, build_dataset

    pred_ids = np.asarray(Image.open(dumps / "pred" / f"{stem}.png"))
    pred = LABEL_TO_TRAIN[pred_ids]
    assert (pred != 255).all() and np.array_equal(TRAIN_TO_LABEL[pred], pred_ids)
    ds = build_dataset("cityscapes", tiny_cityscapes, "val")
    i = [p.image for p in ds.pairs].index(image_path)
    want, _ = predict_original(model, ds.load(i)["image"], load_eval_config(
        ["infer.protocol=original", "infer.mode=sliding", "infer.crop_size=[64,64]"]).infer.to_inference())
    assert np.array_equal(pred, want)
    colour = Image.open(dumps / "rgb" / f"{stem}_color.png")
    assert colour.mode == "P" and colour.getpalette()[:6] == [128, 64, 128, 244, 35, 232]  # road, sidewalk
    assert np.array_equal(np.asarray(colour), want)
    label = ds.load(i)["label"].numpy()
    diff = np.asarray(Image.open(dumps / "diff" / f"{stem}_diff.png"))
    compose = np.asarray(Image.open(dumps / "compose" / f"{stem}_compose.png"))
    right = (want == label) | (label == 255)
    assert (diff[right] == 255).all()  # white where right
    assert np.array_equal(diff[~right], compose[~right])  # the blend where wrong
    rgb = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    palette = np.array(colour.getpalette()[:57]).reshape(19, 3)
    assert np.abs(compose[..., :3] - (rgb + palette[want]) / 2).max() <= 1  # a 50/50 blend
