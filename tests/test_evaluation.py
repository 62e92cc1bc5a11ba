"""Evaluation and inference: metrics (hand-computed and the official Cityscapes
script), inference-mode equalities, eval/submit/predict files and errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hanet.cityscapes_eval import official_scores
from hanet.data import CITYSCAPES, LABEL_TO_TRAIN, train_to_label_ids
from hanet.inference import InferenceConfig, predict_probs
from hanet.metrics import ConfusionMatrix
from hanet.models import build_model, save


def test_metrics_against_a_hand_computed_matrix():
    cm = ConfusionMatrix(3)
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    m = cm.compute()
    # IoU = TP / (GT + PRED - TP): class 0: 2/(3+3-2), class 1: 1/(2+2-1), class 2: 2/(3+3-2)
    assert m.iou == pytest.approx([0.5, 1 / 3, 0.5])
    assert m.miou == pytest.approx((0.5 + 1 / 3 + 0.5) / 3)
    assert m.pixel_acc == pytest.approx(5 / 8)
    assert m.fw_iou == pytest.approx(3 / 8 * 0.5 + 2 / 8 / 3 + 3 / 8 * 0.5)
    with pytest.raises(ValueError, match="train ids"):
        cm.update(torch.tensor([0]), torch.tensor([7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def test_absent_classes_are_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m = cm.compute()
    assert np.isnan(m.iou[2]) and np.isnan(m.iou[3]) and m.miou == 1.0


def test_our_miou_equals_the_official_cityscapes_script(tiny_cityscapes, tmp_path):
    rng = np.random.default_rng(0)
    gts = sorted((tiny_cityscapes / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    ours = ConfusionMatrix(19)
    preds = []
    for gt in gts:
        label_ids = np.asarray(Image.open(gt))
        train = LABEL_TO_TRAIN[label_ids]
        noisy = np.where(train == 255, rng.integers(0, 19, train.shape), train)
        flip = rng.random(train.shape) < 0.3
        noisy = np.where(flip, rng.integers(0, 19, train.shape), noisy).astype(np.uint8)
        path = tmp_path / gt.name.replace("_gtFine_labelIds", "_pred_labelIds")
        Image.fromarray(train_to_label_ids(noisy)).save(path)
        preds.append(str(path))
        ours.update(torch.from_numpy(noisy.astype(np.int64)), torch.from_numpy(train.astype(np.int64)))
    official = official_scores(preds, [str(g) for g in gts])
    mine = ours.compute()
    for name, v in zip(CITYSCAPES.names, mine.iou):
        o = official["per_class"][name]
        assert (np.isnan(v) and np.isnan(o)) or v == pytest.approx(o, abs=1e-12), name
    assert mine.miou == pytest.approx(official["miou"], abs=1e-12)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("deeplabv3plus_shufflenetv2_os16", num_classes=19, hanet=[1, 1, 1, 1, 1],
                       hanet_set=[3, 16, 3]).eval()


def test_sliding_with_one_covering_crop_and_single_scale_equal_whole(small_model):
    x = torch.randn(1, 3, 64, 96)
    whole = predict_probs(small_model, x)
    one_crop = predict_probs(small_model, x, cfg=InferenceConfig(mode="sliding", crop_size=(64, 96)))
    torch.testing.assert_close(one_crop, whole)
    scales = predict_probs(small_model, x, cfg=InferenceConfig(scales=[1.0]))
    torch.testing.assert_close(scales, whole)


def test_flip_averages_the_mirrored_prediction(small_model):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a = torch.softmax(small_model(x).logits, 1)
        b = torch.softmax(small_model(x.flip(-1)).logits, 1).flip(-1)
    torch.testing.assert_close(predict_probs(small_model, x, cfg=InferenceConfig(flip=True)), (a + b) / 2)


def test_sliding_windows_get_their_own_row_positions(small_model):
    """A window's positions are the rows it covers, not a whole frame of its own."""
    x = torch.randn(1, 3, 96, 64)
    seen = []
    site = small_model.hanet0
    orig = site.attention_logits

    def spy(x_low, pos_h=None):
        seen.append(pos_h.clone())
        return orig(x_low, pos_h)

    site.attention_logits = spy
    try:
        predict_probs(small_model, x, cfg=InferenceConfig(mode="sliding", crop_size=(48, 64), overlap=0.0))
    finally:
        del site.attention_logits
    full = torch.arange(96) * 128 // 96
    assert torch.equal(seen[0][0], full[:48]) and torch.equal(seen[0][1], full[48:])


def test_multiscale_sliding_runs_and_is_a_distribution(small_model):
    x = torch.randn(1, 3, 64, 96)
    p = predict_probs(small_model, x, cfg=InferenceConfig(mode="sliding", crop_size=(48, 48), scales=[0.75, 1.25],
                                                          flip=True, crop_batch=2))
    assert p.shape == (1, 19, 64, 96)
    torch.testing.assert_close(p.sum(1), torch.ones(1, 64, 96))


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hanet", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_eval_submit_predict_cli(tiny_cityscapes, small_model, tmp_path):
    ckpt = tmp_path / "model.pt"
    save(small_model, ckpt)
    proc = _cli("eval", ckpt, f"data.root={tiny_cityscapes}", "--json", tmp_path / "r.json",
                "--save-predictions", tmp_path / "preds", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mIoU" in proc.stdout
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record) >= {"miou", "per_class", "pixel_acc"} and len(record["per_class"]) == 19
    files = sorted((tmp_path / "preds").iterdir())
    val_names = sorted(p.name.replace("_leftImg8bit.png", "") for p in (tiny_cityscapes / "leftImg8bit/val").rglob("*.png"))
    assert [f.name for f in files] == [f"{n}_pred_labelIds.png" for n in val_names]
    values = set(np.unique(np.asarray(Image.open(files[0]))).tolist())
    assert values <= {int(v) for v in np.flatnonzero(LABEL_TO_TRAIN != 255)}, "labelIds, not train ids"

    proc = _cli("submit", ckpt, f"data.root={tiny_cityscapes}", "--out", tmp_path / "sub", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sub/submission.zip").exists()
    assert len(list((tmp_path / "sub").rglob("*_pred_labelIds.png"))) == 2

    proc = _cli("predict", ckpt, tiny_cityscapes / "leftImg8bit/val", "--out", tmp_path / "pics", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for src in (tiny_cityscapes / "leftImg8bit/val").rglob("*.png"):
        for kind in ("input", "mask", "overlay", "attention_site0", "attention_site4", "attention_classes"):
            assert (tmp_path / "pics" / f"{src.stem}_{kind}.png").exists(), kind
    page = (tmp_path / "pics/index.html").read_text()
    assert page.count("<section>") == 2


def test_distributed_eval_equals_single_process(tiny_cityscapes, small_model, tmp_path):
    ckpt = tmp_path / "model.pt"
    save(small_model, ckpt)
    single = _cli("eval", ckpt, f"data.root={tiny_cityscapes}", "data.split=train", "--json", tmp_path / "one.json",
                  cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    import os

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "hanet", "eval", str(ckpt), f"data.root={tiny_cityscapes}", "data.split=train",
                           "--json", str(tmp_path / "two.json")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert two["miou"] == pytest.approx(one["miou"], abs=1e-12)
    assert two["pixel_acc"] == pytest.approx(one["pixel_acc"], abs=1e-12)


def test_cli_errors_are_clear(tiny_cityscapes, small_model, tmp_path):
    proc = _cli("eval", tmp_path / "missing.pt", cwd=tmp_path)
    assert proc.returncode == 1 and "checkpoint not found" in proc.stderr and "missing.pt" in proc.stderr
    ckpt = tmp_path / "model.pt"
    save(small_model, ckpt)
    proc = _cli("predict", ckpt, tmp_path / "no_images_here", "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 1 and "no_images_here" in proc.stderr
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = _cli("predict", ckpt, bad, "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 1 and "broken.png" in proc.stderr
    proc = _cli("eval", ckpt, "infer.mode=diagonal", cwd=tmp_path)
    assert proc.returncode == 1 and "inference mode" in proc.stderr


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


_PAGE_CHECK = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src))), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src"));
  const report = {images: imgs.length, broken: broken, errors: window.__errors,
                  sizes: imgs.map(i => [i.getAttribute("src"), i.naturalWidth, i.naturalHeight])};
  const out = document.createElement("pre");
  out.id = "page-check";
  out.textContent = "PAGECHECK" + JSON.stringify(report) + "ENDCHECK";
  document.body.appendChild(out);
});
</script>"""


def _browser(browser, tmp_path, *args):
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=180)


def test_index_page_renders_in_headless_chromium(tiny_cityscapes, small_model, tmp_path):
    """The predict page in a real browser: every picture it names loads (the figures of
    hanet.vis_attention: segmentation with ground truth and errors, height attention per
    site, attention by class), no script error, and the screenshot is not blank.  The
    screenshot stays next to the page (its path is printed; also copied to
    $HANET_ARTIFACTS when set)."""
    browser = _chromium()
    if browser is None:
        if os_env_requires_browser():
            pytest.fail("Chromium is required here (HANET_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it and requires this test")
    pytest.importorskip("matplotlib")
    import os
    import re

    from hanet.predict import predict_folder

    pics = tmp_path / "pics"
    index = predict_folder(small_model, [str(tiny_cityscapes / "leftImg8bit/val")], str(pics), CITYSCAPES,
                           progress=False)
    page = index.read_text()
    names = sorted(p.name.replace("_leftImg8bit.png", "") for p in (tiny_cityscapes / "leftImg8bit/val").rglob("*.png"))
    # the figures the page must show: per image (labels exist here) and over the whole set
    wanted = ["attention_by_class.png"] + [f"{n}_leftImg8bit_{k}.png" for n in names
                                           for k in ("segmentation", "height_attention")]
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(srcs) == sorted(wanted), srcs
    summary = json.loads((pics / "attention_by_class.json").read_text())
    assert summary["images"] == len(names) and summary["class_source"] == "ground truth"
    assert set(summary["sites"]) == {"0", "1", "2", "3", "4"}
    assert len(summary["per_image"]) == len(names)

    # a copy of the page with a checker that runs first: broken images and script errors
    check = pics / "check.html"
    check.write_text(page.replace("<head>", "<head>" + _PAGE_CHECK, 1))
    proc = _browser(browser, tmp_path, "--virtual-time-budget=10000", "--dump-dom", check.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="page-check">PAGECHECK(.*?)ENDCHECK</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert report["images"] == len(wanted)
    assert report["broken"] == [] and report["errors"] == [], report
    assert all(w > 300 and h > 200 for _, w, h in report["sizes"]), report["sizes"]
    assert "ERR_FILE_NOT_FOUND" not in proc.stderr
    assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]

    shot = pics / "screenshot.png"
    proc = _browser(browser, tmp_path, f"--screenshot={shot}", "--window-size=1400,1800", "--hide-scrollbars",
                    index.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR_FILE_NOT_FOUND" not in proc.stderr
    assert shot.exists() and shot.stat().st_size > 10_000
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.std() > 10  # not a blank page
    # the figures are drawn, not empty: the summary figure holds coloured lines
    fig = np.asarray(Image.open(pics / "attention_by_class.png").convert("RGB")).astype(int)
    assert (np.ptp(fig, axis=-1) > 60).mean() > 0.002
    print(f"\npredict page screenshot: {shot}")
    if os.environ.get("HANET_ARTIFACTS"):
        dest = Path(os.environ["HANET_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / "predict_page.png")
        print(f"copied to {dest / 'predict_page.png'}")


def os_env_requires_browser() -> bool:
    import os

    return os.environ.get("HANET_REQUIRE_BROWSER") == "1"
