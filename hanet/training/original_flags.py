"""Every command-line flag of the original train.py, and what it is here.

``FLAGS`` maps each flag to one of:

* ``Key``: our config key that reproduces it (same name where we could keep it);
* ``NoEffect``: the original parses it but training does not depend on it (launcher
  and bookkeeping arguments, and a few flags its code never reads);
* ``Rejected``: a feature we do not reproduce.

:func:`translate_args` turns an original command line (e.g. a line of its
``scripts/train_*.sh``) into our ``key=value`` overrides, raising ``ConfigError``
on a rejected flag; :func:`explain_unknown_key` lets the config loader say what an
original flag name used as a config key is here, instead of a bare "unknown key".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


class OriginalFlagError(ValueError):
    """An original flag that we do not reproduce, or a malformed original command line."""


@dataclass(frozen=True)
class Key:
    key: str
    nargs: str = "1"  # "0": store_true; "1": one value; "*": a list
    convert: Callable[[list[str]], object] | None = None
    note: str = ""


@dataclass(frozen=True)
class NoEffect:
    reason: str
    nargs: str = "1"


@dataclass(frozen=True)
class Rejected:
    reason: str
    nargs: str = "1"
    default: object = None  # this value (the original's default) is accepted: it changes nothing


def _int_list(values: list[str]) -> list[int]:
    return [int(v) for v in values]


def _csv_ints(values: list[str]) -> list[int]:
    return [int(v) for v in values[0].split(",") if v.strip()]


def _hanet_pos(values: list[str]) -> list[int]:
    # The original's default has three entries; it only ever reads the first two.
    return [int(v) for v in values[:2]]


_NOT_RELAXATION = "the boundary label relaxation loss (--jointwtborder) is not reproduced"
_OUTPUT = "names the output folders only; use output_dir"

FLAGS: dict[str, Key | NoEffect | Rejected] = {
    # model
    "arch": Key("model.arch"),
    "hanet": Key("model.hanet", "*", _int_list),
    "hanet_set": Key("model.hanet_set", "*", _int_list),
    "hanet_pos": Key("model.hanet_pos", "*", _hanet_pos),
    "pos_rfactor": Key("model.pos_rfactor"),
    "pooling": Key("model.pooling"),
    "dropout": Key("model.dropout"),
    "pos_noise": Key("model.pos_noise"),
    "aux_loss": Key("model.aux_loss", "0"),
    "snapshot": Key("model.init_from", note="shape-mismatched tensors are skipped, as the original's"),
    # data
    "dataset": Key("data.dataset"),
    "cv": Key("data.cv_split"),
    "city_mode": Key("data.train_split"),
    "class_uniform_pct": Key("data.class_uniform_pct"),
    "class_uniform_tile": Key("data.class_uniform_tile"),
    "coarse_boost_classes": Key("data.coarse_boost_classes", convert=_csv_ints),
    "bs_mult": Key("data.batch_size"),
    "bs_mult_val": Key("data.val_batch_size"),
    "crop_size": Key("data.crop_size"),
    "pre_size": Key("data.pre_size"),
    "scale_min": Key("data.scale_min"),
    "scale_max": Key("data.scale_max"),
    "crop_nopad": Key("data.crop_nopad", "0"),
    "rrotate": Key("data.rrotate"),
    "color_aug": Key("data.color_aug"),
    "gblur": Key("data.gblur", "0"),
    "bblur": Key("data.bblur", "0"),
    "no_pos_dataset": Key("data.no_pos_dataset", "0"),
    # optimisation and loss
    "lr": Key("train.lr"),
    "poly_exp": Key("train.poly_exp"),
    "max_iter": Key("train.max_iter"),
    "momentum": Key("train.momentum"),
    "hanet_lr": Key("train.hanet_lr"),
    "hanet_poly_exp": Key("train.hanet_poly_exp"),
    "hanet_wd": Key("train.hanet_weight_decay"),
    "backbone_lr": Key("train.backbone_lr"),
    "weight_decay": Key("train.weight_decay", convert=lambda v: 5e-4,
                        note="the original's SGD ignores --weight_decay and always uses 5e-4"),
    "freeze_trunk": Key("train.freeze_trunk", "0", note="no effect on training in the original"),
    "syncbn": Key("train.syncbn", "0"),
    "img_wt_loss": Key("train.img_wt_loss", "0"),
    "cls_wt_loss": Key("train.cls_wt_loss", "0"),
    "batch_weighting": Key("train.batch_weighting", "0"),
    "wt_bound": Key("train.wt_bound"),
    # parsed, but training does not depend on them
    "sgd": NoEffect("SGD is the only optimizer (the flag defaults to true)", "0"),
    "adam": NoEffect("the optimizer train.py builds is always SGD", "0"),
    "amsgrad": NoEffect("the optimizer train.py builds is always SGD", "0"),
    "fp16": NoEffect("train.py never reads it (see train.amp for mixed precision)", "0"),
    "trunk": NoEffect("train.py never reads it; the arch names the trunk"),
    "max_epoch": NoEffect("training runs to --max_iter"),
    "start_epoch": NoEffect("training runs to --max_iter"),
    "use_hanet": NoEffect("train.py derives it from --hanet", "0"),
    "local_rank": NoEffect("set by the launcher"),
    "dist_url": NoEffect("set up by the launcher"),
    "date": NoEffect(_OUTPUT),
    "exp": NoEffect(_OUTPUT),
    "ckpt": NoEffect(_OUTPUT),
    "tb_path": NoEffect(_OUTPUT),
    "tb_tag": NoEffect(_OUTPUT),
    # not reproduced
    "lr_schedule": Rejected("only the poly schedule is reproduced (scl-poly needs --jointwtborder)", default="poly"),
    "rescale": Rejected("used only by --lr_schedule scl-poly, which is not reproduced", default="1.0"),
    "repoly": Rejected("used only by --lr_schedule scl-poly, which is not reproduced", default="1.5"),
    "jointwtborder": Rejected(_NOT_RELAXATION, "0"),
    "strict_bdr_cls": Rejected(_NOT_RELAXATION, default=""),
    "rlx_off_iter": Rejected(_NOT_RELAXATION, default="-1"),
    "attention_loss": Rejected("the attention loss (CuPy row labels) is not reproduced", default="0"),
    "max_cu_epoch": Rejected("dropping the coarse-boost centroids after that many epochs is not reproduced; "
                             "the official scripts' 10000 is never reached", default="10000"),
    "snapshot_pe": Rejected("loading only the position tables of another checkpoint is not reproduced"),
    "restore_optimizer": Rejected("resume our runs with train.resume=true", "0"),
    "hardnm": Rejected("KITTI/CamVid hard-negative mining is not reproduced", default="0"),
    "maxSkip": Rejected("video frame skipping is not reproduced", default="0"),
    "scf": Rejected("KITTI/CamVid scale correction is not reproduced", "0"),
    "dump_augmentation_images": Rejected("a debugging aid, not reproduced", "0"),
    "test_mode": Rejected("a smoke-test mode, not reproduced (use a small train.max_iter)", "0"),
}
_ALIASES = {"wb": "wt_bound"}


def _same(value: list[str], default) -> bool:
    if default is None or len(value) != 1:
        return False
    try:
        return float(value[0]) == float(default)
    except ValueError:
        return value[0] == default


def translate_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, notes) for an original command line such as ``["--lr", "0.01",
    "--hanet", "1", "1", "1", "1", "0", "--gblur"]``.  ``notes`` says what each flag
    without an effect here, or translated with a caveat, does in the original."""
    overrides, notes = [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-"):
            raise OriginalFlagError(f"expected a flag, got {token!r} (after {' '.join(argv[:i][-3:]) or 'the start'})")
        flag, eq, inline = token.lstrip("-").partition("=")  # argparse also takes --flag=value
        name = _ALIASES.get(flag, flag)
        if name not in FLAGS:
            raise OriginalFlagError(f"--{name} is not a flag of the original train.py")
        spec = FLAGS[name]
        j = i + 1
        while not eq and j < len(argv) and not (argv[j].startswith("--") or argv[j] == "-wb"):
            j += 1
        values = [inline] if eq else argv[i + 1:j]
        if (spec.nargs == "0" and values) or (spec.nargs == "1" and len(values) != 1):
            want = "no value" if spec.nargs == "0" else "one value"
            raise OriginalFlagError(f"--{name} takes {want}, got {values}")
        i = j
        if isinstance(spec, Rejected):
            if spec.nargs != "0" and _same(values, spec.default):
                notes.append(f"--{name} {values[0]}: the original's default, nothing to set")
                continue
            raise OriginalFlagError(f"--{name} is not supported: {spec.reason}")
        if isinstance(spec, NoEffect):
            notes.append(f"--{name}: no effect on training ({spec.reason})")
            continue
        if spec.nargs == "0":
            value = True
        elif spec.convert is not None:
            value = spec.convert(values)
        elif spec.nargs == "*":
            value = values
        else:
            value = values[0]
        overrides.append(f"{spec.key}={_yaml(value)}")
        if spec.note:
            notes.append(f"--{name} -> {spec.key}: {spec.note}")
        if name == "hanet_pos" and len(values) > 2:
            notes.append("--hanet_pos: the original reads only the first two values")
    return overrides, notes


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def explain_unknown_key(full_key: str) -> str | None:
    """What an unknown config key that is the name of an original flag is here."""
    name = full_key.rsplit(".", 1)[-1]
    spec = FLAGS.get(_ALIASES.get(name, name))
    if spec is None:
        return None
    if isinstance(spec, Key):
        return f"the original's --{name} is {spec.key} here"
    if isinstance(spec, NoEffect):
        return f"the original's --{name} has no effect on training ({spec.reason}); remove the key"
    return f"the original's --{name} is not supported: {spec.reason}"
