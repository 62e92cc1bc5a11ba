"""The original's DeepLabV3+ trunks, built from torchvision's constructors (no weights).

Each trunk is split into ``layer0`` (stem) ... ``layer4`` exactly as the original
splits it, so that state-dict keys match the official checkpoints, and gets the
original's dilation pattern for its output stride, which differs from
torchvision's ``replace_stride_with_dilation``:

* ResNet family: every block's 3x3 ``conv2`` of a dilated stage gets dilation d,
  padding d, stride 1, and its ``downsample.0`` stride 1.  OS8: layer3 d=2,
  layer4 d=4.  OS16: layer4 d=2.  OS4: layer2 2, layer3 4, layer4 8.  OS32: none.
* Mobile trunks (MobileNetV2, ShuffleNetV2, MNASNet): only the convs with stride 2
  of a dilated stage change, to dilation d, padding d, stride 1 (for 5x5 kernels the
  original keeps padding d, which trims the map: reproduced as is).  OS8: layer2
  d=2, layer3 d=4.  OS16: layer3 d=2.  OS32: none.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import Bottleneck

RESNET_TRUNKS = ("resnet-50", "resnet-101", "resnet-152", "resnext-50", "resnext-101",
                 "wide_resnet-50", "wide_resnet-101")
MOBILE_TRUNKS = ("mobilenetv2", "shufflenetv2", "mnasnet_05", "mnasnet_10")
TRUNKS = RESNET_TRUNKS + MOBILE_TRUNKS

# Dilation per stage for each output stride.
_RESNET_DILATION = {4: {"layer2": 2, "layer3": 4, "layer4": 8}, 8: {"layer3": 2, "layer4": 4},
                    16: {"layer4": 2}, 32: {}}
_MOBILE_DILATION = {8: {"layer2": 2, "layer3": 4}, 16: {"layer3": 2}, 32: {}}


@dataclass(frozen=True)
class TrunkChannels:
    low_level: int  # layer1 output: the decoder's fine features (bot_fine input)
    prev_final: int  # layer3 output: aux head and HANet site 0 input
    final: int  # layer4 output: ASPP input


# The widths the original hard-codes per trunk (a test checks them by a forward pass).
_RESNET_CHANNELS = TrunkChannels(low_level=256, prev_final=1024, final=2048)
TRUNK_CHANNELS = {
    **{t: _RESNET_CHANNELS for t in RESNET_TRUNKS},
    "mobilenetv2": TrunkChannels(32, 320, 1280),
    "shufflenetv2": TrunkChannels(116, 464, 1024),
    "mnasnet_05": TrunkChannels(24, 160, 1280),
    "mnasnet_10": TrunkChannels(40, 320, 1280),
}


def supported_output_strides(trunk: str) -> tuple[int, ...]:
    if trunk in RESNET_TRUNKS:
        return tuple(sorted(_RESNET_DILATION))
    if trunk in MOBILE_TRUNKS:
        return tuple(sorted(_MOBILE_DILATION))
    raise ValueError(f"unknown trunk {trunk!r}; choose one of {', '.join(TRUNKS)}")


def _deep_stem_resnet101() -> nn.Module:
    """ResNet-101 with the original's deep stem: three 3x3 convs (64, 64, 128)."""
    net = tvm.resnet101(weights=None)
    net.layer0 = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    net.inplanes = 128  # layer1 takes the stem's 128 channels
    net.layer1 = net._make_layer(Bottleneck, 64, 3)
    return net


def _resnet(trunk: str) -> nn.Module:
    if trunk == "resnet-101":
        return _deep_stem_resnet101()
    ctor = {"resnet-50": tvm.resnet50, "resnet-152": tvm.resnet152, "resnext-50": tvm.resnext50_32x4d,
            "resnext-101": tvm.resnext101_32x8d, "wide_resnet-50": tvm.wide_resnet50_2,
            "wide_resnet-101": tvm.wide_resnet101_2}[trunk]
    net = ctor(weights=None)
    net.layer0 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return net


def _dilate_resnet(stage: nn.Module, d: int) -> None:
    for name, m in stage.named_modules():
        if name.endswith("conv2"):
            m.dilation, m.padding, m.stride = (d, d), (d, d), (1, 1)
        elif name.endswith("downsample.0"):
            m.stride = (1, 1)


def _dilate_mobile(stage: nn.Module, d: int) -> None:
    for m in stage.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.dilation, m.padding, m.stride = (d, d), (d, d), (1, 1)


class FloatDepthwiseConv2d(nn.Conv2d):
    """A strided or dilated depthwise conv that runs in float32 under CPU autocast:
    oneDNN's bfloat16 backward of these is 3-7x slower than float32's (2 threads,
    16x58x32x32 stride 2: 7.2 against 1.8 ms; 16x116x16x16 stride 2: 5.8 against
    1.0 ms), while their arithmetic is a rounding error of the step's.  Same parameters
    as ``nn.Conv2d``; elsewhere (GPU, no autocast, compiled or traced graphs) plain."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or not torch.is_autocast_enabled("cpu")
                or torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.to(self.weight.dtype))


def _float_strided_depthwise(stage: nn.Module) -> None:
    for m in stage.modules():
        if (type(m) is nn.Conv2d and m.groups > 1 and m.groups == m.in_channels == m.out_channels
                and (m.stride != (1, 1) or m.dilation != (1, 1))):
            m.__class__ = FloatDepthwiseConv2d  # in place: same parameters, hooks and keys


def _mobile_stages(trunk: str) -> list[nn.Module]:
    if trunk == "mobilenetv2":
        f = list(tvm.mobilenet_v2(weights=None).features)
        return [_seq(f[0:2]), _seq(f[2:7]), _seq(f[7:11]), _seq(f[11:18]), _seq(f[18:19])]
    if trunk == "shufflenetv2":
        net = tvm.shufflenet_v2_x1_0(weights=None)
        return [nn.Sequential(net.conv1, net.maxpool), net.stage2, net.stage3, net.stage4, net.conv5]
    net = (tvm.mnasnet0_5 if trunk == "mnasnet_05" else tvm.mnasnet1_0)(weights=None)
    la = list(net.layers)
    return [_seq(la[0:8]), _seq(la[8:10]), _seq(la[10:12]), _seq(la[12:14]), _seq(la[14:17])]


def _seq(modules: list[nn.Module]) -> nn.Sequential:
    # A new Sequential numbered from 0, as the original's re-wrapping (a slice of a
    # Sequential would keep the old indices and so other state-dict keys).
    return nn.Sequential(*modules)


def build_trunk(trunk: str, output_stride: int) -> tuple[nn.ModuleList, TrunkChannels]:
    """The five stages (layer0..layer4) of ``trunk`` at ``output_stride``, and their widths."""
    strides = supported_output_strides(trunk)
    if output_stride not in strides:
        raise ValueError(
            f"trunk {trunk!r} supports output strides {', '.join(map(str, strides))} (as the original), "
            f"got {output_stride}"
        )
    if trunk in RESNET_TRUNKS:
        net = _resnet(trunk)
        stages = [net.layer0, net.layer1, net.layer2, net.layer3, net.layer4]
        for name, d in _RESNET_DILATION[output_stride].items():
            _dilate_resnet(stages[int(name[-1])], d)
    else:
        stages = _mobile_stages(trunk)
        for name, d in _MOBILE_DILATION[output_stride].items():
            _dilate_mobile(stages[int(name[-1])], d)
    for stage in stages:
        _float_strided_depthwise(stage)
    return nn.ModuleList(stages), TRUNK_CHANNELS[trunk]


def ends_in_relu(module: nn.Module) -> bool:
    """Whether ``module``'s output comes out of a plain ``nn.ReLU``: a ReLU, a Sequential
    whose last module does, or a ResNet bottleneck (ReLU after the residual sum).  A
    HANet site rescaling such an output can take the pre-activation instead and fuse the
    ReLU (:func:`hanet.ops.relu_attention_rescale`)."""
    if isinstance(module, nn.ReLU):
        return True
    if isinstance(module, nn.Sequential):
        return len(module) > 0 and ends_in_relu(module[-1])
    return isinstance(module, Bottleneck) and isinstance(module.relu, nn.ReLU)


def forward_before_final_relu(module: nn.Module, x):
    """``module(x)`` without its final ReLU (``ends_in_relu(module)`` must hold): the same
    modules and arithmetic up to the pre-activation (module hooks are not run)."""
    if isinstance(module, nn.ReLU):
        return x
    if isinstance(module, nn.Sequential):
        for m in list(module)[:-1]:
            x = m(x)
        return forward_before_final_relu(module[-1], x)
    if isinstance(module, Bottleneck):  # torchvision's forward, up to `out += identity`
        identity = x if module.downsample is None else module.downsample(x)
        out = module.relu(module.bn1(module.conv1(x)))
        out = module.relu(module.bn2(module.conv2(out)))
        return module.bn3(module.conv3(out)) + identity
    raise TypeError(f"forward_before_final_relu: {type(module).__name__} does not end in a ReLU")
