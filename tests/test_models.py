"""DeepLabV3+ (HANet): every arch of the original builds and trains a step on CPU;
forward contract; attention maps; fused ops equal reference ops; parameter count."""
from __future__ import annotations

import pytest
import torch

from hanet.models import ORIGINAL_ARCHS, HANet, SegmentationOutput, build_model, logits_of, our_archs, parse_arch
from hanet.models.backbones import TRUNK_CHANNELS, TRUNKS, build_trunk
from hanet.models.deeplab import ASPP, AtrousConv2d

SMALL = dict(hanet=[1, 1, 1, 1, 1], hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8, aux_loss=True)


@pytest.mark.parametrize("arch", sorted(ORIGINAL_ARCHS))
def test_every_original_arch_runs_forward_and_backward(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, **SMALL, dropout=0.1, pos_noise=0.5)
    model.train()
    # MNASNet's dilated 5x5 convs keep padding d (as the original), which trims the
    # map: it needs a larger input.
    size = 128 if "MNAS" in arch else 64 if arch.endswith("OS32") else 32
    images = torch.randn(1, 3, size, size)
    logits, aux, _ = model(images)
    assert logits.shape == (1, 5, size, size)
    assert aux.shape[:2] == (1, 5)
    (logits.mean() + aux.mean()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad and name.startswith(("hanet", "final", "aspp")):
            assert p.grad is not None, f"{arch}: no gradient for {name}"


def test_arch_names():
    assert parse_arch("network.deepv3.DeepR101V3PlusD_HANet_OS8") == ("resnet-101", 8)
    assert parse_arch("DeepR50V3PlusD_HANet") == ("resnet-50", 16)
    assert parse_arch("deeplabv3plus_r101_os8") == ("resnet-101", 8)
    assert parse_arch("deeplabv3plus_mbv2_os32") == ("mobilenetv2", 32)
    assert len(our_archs()) == 7 * 4 + 4 * 3
    with pytest.raises(ValueError, match="unknown arch 'DeepR18'"):
        parse_arch("DeepR18")
    with pytest.raises(ValueError, match="unknown arch"):
        parse_arch("deeplabv3plus_mbv2_os4")  # mobile trunks have no OS4 in the original


@pytest.mark.parametrize("trunk", TRUNKS)
def test_trunk_channels_and_strides(trunk):
    """The widths the model is built with are what the trunk really outputs, and the
    output stride is what the dilation pattern gives."""
    for os_ in (8, 16):
        stages, ch = build_trunk(trunk, os_)
        size = 128 if trunk.startswith("mnas") else 64
        x = torch.randn(1, 3, size, size)
        outs = []
        with torch.no_grad():
            for s in stages.eval():
                x = s(x)
                outs.append(x)
        assert (outs[1].shape[1], outs[3].shape[1], outs[4].shape[1]) == (
            ch.low_level, ch.prev_final, ch.final) == tuple(vars(TRUNK_CHANNELS[trunk]).values())
        if trunk.startswith(("resnet", "resnext", "wide")):
            assert outs[4].shape[-1] == size // os_
            assert outs[1].shape[-1] == size // 4


def test_resnet_dilation_pattern_is_the_originals():
    stages, _ = build_trunk("resnet-101", 8)
    for name, m in stages[3].named_modules():
        if name.endswith("conv2"):
            assert (m.dilation, m.padding, m.stride) == ((2, 2), (2, 2), (1, 1))
    for name, m in stages[4].named_modules():
        if name.endswith("conv2"):
            assert (m.dilation, m.padding, m.stride) == ((4, 4), (4, 4), (1, 1))
        if name.endswith("downsample.0"):
            assert m.stride == (1, 1)
    # Unlike torchvision's replace_stride_with_dilation, the first block of a stage
    # is dilated too.
    assert stages[4][0].conv2.dilation == (4, 4)


def test_aspp_rates_follow_output_stride():
    for os_, rates in ((4, (24, 48, 72)), (8, (12, 24, 36)), (16, (6, 12, 18)), (32, (3, 6, 9))):
        aspp = ASPP(32, os_)
        assert tuple(f[0].dilation[0] for f in list(aspp.features)[1:]) == rates


@pytest.mark.parametrize("size, dilation, bias", [((8, 8), 12, False), ((8, 16), 12, False), ((16, 8), 18, False),
                                                  ((8, 8), 8, False), ((9, 9), 8, False), ((5, 40), 6, False),
                                                  ((8, 8), 6, False), ((12, 24), 6, True), ((32, 32), 2, True)])
def test_atrous_conv_skipping_padding_taps_equals_the_full_conv(size, dilation, bias):
    """The ASPP's atrous convs drop the taps that read only padding (the map is no
    larger than the dilation along that axis) and compute the weight gradient tap by
    tap where most taps read padding ((9, 9) at 8, (5, 40) and (8, 8) at 6, ...; not
    (32, 32) at 2): outputs and every gradient equal those of torch's full 3x3 conv
    (fp64), the skipped taps' gradient is exactly 0."""
    torch.manual_seed(0)
    ours = AtrousConv2d(6, 4, 3, padding=dilation, dilation=dilation, bias=bias).double()
    full = torch.nn.Conv2d(6, 4, 3, padding=dilation, dilation=dilation, bias=bias).double()
    full.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(2, 4, *size, dtype=torch.float64)
    ya, yb = ours(xa), full(xb)
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, full.weight.grad, rtol=1e-12, atol=1e-12)
    if bias:
        torch.testing.assert_close(ours.bias.grad, full.bias.grad, rtol=1e-12, atol=1e-12)
    if size[0] <= dilation:
        assert (ours.weight.grad[:, :, [0, 2]] == 0).all()
    assert (ours.weight.grad[:, :, 1, 1] != 0).all()


def test_atrous_conv_takes_an_unbatched_map_as_nn_conv2d_does():
    torch.manual_seed(0)
    ours = AtrousConv2d(4, 3, 3, padding=6, dilation=6).double()
    full = torch.nn.Conv2d(4, 3, 3, padding=6, dilation=6).double()
    full.load_state_dict(ours.state_dict())
    x = torch.randn(4, 8, 8, dtype=torch.float64)
    ours(x).sum().backward()
    full(x).sum().backward()
    torch.testing.assert_close(ours.weight.grad, full.weight.grad, rtol=1e-12, atol=1e-12)


def test_atrous_conv_tap_gradient_under_bf16_autocast():
    """Under CPU bf16 autocast the tap-by-tap path (16x8x8 map, rate 6) computes what
    autocast's conv does: bf16 output, float32 gradients for the float32 weight and
    input, within bf16 rounding of the full conv's float64 gradients."""
    from hanet.models.atrous import reading_fraction

    assert reading_fraction(8, 8, 6) == 0.25
    torch.manual_seed(0)
    ours = AtrousConv2d(32, 16, 3, padding=6, dilation=6, bias=False)
    x = torch.randn(4, 32, 8, 8, requires_grad=True)
    grad = torch.randn(4, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    assert y.dtype == torch.bfloat16
    y.backward(grad.bfloat16())
    assert x.grad.dtype == ours.weight.grad.dtype == torch.float32
    xd = x.detach().bfloat16().double().requires_grad_()
    wd = ours.weight.detach().bfloat16().double().requires_grad_()
    F = torch.nn.functional
    F.conv2d(xd, wd, padding=6, dilation=6).backward(grad.bfloat16().double())
    scale = wd.grad.abs().max().item()
    torch.testing.assert_close(ours.weight.grad.double(), wd.grad, rtol=0, atol=2e-2 * scale)
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=0, atol=2e-2 * xd.grad.abs().max().item())
    assert (ours.weight.grad != 0).all()


def test_forward_before_final_relu_is_the_stage_without_its_last_relu():
    from torchvision.models.resnet import Bottleneck

    from hanet.models.backbones import ends_in_relu, forward_before_final_relu

    torch.manual_seed(0)
    down = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, stride=2, bias=False), torch.nn.BatchNorm2d(16))
    stages = [torch.nn.Sequential(Bottleneck(8, 4, stride=2, downsample=down), Bottleneck(16, 4)),
              torch.nn.Sequential(Bottleneck(8, 4, stride=2, downsample=down)),  # last block downsamples
              torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                  torch.nn.ReLU(inplace=True))]
    for stage in stages:
        stage = stage.double().train()
        assert ends_in_relu(stage)
        x = torch.randn(2, 8, 10, 12, dtype=torch.float64)
        pre = forward_before_final_relu(stage, x)
        assert (pre < 0).any()  # a pre-activation, not the ReLU's output
        torch.testing.assert_close(torch.relu(pre), stage(x), rtol=0, atol=0)
    assert not ends_in_relu(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.ReLU6()))
    assert not ends_in_relu(torch.nn.Conv2d(3, 3, 1))
    # MobileNetV2's last stage ends in ReLU6: its site 0 is not fused (final1 is)
    mbv2 = build_model("deeplabv3plus_mbv2_os16", hanet=[1, 1, 1, 1, 1])
    assert not ends_in_relu(mbv2.layer4) and ends_in_relu(mbv2.final1)


@pytest.mark.parametrize("arch, fused_sites", [("deeplabv3plus_r50_os16", {0, 3}),
                                               ("deeplabv3plus_shufflenetv2_os16", {0, 3})])
def test_training_fuses_the_stage_relu_into_the_site_with_identical_loss_and_gradients(
        arch, fused_sites, monkeypatch):
    """While training, sites 0 (after layer4) and 3 (after final1) take the stage's
    pre-activation where it ends in a ReLU; loss and every gradient equal those of the
    unfused model (float64)."""
    import copy

    from hanet.models import deeplab

    torch.manual_seed(0)
    model = build_model(arch, hanet=[1, 1, 1, 1, 1], hanet_set=[3, 64, 3], hanet_pos=[2, 1]).double().train()
    unfused = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64)
    y = torch.randint(0, 19, (2, 32, 48))
    calls = []
    for i in range(5):
        site = getattr(model, f"hanet{i}")
        site.register_forward_pre_hook(lambda m, a, kw, i=i: calls.append((i, kw.get("relu_x_high", False))),
                                       with_kwargs=True)
    loss = torch.nn.functional.cross_entropy(model(x).logits, y)
    loss.backward()
    assert {i for i, relu in calls if relu} == fused_sites
    monkeypatch.setattr(deeplab, "ends_in_relu", lambda stage: False)
    loss_unfused = torch.nn.functional.cross_entropy(unfused(x).logits, y)
    loss_unfused.backward()
    assert loss.item() == loss_unfused.item()
    for (name, p), q in zip(model.named_parameters(), unfused.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14, msg=name)
    # inference runs the stages as they are (module hooks on them still fire)
    calls.clear()
    with torch.no_grad():
        model.eval()(x)
    assert not any(relu for _, relu in calls)


def test_forward_contract_eval_and_attention():
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=7, **SMALL).eval()
    images = torch.randn(1, 3, 80, 96)
    with torch.no_grad():
        logits = model(images).logits
        logits2, _, atts = model(images, return_attention=True)
    assert logits.shape == (1, 7, 80, 96)
    torch.testing.assert_close(logits, logits2)
    assert len(atts) == 5
    for att, site in zip(atts, model.hanet_sites()):
        assert att.shape[:2] == (1, site.out_channels)
        assert att.min() > 0 and att.max() < 1


# (training, aux head, return_attention) -> (aux_logits shape or None, attention shapes or None), for a
# batch of 2 at 64x96, 7 classes, OS16, all five sites
ATTENTION_SHAPES = [(2, 1280, 4), (2, 1280, 4), (2, 256, 4), (2, 256, 8), (2, 7, 8)]
FORWARD_CASES = {
    (False, False, False): (None, None),
    (False, False, True): (None, ATTENTION_SHAPES),
    (False, True, False): (None, None),  # eval mode: no aux logits even with the head
    (False, True, True): (None, ATTENTION_SHAPES),
    (True, False, False): (None, None),
    (True, False, True): (None, ATTENTION_SHAPES),
    (True, True, False): ((2, 7, 4, 6), None),
    (True, True, True): ((2, 7, 4, 6), ATTENTION_SHAPES),
}


@pytest.mark.parametrize("training,aux_loss,return_attention", sorted(FORWARD_CASES))
def test_forward_returns_one_typed_output_for_every_flag(training, aux_loss, return_attention):
    aux_shape, attention_shapes = FORWARD_CASES[training, aux_loss, return_attention]
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=7, **{**SMALL, "aux_loss": aux_loss})
    model.train(training)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96), return_attention=return_attention)
    assert type(out) is SegmentationOutput
    assert out._fields == ("logits", "aux_logits", "attention")
    assert isinstance(out.logits, torch.Tensor) and out.logits.shape == (2, 7, 64, 96)
    if aux_shape is None:
        assert out.aux_logits is None
    else:
        assert out.aux_logits.shape == aux_shape
    if attention_shapes is None:
        assert out.attention is None
    else:
        assert isinstance(out.attention, list)
        assert [tuple(a.shape) for a in out.attention] == attention_shapes
    logits, aux_logits, attention = out  # a 3-tuple in every case
    assert logits is out.logits and aux_logits is out.aux_logits and attention is out.attention


def test_forward_without_sites_gives_an_empty_attention_list():
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=3, hanet=[0, 0, 0, 0, 0]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), return_attention=True)
    assert out.aux_logits is None and out.attention == []
    assert logits_of(out) is out.logits and logits_of(out.logits) is out.logits


def test_explicit_whole_frame_pos_equals_default():
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=4, **SMALL).eval()
    images = torch.randn(2, 3, 64, 64)
    rows = torch.arange(64) * 128 // 64
    pos_hw = rows[None, :, None].expand(2, 64, 64).contiguous()
    with torch.no_grad():
        a = model(images).logits
        b = model(images, pos_h=pos_hw).logits
        c = model(images, pos_h=pos_hw[:, :, 0]).logits
        d = model(images, pos_h=torch.full((2, 64), 128)).logits  # padding rows: a different answer
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, d)


def test_bad_pos_h_and_images_are_clear_errors():
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=4, **SMALL).eval()
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="integers"):
        model(torch.randn(1, 3, 32, 32), pos_h=torch.zeros(1, 32))
    with pytest.raises(ValueError, match="batch"):
        model(torch.randn(1, 3, 32, 32), pos_h=torch.zeros(2, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\]"):
        model(torch.randn(1, 3, 32, 32), pos_h=torch.full((1, 32), 500))


def test_hanet_parameter_count_matches_the_original():
    model = build_model("DeepR101V3PlusD_HANet_OS8", hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3],
                        hanet_pos=[2, 1], pos_rfactor=8)
    n = sum(p.numel() for site in model.hanet_sites() for p in site.parameters() if p.requires_grad)
    assert n == 604_462


def test_baseline_has_no_hanet():
    model = build_model("deeplabv3plus_r50_os16", hanet=[0, 0, 0, 0, 0])
    assert model.hanet_sites() == []
    assert not any(k.startswith("hanet") for k in model.state_dict())


def test_config_errors_are_explicit():
    with pytest.raises(ValueError, match="hanet_set must be"):
        build_model("deeplabv3plus_r50_os16", hanet_set=[3, 64])
    with pytest.raises(ValueError, match="five 0/1 flags"):
        build_model("deeplabv3plus_r50_os16", hanet=[1, 1, 1])
    with pytest.raises(TypeError, match="options are"):
        build_model("deeplabv3plus_r50_os16", hanet_sets=[3, 64, 3])
    with pytest.raises(ValueError, match="r_factor"):
        HANet(64, 32, r_factor=0)
    with pytest.raises(ValueError, match="pos_injection"):
        HANet(64, 32, pos_injection=3)


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("injection,encoding", [(1, "sinusoid"), (2, "learned"), (2, None)])
def test_hanet_module_fused_equals_reference(pooling, injection, encoding):
    """Same values and gradients on the fused ops as on the pure-PyTorch reference."""
    torch.manual_seed(0)
    kw = dict(r_factor=8, pos_injection=injection, pos_encoding=encoding, pooling=pooling)
    fused, ref = HANet(24, 16, backend="cpu", **kw), HANet(24, 16, backend="reference", **kw)
    ref.load_state_dict(fused.state_dict())
    if encoding == "learned":
        with torch.no_grad():
            for m in (fused, ref):
                getattr(m, f"pos_emb1d_{'1st' if injection == 1 else '2nd'}").pos_layer.weight.copy_(
                    torch.linspace(-1, 1, 17)[:, None].expand(17, m.attention_first[0].out_channels if injection == 2 else 24))
    x_low = torch.randn(2, 24, 20, 18)
    x_high = torch.randn(2, 16, 20, 18).contiguous(memory_format=torch.channels_last)
    pos = torch.randint(0, 128, (2, 40))
    outs, grads = [], []
    for m in (fused, ref):
        a, b = x_low.clone().requires_grad_(), x_high.clone().requires_grad_()
        out, att = m.train()(a, b, pos, return_attention=True)
        (out.square().sum() + att.sum()).backward()
        outs.append((out.detach(), att.detach()))
        grads.append([a.grad, b.grad] + [p.grad for p in m.parameters() if p.requires_grad])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-4)


def test_batch_one_training_works():
    """The original crashes on batch 1 (ASPP image-pool BN); ours trains."""
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=3, **SMALL).train()
    before = model.aspp.img_conv[1].running_mean.clone()
    out = model(torch.randn(1, 3, 64, 64))
    (out.logits.mean() + out.aux_logits.mean()).backward()
    torch.testing.assert_close(model.aspp.img_conv[1].running_mean, before)


def test_torch_export_keeps_fused_ops():
    model = build_model("deeplabv3plus_mbv2_os16", num_classes=3, **SMALL, backend="cpu").eval()
    images = torch.randn(1, 3, 64, 64)
    ep = torch.export.export(model, (images,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "hanet.attention_rescale.default" in targets
    assert "hanet.width_pool.default" in targets
    with torch.no_grad():
        got = ep.module()(images)
        assert type(got) is SegmentationOutput and got.aux_logits is None and got.attention is None
        torch.testing.assert_close(got.logits, model(images).logits)


def test_strided_and_dilated_depthwise_convs_run_in_float32_under_cpu_autocast():
    """ShuffleNetV2 at OS16: the stride-2 depthwise convs and the dilated ones of
    layer3 are FloatDepthwiseConv2d (same parameters and keys), the stride-1 ones
    plain; under CPU bf16 autocast they compute the float32 conv of the map exactly."""
    from hanet.models.backbones import FloatDepthwiseConv2d

    stages, _ = build_trunk("shufflenetv2", 16)
    dw = [m for m in stages.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    special = [m for m in dw if type(m) is FloatDepthwiseConv2d]
    assert {(m.stride, m.dilation) for m in special} == {((2, 2), (1, 1)), ((1, 1), (2, 2))}
    assert len(special) == 6 and all(type(m) is torch.nn.Conv2d for m in dw if m.stride == m.dilation == (1, 1))
    conv = special[0]
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, 16, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        plain = torch.nn.functional.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert y.dtype == torch.float32 and plain.dtype == torch.bfloat16
    truth = torch.nn.functional.conv2d(x.float(), conv.weight, None, conv.stride, conv.padding, conv.dilation,
                                       conv.groups)
    torch.testing.assert_close(y, truth, rtol=0, atol=0)
    torch.testing.assert_close(conv(x.float()), truth, rtol=0, atol=0)  # no autocast: plain float32
