"""The original train.py's flags under our keys: optimizer groups and learning rates,
ImageBasedCrossEntropyLoss2d, HANet's hanet_pos / kernel options, the config checks,
the flag table and translator, and our recipe configs against the official scripts.
Expected values are literals worked out from the original's code (see the comments)."""
from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hanet.models import build_model
from hanet.models.hanet_module import HANet
from hanet.models.registry import parse_arch
from hanet.training.config import Config, ConfigError, apply_overrides, load_config
from hanet.training.losses import CITYSCAPES_CLASS_WEIGHTS, SegLoss, image_class_weights, image_weighted_ce
from hanet.training.optim import build_optimizer, build_scheduler
from hanet.training.original_flags import FLAGS, Key, OriginalFlagError, translate_args

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hanet_model():
    return build_model("deeplabv3plus_mbv2_os16", hanet=[1, 1, 1, 1, 0], hanet_set=[3, 16, 3])


def _lrs(overrides, model, iterations):
    cfg = load_config(None, ["train.max_iter=100", "train.lr=0.01", "train.poly_exp=0.9"] + overrides)
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train.max_iter)
    seen = {}
    for it in range(max(iterations) + 1):
        if it in iterations:
            seen[it] = {g["name"]: g["lr"] for g in opt.param_groups}
        opt.step()
        sched.step()
    return opt, seen


# ---- optimizer ----------------------------------------------------------------------------------

def test_hanet_lr_0_puts_hanet_in_the_main_group_not_frozen(hanet_model):
    # optimizer.py: hanet_lr == 0 -> get_optimizer(): one SGD over net.parameters(), lr, wd 5e-4.
    opt, lrs = _lrs(["train.hanet_lr=0", "train.hanet_poly_exp=0.3", "train.hanet_weight_decay=0.1"],
                    hanet_model, [0, 50, 99])
    assert [g["name"] for g in opt.param_groups] == ["main"]
    (main,) = opt.param_groups
    n_trainable = sum(1 for p in hanet_model.parameters() if p.requires_grad)
    assert len(main["params"]) == n_trainable and main["weight_decay"] == 0.0005
    hanet_ids = {id(p) for s in hanet_model.hanet_sites() for p in s.parameters() if p.requires_grad}
    assert hanet_ids <= {id(p) for p in main["params"]}
    # 0.01 * (1 - it/100) ** 0.9: hanet_poly_exp is not used
    assert lrs[0]["main"] == pytest.approx(0.01, rel=1e-12)
    assert lrs[50]["main"] == pytest.approx(0.005358867312681466, rel=1e-12)
    assert lrs[99]["main"] == pytest.approx(0.00015848931924611134, rel=1e-12)


def test_hanet_poly_exp_0_means_the_main_power_not_constant(hanet_model):
    # get_optimizer_attention: hanet_poly_exp > 0 ? hanet_poly_exp : poly_exp
    opt, lrs = _lrs(["train.hanet_lr=0.02", "train.hanet_poly_exp=0"], hanet_model, [0, 50, 99])
    assert [g["name"] for g in opt.param_groups] == ["main", "hanet"]
    assert opt.param_groups[1]["weight_decay"] == 0.0001  # --hanet_wd's default
    assert lrs[50]["hanet"] == pytest.approx(0.010717734625362932, rel=1e-12)  # 0.02 * 0.5 ** 0.9
    assert lrs[99]["hanet"] == pytest.approx(0.0003169786384922227, rel=1e-12)  # 0.02 * 0.01 ** 0.9
    _, lrs = _lrs(["train.hanet_lr=0.02", "train.hanet_poly_exp=0.5"], hanet_model, [50])
    assert lrs[50]["hanet"] == pytest.approx(0.014142135623730952, rel=1e-12)  # 0.02 * 0.5 ** 0.5


def test_backbone_lr_groups_layer0_and_layer1(hanet_model):
    opt, lrs = _lrs(["train.hanet_lr=0.02", "train.backbone_lr=0.001"], hanet_model, [0, 50])
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["main", "backbone", "hanet"]
    stem = [p for n, p in hanet_model.named_parameters() if n.split(".")[0] in ("layer0", "layer1")]
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in stem}
    assert groups["backbone"]["weight_decay"] == 0.0005
    assert lrs[0] == pytest.approx({"main": 0.01, "backbone": 0.001, "hanet": 0.02}, rel=1e-12)
    assert lrs[50]["backbone"] == pytest.approx(0.0005358867312681466, rel=1e-12)  # same poly power as main
    _, lrs = _lrs(["train.backbone_lr=0"], hanet_model, [0])
    assert "backbone" not in lrs[0]


class _Named(nn.Module):
    """Names chosen to show the original's substring rule ('layer1' in 'layer10.weight')."""

    def __init__(self):
        super().__init__()
        self.layer10 = nn.Linear(2, 2)
        self.hanet0 = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)

    def hanet_sites(self):
        return [self.hanet0]


def test_backbone_names_are_matched_as_substrings():
    cfg = load_config(None, ["train.backbone_lr=0.001", "train.hanet_lr=0.02"])
    model = _Named()
    groups = {g["name"]: g["params"] for g in build_optimizer(model, cfg.train).param_groups}
    assert [id(p) for p in groups["backbone"]] == [id(model.layer10.weight), id(model.layer10.bias)]
    assert [id(p) for p in groups["hanet"]] == [id(model.hanet0.weight), id(model.hanet0.bias)]
    assert [id(p) for p in groups["main"]] == [id(model.head.weight), id(model.head.bias)]


# ---- ImageBasedCrossEntropyLoss2d -----------------------------------------------------------------

def test_image_class_weights_literal():
    # np.histogram(range(C+1), normed=True) over labels in [0, C]; w = 1 + ub * (1 - f) when f != 0.
    t = torch.tensor([[0, 0, 1], [1, 1, 255]])
    assert image_class_weights(t, 3).tolist() == pytest.approx([1.6, 1.4, 1.0], abs=1e-7)  # f = 2/5, 3/5, 0
    assert image_class_weights(t, 3, upper_bound=2.0).tolist() == pytest.approx([2.2, 1.8, 1.0], abs=1e-7)
    # The last bin is closed: a label equal to C counts as class C - 1.
    assert image_class_weights(torch.tensor([[3, 0], [255, 255]]), 3).tolist() == pytest.approx([1.5, 1.0, 1.5])
    assert image_class_weights(torch.full((2, 2), 255), 3) is None
    assert image_class_weights(t, 3).dtype == torch.float32


def test_image_weighted_loss_sums_images_with_their_own_weights():
    # One image 1x3, labels [0, 0, 1], C = 2; logits give -log p = log 2, log 2, log(4/3).
    logits = torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 0.0, math.log(3.0)]]])  # (C, 1, 3)
    labels = torch.tensor([[0, 0, 1]])
    per_image = (8 * math.log(2) + 5 * math.log(4 / 3)) / 13  # weights 4/3 (class 0), 5/3 (class 1)
    batch_logits = torch.stack([logits, logits, logits])
    batch_labels = torch.stack([labels, torch.full_like(labels, 255), labels])
    loss = image_weighted_ce(batch_logits, batch_labels, 2)
    assert loss.item() == pytest.approx(2 * per_image, rel=1e-6)  # summed; the all-ignored image adds 0
    other = torch.tensor([[0, 0, 0]])
    both = image_weighted_ce(torch.stack([logits, logits]), torch.stack([labels, other]), 2, batch_weighting=True)
    # batch: f0 = 5/6, f1 = 1/6 -> w0 = 7/6, w1 = 11/6; the second image (all class 0: -log p = log 2,
    # log 2, log 4) has one class, so its weighted mean is the plain mean 4/3 log 2.
    first = (2 * 7 / 6 * math.log(2) + 11 / 6 * math.log(4 / 3)) / (2 * 7 / 6 + 11 / 6)
    assert both.item() == pytest.approx(first + 4 / 3 * math.log(2), rel=1e-6)
    alone = image_weighted_ce(torch.stack([logits, logits]), torch.stack([labels, other]), 2)
    assert alone.item() == pytest.approx(per_image + 4 / 3 * math.log(2), rel=1e-6)


def test_img_wt_loss_leaves_class_weights_to_the_aux_loss():
    torch.manual_seed(0)
    labels = torch.randint(0, 19, (2, 8, 8))
    logits = torch.zeros(2, 19, 8, 8)  # uniform: every weighted mean NLL is log 19
    aux = torch.zeros(2, 19, 4, 4)
    aux[:, 0] = 2.0  # class 0 favoured: the class weights change the aux mean
    loss = SegLoss(19, class_weighted=True, img_wt_loss=True)
    total, main, aux_loss = loss(logits, labels, aux)
    assert main.item() == pytest.approx(2 * math.log(19), rel=1e-6)  # two images, summed
    aux_labels = labels[:, ::2, ::2]  # nearest 8 -> 4
    w = torch.tensor(CITYSCAPES_CLASS_WEIGHTS)[aux_labels]
    nll = torch.where(aux_labels == 0, math.log(18 + math.exp(2)) - 2, math.log(18 + math.exp(2)))
    assert aux_loss.item() == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-6)
    assert total.item() == pytest.approx(main.item() + 0.4 * aux_loss.item(), rel=1e-6)


# ---- HANet options ---------------------------------------------------------------------------------

def test_hanet_pos_injection_0_adds_no_positional_term():
    torch.manual_seed(0)
    site = HANet(16, 8, r_factor=4, pos_injection=0, pos_encoding="learned").eval()
    assert not any("pos_emb1d" in k for k in site.state_dict())
    x, y = torch.randn(2, 16, 32, 8), torch.randn(2, 8, 32, 8)
    a = site(x, y, torch.zeros(2, 32, dtype=torch.long))
    b = site(x, y, torch.full((2, 32), 120, dtype=torch.long))
    assert torch.equal(a, b)
    with_pos = HANet(16, 8, r_factor=4, pos_injection=2, pos_encoding="sinusoid").eval()
    assert not torch.equal(with_pos(x, y, torch.zeros(2, 32, dtype=torch.long)),
                           with_pos(x, y, torch.full((2, 32), 120, dtype=torch.long)))
    model = build_model("deeplabv3plus_mbv2_os16", hanet=[0, 0, 0, 1, 0], hanet_set=[3, 16, 3], hanet_pos=[0, 1])
    assert not any("pos_emb1d" in k for k in model.state_dict())


@pytest.mark.parametrize("kernel,rows", [(1, 16), (2, 17), (4, 17), (5, 16)])
def test_any_kernel_size_as_the_original(kernel, rows):
    # Conv1d(padding=k // 2): an even kernel gives L + 1 outputs, interpolated to H like any length.
    torch.manual_seed(0)
    site = HANet(16, 8, kernel_size=kernel, r_factor=4, pos_rfactor=8).eval()
    x, y = torch.randn(1, 16, 40, 6), torch.randn(1, 8, 40, 6)
    logits = site.attention_logits(x)
    assert logits.shape == (1, 8, rows)
    out, att = site(x, y, return_attention=True)
    expected = F.interpolate(torch.sigmoid(logits), size=40, mode="linear", align_corners=False)
    torch.testing.assert_close(att, expected)
    torch.testing.assert_close(out, y * expected.unsqueeze(-1))
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        HANet(16, 8, kernel_size=0)


# ---- config keys and checks --------------------------------------------------------------------------

@pytest.mark.parametrize("override,pattern", [
    ("data.color_aug=0.6", r"--color_aug\) must be in \[0, 0.5\]"),
    ("train.hanet_lr=-0.01", "train.hanet_lr must be >= 0"),
    ("train.hanet_poly_exp=-1", "train.hanet_poly_exp must be >= 0"),
    ("train.backbone_lr=-1", "train.backbone_lr must be >= 0"),
    ("data.rrotate=-5", "data.rrotate"),
    ("data.pre_size=0", "data.pre_size"),
    ("train.batch_weighting=true", "only change train.img_wt_loss"),
    ("train.wt_bound=2", "only change train.img_wt_loss"),
])
def test_bad_values_are_rejected_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_no_pos_dataset_combinations():
    with pytest.raises(ConfigError, match="model.aux_loss=false"):
        load_config(None, ["data.no_pos_dataset=true", "model.aux_loss=true"])
    with pytest.raises(ConfigError, match=r"model.hanet_pos=\[0, 1\]"):
        load_config(None, ["data.no_pos_dataset=true", "model.aux_loss=false"])
    cfg = load_config(None, ["data.no_pos_dataset=true", "model.aux_loss=false", "model.hanet_pos=[0,1]"])
    assert cfg.data.no_pos_dataset and cfg.model.hanet_pos == [0, 1]
    load_config(None, ["data.no_pos_dataset=true", "model.aux_loss=false", "model.hanet=[0,0,0,0,0]"])


@pytest.mark.parametrize("key,pattern", [
    ("train.jointwtborder=true", r"--jointwtborder is not supported: the boundary label relaxation"),
    ("train.hanet_wd=0.001", r"--hanet_wd is train.hanet_weight_decay here"),
    ("train.crop_nopad=true", r"--crop_nopad is data.crop_nopad here"),
    ("train.adam=true", r"--adam has no effect on training"),
    ("train.snapshot_pe=x.pth", r"--snapshot_pe is not supported"),
])
def test_original_flag_names_as_keys_are_explained(key, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [key])


# ---- the flag table and the translator -------------------------------------------------------------

def test_translate_an_official_command_line():
    argv = shlex.split("--dataset cityscapes --arch network.deepv3.DeepR101V3PlusD_HANet_OS8 --city_mode 'trainval' "
                       "--lr_schedule poly --lr 0.01 --hanet_lr 0.01 --hanet_poly_exp 0 --max_cu_epoch 10000 --syncbn "
                       "--sgd --rrotate 0 --gblur --hanet 1 1 1 1 0 --hanet_pos 2 1 0 --coarse_boost_classes 14,15,3 "
                       "--weight_decay 0.001 --hanet_wd 0.0002 -wb 2.0 --img_wt_loss --exp x --local_rank=0")
    overrides, notes = translate_args(argv)
    assert overrides == [
        "data.dataset=cityscapes", "model.arch=network.deepv3.DeepR101V3PlusD_HANet_OS8", "data.train_split=trainval",
        "train.lr=0.01", "train.hanet_lr=0.01", "train.hanet_poly_exp=0", "train.syncbn=true", "data.rrotate=0",
        "data.gblur=true", "model.hanet=[1,1,1,1,0]", "model.hanet_pos=[2,1]", "data.coarse_boost_classes=[14,15,3]",
        "train.weight_decay=0.0005", "train.hanet_weight_decay=0.0002", "train.wt_bound=2.0", "train.img_wt_loss=true"]
    text = "\n".join(notes)
    assert "--sgd: no effect" in text and "--exp: no effect" in text and "always uses 5e-4" in text
    assert "--local_rank: no effect" in text
    assert "--max_cu_epoch 10000: the original's default" in text and "first two values" in text
    cfg = apply_overrides(Config(), overrides)
    assert cfg.train.weight_decay == 0.0005 and cfg.model.hanet_pos == [2, 1]


@pytest.mark.parametrize("argv,pattern", [
    (["--jointwtborder"], "--jointwtborder is not supported"),
    (["--lr_schedule", "scl-poly"], "--lr_schedule is not supported"),
    (["--max_cu_epoch", "5"], "--max_cu_epoch is not supported"),
    (["--attention_loss", "0.5"], "--attention_loss is not supported"),
    (["--restore_optimizer"], "train.resume=true"),
    (["--hanet_lrr", "0.1"], "--hanet_lrr is not a flag of the original"),
    (["--lr"], "--lr takes one value"),
    (["0.1"], "expected a flag"),
])
def test_translate_rejects_what_we_do_not_reproduce(argv, pattern):
    with pytest.raises(OriginalFlagError, match=pattern):
        translate_args(argv)


# ---- recipe configs against the official scripts --------------------------------------------------

_COMMON = ("--dataset cityscapes --city_mode train --lr_schedule poly --lr 0.01 --poly_exp 0.9 --hanet_lr 0.01 "
           "--hanet_poly_exp 0.9 --max_cu_epoch 10000 --class_uniform_pct 0.5 --class_uniform_tile 1024 --syncbn "
           "--sgd --scale_min 0.5 --scale_max 2.0 --rrotate 0 --color_aug 0.25 --gblur --hanet 1 1 1 1 0 "
           "--hanet_pos 2 1 --pos_rfactor 8 --dropout 0.1 --aux_loss")
# scripts/train_*.sh of the original, minus launcher and output-name flags.
SCRIPTS = {
    "m_os16_hanet": _COMMON + " --arch network.deepv3.DeepMobileNetV3PlusD_HANet --crop_size 768 --max_iter 40000 "
                              "--bs_mult 8 --hanet_set 3 16 3 --pos_noise 0.3",
    "r101_os16_hanet": _COMMON + " --arch network.deepv3.DeepR101V3PlusD_HANet --crop_size 768 --max_iter 40000 "
                                 "--bs_mult 4 --hanet_set 3 32 3 --pos_noise 0.5",
    "r101_os8_hanet": _COMMON + " --arch network.deepv3.DeepR101V3PlusD_HANet_OS8 --crop_size 768 --max_iter 40000 "
                                "--bs_mult 4 --hanet_set 3 64 3 --pos_noise 0.5",
    "r101_os8_hanet_best": _COMMON + " --arch network.deepv3.DeepR101V3PlusD_HANet_OS8 --city_mode trainval "
                                     "--crop_size 864 --max_iter 90000 --bs_mult 3 --hanet_set 3 64 3 --pos_noise 0.5 "
                                     "--cls_wt_loss",
    "resnext_finetune": _COMMON + " --arch network.deepv3.DeepResNext101V3PlusD_HANet_OS8 --city_mode trainval "
                                  "--snapshot pretrained/resnext_mapillary_0.47475.pth "
                                  "--coarse_boost_classes 14,15,16,3,12,17,4 --crop_size 864 --max_iter 90000 "
                                  "--bs_mult 2 --hanet_set 3 64 3 --pos_noise 0.5 --cls_wt_loss",
    "resnext_pretrain": "--dataset mapillary --arch network.deepv3.DeepResNext101V3PlusD_HANet_OS8 --city_mode train "
                        "--lr_schedule poly --lr 0.01 --poly_exp 0.9 --hanet_lr 0.01 --hanet_poly_exp 0.9 "
                        "--max_cu_epoch 10000 --class_uniform_pct 0.5 --class_uniform_tile 1024 --syncbn --sgd "
                        "--crop_size 864 --scale_min 0.5 --scale_max 2.0 --rrotate 0 --color_aug 0.25 --gblur "
                        "--max_iter 200000 --bs_mult 2 --hanet 0 0 0 0 0 --hanet_set 3 64 3 --hanet_pos 2 1 "
                        "--no_pos_dataset --dropout 0.1 --pos_noise 0.5 --img_wt_loss",
}
SCRIPTS["resnext_fr_pretrain"] = SCRIPTS["resnext_finetune"]  # the same script, under its own name
# The original parser's defaults of the training flags the scripts leave out.
DEFAULTS = "--cv 0 --bs_mult_val 1 --momentum 0.9 --hanet_wd 0.0001 --backbone_lr 0 --pooling mean --weight_decay 0"
STORE_TRUE = [name for name, spec in FLAGS.items() if isinstance(spec, Key) and spec.nargs == "0"]


def _expected(argv: list[str]) -> dict:
    overrides, _ = translate_args(argv)
    present = {a.lstrip("-") for a in argv if a.startswith("-")}
    overrides += [f"{FLAGS[n].key}=false" for n in STORE_TRUE if n not in present]
    overrides.append("data.pre_size=null")
    out = {}
    for text in overrides:
        key, value = text.split("=", 1)
        out[key] = value
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("baseline", [False, True])
def test_recipe_configs_match_the_official_scripts(name, baseline):
    path = REPO / "train/configs" / f"{name}{'_baseline' if baseline else ''}.yaml"
    if not path.exists():
        assert baseline, path
        pytest.skip("no baseline config for this recipe")
    argv = shlex.split(DEFAULTS + " " + SCRIPTS[name] + (" --hanet 0 0 0 0 0" if baseline else ""))
    cfg = load_config(path)
    expected = apply_overrides(Config(), [f"{k}={v}" for k, v in _expected(argv).items()])
    for key in _expected(argv):
        section, field = key.split(".")
        ours, theirs = getattr(getattr(cfg, section), field), getattr(getattr(expected, section), field)
        if key == "model.arch":
            ours, theirs = parse_arch(ours), parse_arch(theirs)
        assert ours == theirs, f"{path.name}: {key} is {ours!r}, the official script gives {theirs!r}"
