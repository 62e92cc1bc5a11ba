"""DeepLabV3+ with HANet sites, computing exactly what the original computes.

Module names and order follow the original (``layer0``..``layer4``, ``aspp``,
``bot_fine``, ``bot_aspp``, ``final1``, ``final2``, ``dsn``, ``hanet0``..``hanet4``),
so the official checkpoints load without renaming.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .atrous import AtrousConv2d
from .backbones import build_trunk, ends_in_relu, forward_before_final_relu
from .config import ModelConfig
from . import branch_graph
from .hanet_module import HANet
from .resize import resize_bilinear
from .pos_encoding import check_pos_h, whole_frame_positions


class SegmentationOutput(NamedTuple):
    """What :meth:`DeepLabV3Plus.forward` returns, for every combination of mode and flags.

    * ``logits``: (B, classes, H, W) at the input resolution; always a tensor;
    * ``aux_logits``: (B, classes, H/8 or H/16, ...) of the auxiliary (dsn) head in
      training mode when the model has one (``config.aux_loss``), else None (always
      None in eval mode);
    * ``attention``: with ``return_attention=True`` the list of each active HANet
      site's attention (B, C_h, H_h) in site order (empty without sites), else None.

    A NamedTuple, so ``torch.export``, ``torch.compile`` and DDP carry it through.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    attention: list[torch.Tensor] | None = None


def logits_of(out) -> torch.Tensor:
    """The logits of a model's output: ``out.logits`` of a :class:`SegmentationOutput`,
    or ``out`` itself where a model returns the logits tensor (an exported program's
    module, :func:`hanet.export.logits_only`)."""
    return out.logits if isinstance(out, SegmentationOutput) else out


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    # align_corners=True, as the original (on the CPU as two small matrix products)
    return resize_bilinear(x, size)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    if k == 1:
        conv = nn.Conv2d(cin, cout, 1, bias=False)
    else:
        conv = AtrousConv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImagePoolBatchNorm(nn.BatchNorm2d):
    """BN of the ASPP image-pooling branch.

    After global pooling it sees one value per channel and image, so training with
    one image per process (one GPU, or CPU) cannot compute batch statistics (the
    original crashes there).  With a single value per channel this BN normalises
    with its running statistics and leaves them unchanged; with more it is a
    plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: [image pooling, 1x1, three 3x3 atrous] -> 1280."""

    def __init__(self, in_channels: int, output_stride: int, depth: int = 256, rates=(6, 12, 18)):
        super().__init__()
        scale = {4: 4, 8: 2, 16: 1}.get(output_stride)
        rates = [r * scale for r in rates] if scale else [r // 2 for r in rates]  # OS32 halves
        self.features = nn.ModuleList(
            [_conv_bn_relu(in_channels, depth, 1)] + [_conv_bn_relu(in_channels, depth, 3, r) for r in rates]
        )
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = nn.Sequential(nn.Conv2d(in_channels, depth, 1, bias=False),
                                      ImagePoolBatchNorm(depth), nn.ReLU(inplace=True))
        self.out_channels = depth * (len(rates) + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _upsample(self.img_conv(self.img_pooling(x)), x.shape[2:])
        return torch.cat([pooled] + [f(x) for f in self.features], dim=1)


def initialize_weights(*modules: nn.Module) -> None:
    """The original's initialisation of the new (non-trunk) parts."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with up to five HANet sites (``config.hanet``).

    ``forward(images, pos_h=None, return_attention=False)`` always returns a
    :class:`SegmentationOutput` ``(logits, aux_logits, attention)``:
      * ``logits`` (B, classes, H, W) at input resolution, in every mode;
      * ``aux_logits``: the aux head's logits in training mode when it exists
        (``config.aux_loss``), else None;
      * ``attention``: with ``return_attention`` the list of each active site's
        attention (B, C_h, H_h), else None.
    ``model.eval()(images).logits`` is the prediction.
    ``pos_h``: the row-position map (row // 8 of the 1024-row frame), (B, H) or
    (B, H, W) at any resolution; None treats the input as a whole frame.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        stages, ch = build_trunk(config.trunk, config.output_stride)
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.aspp = ASPP(ch.final, config.output_stride)
        self.bot_fine = _conv_bn_relu(ch.low_level, 48, 1)
        self.bot_aspp = _conv_bn_relu(self.aspp.out_channels, 256, 1)
        self.final1 = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        )
        self.final2 = nn.Sequential(nn.Conv2d(256, config.num_classes, 1, bias=True))
        if config.aux_loss:
            self.dsn = nn.Sequential(
                nn.Conv2d(ch.prev_final, 512, 3, padding=1, bias=True), nn.BatchNorm2d(512), nn.ReLU(inplace=True),
                nn.Dropout2d(0.1), nn.Conv2d(512, config.num_classes, 1, bias=True),
            )
            initialize_weights(self.dsn)
        else:
            self.dsn = None
        # (x_low channels -> x_high channels) of the five sites.
        site_channels = [(ch.prev_final, ch.final), (ch.final, self.aspp.out_channels),
                         (self.aspp.out_channels, 256), (304, 256), (256, config.num_classes)]
        k, r, layers = config.hanet_set
        for i, (c_low, c_high) in enumerate(site_channels):
            site = None
            if config.hanet[i]:
                site = HANet(c_low, c_high, kernel_size=k, r_factor=r, layers=layers,
                             pos_injection=config.hanet_pos[0], pos_encoding=config.pos_encoding,
                             pos_rfactor=config.pos_rfactor,
                             pooling="max" if i == 4 else config.pooling,  # site 4: always max, as the original
                             dropout=config.dropout, pos_noise=config.pos_noise, backend=config.backend,
                             cuda_graph=config.cuda_graph)
                initialize_weights(site)
            setattr(self, f"hanet{i}", site)
        initialize_weights(self.aspp, self.bot_aspp, self.bot_fine, self.final1, self.final2)
        self._static_positions = branch_graph.StaticPositions()

    def hanet_sites(self) -> list[nn.Module]:
        return [m for m in (self.hanet0, self.hanet1, self.hanet2, self.hanet3, self.hanet4) if m is not None]

    def _site(self, i, x_low, x_high, pos_h, attentions, relu_x_high=False):
        site = getattr(self, f"hanet{i}")
        if site is None:
            return x_high
        if attentions is None:
            return site(x_low, x_high, pos_h, relu_x_high=relu_x_high)
        out, att = site(x_low, x_high, pos_h, return_attention=True, relu_x_high=relu_x_high)
        attentions.append(att)
        return out

    def _stage_then_site(self, i, stage, stage_in, x_low, pos_h, attentions):
        """site i applied to stage(stage_in).  While training, where the stage ends in a
        ReLU the site takes the pre-activation and fuses the ReLU into its rescale: the
        stage's output is then not kept for the backward (one full-size tensor less per
        such site in fp32).  Inference runs the stage as it is."""
        if (getattr(self, f"hanet{i}") is not None and self.training and torch.is_grad_enabled()
                and ends_in_relu(stage)):
            return self._site(i, x_low, forward_before_final_relu(stage, stage_in), pos_h, attentions,
                              relu_x_high=True)
        return self._site(i, x_low, stage(stage_in), pos_h, attentions)

    def forward(self, images: torch.Tensor, pos_h: torch.Tensor | None = None,
                return_attention: bool = False) -> SegmentationOutput:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"DeepLabV3Plus: images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        B, _, H, W = images.shape
        if pos_h is None:
            pos_h = whole_frame_positions(B, H, images.device)
        else:
            pos_h = check_pos_h(pos_h, B, "DeepLabV3Plus")
        if any(s.cuda_graph for s in self.hanet_sites()) and branch_graph.can_capture(self, images):
            # one copy a step into the tensor every captured site reads in place
            pos_h = self._static_positions.update(pos_h)
        attentions = [] if return_attention else None

        x = self.layer0(images)
        low_level = x = self.layer1(x)
        x = self.layer2(x)
        aux_in = x = self.layer3(x)
        x = self._stage_then_site(0, self.layer4, x, aux_in, pos_h, attentions)
        represent = x
        x = self.aspp(x)
        x = self._site(1, represent, x, pos_h, attentions)
        dec0_up = self.bot_aspp(x)
        dec0_up = self._site(2, x, dec0_up, pos_h, attentions)
        dec0 = torch.cat([self.bot_fine(low_level), _upsample(dec0_up, low_level.shape[2:])], dim=1)
        dec1 = self._stage_then_site(3, self.final1, dec0, dec0, pos_h, attentions)
        dec2 = self.final2(dec1)
        dec2 = self._site(4, dec1, dec2, pos_h, attentions)
        logits = resize_bilinear(dec2, (H, W), float32_out=True)
        aux_logits = self.dsn(aux_in) if self.training and self.dsn is not None else None
        return SegmentationOutput(logits, aux_logits, attentions)
