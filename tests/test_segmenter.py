"""hanet.Segmenter against the model called by hand (normalisation written out with
literal ImageNet constants), its input types, batching, attention from the same
forward pass, bad input, the overlay, `hanet predict`'s one forward per image, and
the README's Segmenter example run as it is written."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hanet
from hanet.models import build_model, save

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
README = Path(__file__).resolve().parents[1] / "README.md"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("deeplabv3plus_shufflenetv2_os16", num_classes=19, hanet=[1, 1, 1, 1, 1],
                       hanet_set=[3, 16, 3]).eval()


def _image(h=64, w=128, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _by_hand(model, rgb: np.ndarray):
    """Softmax probabilities and attentions of the model called directly on the image
    normalised with the literal constants."""
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - MEAN) / STD
    with torch.no_grad():
        logits, _, attention = model(x[None], return_attention=True)
    return torch.softmax(logits, 1)[0], [a[0] for a in attention]


class Forwards:
    """Counts the model's forward calls and records each input's shape."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.register_forward_hook(lambda m, args, kwargs, out: self.shapes.append(tuple(args[0].shape)),
                                                  with_kwargs=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_normalisation_equals_the_literal_imagenet_formula_and_the_datasets():
    from hanet.data import eval_transforms

    seg = hanet.Segmenter(build_model("deeplabv3plus_shufflenetv2_os16", hanet=[0, 0, 0, 0, 0]))
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 128)
    x = seg.normalize(rgb)
    want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert x.dtype == torch.float32 and x.shape == (3, 2, 3)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), want, rtol=1e-6)
    # bit for bit what the datasets give the model (ImageFolder + eval_transforms)
    assert torch.equal(seg.normalize(Image.fromarray(_image())), eval_transforms()({"image": Image.fromarray(_image())})["image"])


def test_labels_probs_and_attention_equal_the_model_called_by_hand(model):
    rgb = _image()
    probs, attention = _by_hand(model, rgb)
    with Forwards(model) as fw:
        r = hanet.Segmenter(model)(rgb, return_probs=True)
    assert fw.shapes == [(1, 3, 64, 128)], "one forward pass gives labels, probabilities and attention"
    assert r.labels.shape == (64, 128) and r.labels.dtype == np.int64
    assert r.probs.shape == (19, 64, 128)
    np.testing.assert_allclose(r.probs, probs.numpy(), atol=1e-6)
    assert np.array_equal(r.labels, probs.argmax(0).numpy())
    assert sorted(r.attention) == [0, 1, 2, 3, 4]
    for site, want in zip(range(5), attention):
        np.testing.assert_allclose(r.attention[site], want.numpy(), atol=1e-6)
    assert r.attention[4].shape == (19, 8)  # site 4: the 19 class maps at the decoder's 64 / 8 rows
    assert hanet.Segmenter(model)(rgb).probs is None, "probabilities only on request"


def test_every_input_type_gives_the_same_labels(model, tmp_path):
    rgb = _image(seed=1)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    seg = hanet.Segmenter(model)
    want = seg(rgb).labels
    inputs = [str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1),
              torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for got in seg(inputs):
        assert np.array_equal(got.labels, want)
        assert np.array_equal(got.image, rgb)
    batch = torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2)
    out = seg(batch)
    assert isinstance(out, list) and len(out) == 2 and all(np.array_equal(o.labels, want) for o in out)


def test_same_size_images_go_through_in_batches(model):
    images = [_image(seed=0), _image(seed=1), _image(48, 96, seed=2), _image(seed=3), _image(seed=4)]
    seg = hanet.Segmenter(model, batch_size=2)
    with Forwards(model) as fw:
        results = seg(images, return_probs=True)
    assert sorted(fw.shapes) == sorted([(2, 3, 64, 128), (2, 3, 64, 128), (1, 3, 48, 96)])
    for img, r in zip(images, results):
        probs, attention = _by_hand(model, img)
        assert r.labels.shape == img.shape[:2]
        np.testing.assert_allclose(r.probs, probs.numpy(), atol=1e-5)
        np.testing.assert_allclose(r.attention[0], attention[0].numpy(), atol=1e-5)


def test_flip_attention_comes_from_the_unmirrored_pass(model):
    rgb = _image(seed=5)
    probs, attention = _by_hand(model, rgb)
    flipped, _ = _by_hand(model, rgb[:, ::-1].copy())
    with Forwards(model) as fw:
        r = hanet.Segmenter(model, flip=True)(rgb, return_probs=True)
    assert len(fw.shapes) == 2, "the two passes of flip inference, no third one for the attention"
    np.testing.assert_allclose(r.probs, ((probs + flipped.flip(-1)) / 2).numpy(), atol=1e-6)
    np.testing.assert_allclose(r.attention[2], attention[2].numpy(), atol=1e-6)
    assert hanet.Segmenter(model, mode="sliding", crop_size=(48, 48))(rgb).attention is None  # no whole-image pass


def test_original_protocol_on_the_image_as_read(model):
    # the original's whole-image pass at scale 1.0: torchvision ToTensor + Normalize, frame positions,
    # logits resized (identity here), softmax
    rgb = _image(seed=6)
    probs, attention = _by_hand(model, rgb)
    with Forwards(model) as fw:
        r = hanet.Segmenter(model, protocol="original")(Image.fromarray(rgb), return_probs=True)
    assert len(fw.shapes) == 1
    np.testing.assert_allclose(r.probs, probs.numpy(), atol=1e-6)
    assert np.array_equal(r.labels, probs.argmax(0).numpy())
    np.testing.assert_allclose(r.attention[4], attention[4].numpy(), atol=1e-6)


def test_bf16_autocast_mostly_agrees_with_float32(model):
    rgb = _image(seed=11)
    probs, _ = _by_hand(model, rgb)
    r = hanet.Segmenter(model, amp="bf16")(rgb, return_probs=True)
    assert r.probs.dtype == np.float32 and np.isfinite(r.probs).all()
    assert (r.labels == probs.argmax(0).numpy()).mean() > 0.9
    assert np.abs(r.probs - probs.numpy()).max() < 0.1


def test_overlay_blends_the_palette_colours(model):
    rgb = _image(seed=7)
    r = hanet.Segmenter(model)(rgb)
    palette = np.asarray(r.palette, np.uint8)
    assert r.palette[0] == (128, 64, 128)  # Cityscapes road
    assert np.array_equal(np.asarray(r.overlay(alpha=1.0)), palette[r.labels])
    assert np.array_equal(np.asarray(r.overlay(alpha=0.0)), rgb)
    half = np.asarray(r.overlay(alpha=0.5)).astype(int)
    assert np.abs(half - (rgb.astype(int) + palette[r.labels].astype(int)) / 2).max() <= 0.5
    assert np.array_equal(np.asarray(r.mask()), palette[r.labels])
    with pytest.raises(ValueError, match="alpha"):
        r.overlay(alpha=2)


def test_bad_input_is_named(model, tmp_path):
    seg = hanet.Segmenter(model)
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        seg(tmp_path / "nothere.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="broken.png"):
        seg(str(tmp_path / "broken.png"))
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*\(64, 128\)"):
        seg(np.zeros((64, 128), np.uint8))
    with pytest.raises(TypeError, match="uint8.*float64"):
        seg(np.zeros((64, 128, 3)))
    with pytest.raises(ValueError, match=r"\(3, H, W\).*\(4, 64, 128\)"):
        seg(torch.zeros(4, 64, 128))
    with pytest.raises(ValueError, match=r"un-normalised RGB in \[0, 1\]"):
        seg(seg.normalize(_image()))
    with pytest.raises(TypeError, match="cannot segment a int"):
        seg(3)
    with pytest.raises(TypeError, match="unknown inference setting.*scale"):
        hanet.Segmenter(model, scale=2)
    with pytest.raises(ValueError, match="protocol"):
        hanet.Segmenter(model, protocol="paper")


def test_from_checkpoint(model, tmp_path):
    save(model, tmp_path / "m.pt")
    seg = hanet.Segmenter.from_checkpoint(tmp_path / "m.pt", device="cpu")
    rgb = _image(seed=8)
    probs, _ = _by_hand(model, rgb)
    assert np.array_equal(seg(rgb).labels, probs.argmax(0).numpy())
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        hanet.Segmenter.from_checkpoint(tmp_path / "missing.pt")


def test_from_checkpoint_reads_an_official_file(model, tmp_path):
    # the original's layout: module.-prefixed weights, the architecture in its training command
    c = model.config
    command = ("train.py --dataset cityscapes --arch network.deepv3.DeepShuffleNetV3PlusD_HANet --hanet 1 1 1 1 1 "
               f"--hanet_set 3 16 3 --hanet_pos {c.hanet_pos[0]} {c.hanet_pos[1]} --pos_rfactor {c.pos_rfactor} "
               "--local_rank=0")
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "command": command},
               tmp_path / "official.pth")
    seg = hanet.Segmenter.from_checkpoint(tmp_path / "official.pth", device="cpu", protocol="original")
    rgb = _image(seed=12)
    probs, attention = _by_hand(model, rgb)
    r = seg(Image.fromarray(rgb), return_probs=True)
    np.testing.assert_allclose(r.probs, probs.numpy(), atol=1e-6)
    np.testing.assert_allclose(r.attention[1], attention[1].numpy(), atol=1e-6)


def test_predict_runs_the_model_once_per_image(model, tmp_path, monkeypatch):
    from hanet.data import CITYSCAPES
    from hanet.predict import predict_folder

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_image(seed=10 + i)).save(folder / f"img{i}.png")
    with Forwards(model) as fw:
        index = predict_folder(model, [str(folder)], str(tmp_path / "pics"), CITYSCAPES, progress=False)
    assert fw.shapes == [(1, 3, 64, 128)] * 2
    for i in range(2):
        for kind in ("input", "mask", "overlay", "attention_site0", "attention_site4", "attention_classes"):
            assert (tmp_path / "pics" / f"img{i}_{kind}.png").exists(), kind
    # the mask drawn is the prediction of the model called by hand
    probs, _ = _by_hand(model, _image(seed=10))
    mask = np.asarray(Image.open(tmp_path / "pics/img0_mask.png"))
    assert np.array_equal(mask, np.asarray(CITYSCAPES.palette, np.uint8)[probs.argmax(0).numpy()])
    assert index.read_text().count("<section>") == 2
    # the original eval.py protocol (which predict_probs refuses) goes through the same path, once per image
    # (here without the matplotlib figures, which take most of this test's time)
    import sys

    from hanet.inference import InferenceConfig

    monkeypatch.setitem(sys.modules, "hanet.vis_attention", None)
    with Forwards(model) as fw, pytest.warns(UserWarning):  # predict says the figures are left out
        predict_folder(model, [str(folder / "img0.png")], str(tmp_path / "orig"), CITYSCAPES,
                       InferenceConfig(protocol="original"), progress=False)
    assert fw.shapes == [(1, 3, 64, 128)]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "orig/img0_mask.png")), mask)


def _readme_example() -> str:
    text = README.read_text()
    section = text.split("\n## Segmenter\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "README: no python block in the Segmenter section"
    return blocks[0]


def test_readme_segmenter_example_runs_as_written(model, tmp_path, monkeypatch, capsys):
    code = _readme_example()
    assert len(code.strip().splitlines()) == 5
    ckpt = tmp_path / "runs/demo_hanet/checkpoints/best.pt"
    ckpt.parent.mkdir(parents=True)
    save(model, ckpt)
    rgb = _image(seed=9)
    Image.fromarray(rgb).save(tmp_path / "street.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "(64, 128) (19, 64, 128) [0, 1, 2, 3, 4]" in out
    probs, _ = _by_hand(model, rgb)
    overlay = np.asarray(Image.open(tmp_path / "street_overlay.png"))
    palette = np.asarray(hanet.Segmenter(model).classes.palette, np.uint8)
    want = ((rgb.astype(np.float32) + palette[probs.argmax(0).numpy()]) * 0.5).round()
    assert np.abs(overlay - want).max() <= 1
