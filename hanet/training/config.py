"""Training configuration: YAML files with dotted ``key=value`` overrides.

Every key is declared (with its type) in the dataclasses below (the ``model:``
section's are ModelConfig's own, see ModelSection); unknown keys and values of the
wrong type are errors that name the key.  A config file may start
from another with ``_base_: other.yaml`` (relative to the file).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hanet.models.config import ModelConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


DEFAULT_ARCH = "deeplabv3plus_r101_os8"
# trunk and output_stride of ModelConfig: a training config names them with one `arch`
# (any name hanet.models.parse_arch accepts, the original's included).
_ARCH_FIELDS = ("trunk", "output_stride")
# The one default in which a training config departs from ModelConfig: the official
# recipes all train with the auxiliary head (--aux_loss), so `model.aux_loss` is true
# unless a config says otherwise.  ModelConfig itself (build_model, checkpoints, the
# official command's store_true --aux_loss) has no aux head unless asked for one.
TRAINING_MODEL_DEFAULTS = {"aux_loss": True}


def _model_section_fields() -> list:
    """The training YAML's `model:` keys: `arch`, every field of ModelConfig but trunk
    and output_stride (same names, types and defaults, but TRAINING_MODEL_DEFAULTS),
    and the two keys that say where the weights start (before `backend`, the order
    the keys have always had)."""
    hints = typing.get_type_hints(ModelConfig)
    specs = [("arch", str, field(default=DEFAULT_ARCH))]
    for f in dataclasses.fields(ModelConfig):
        if f.name in _ARCH_FIELDS:
            continue
        if f.name == "backend":
            specs += [
                # local ImageNet weights for the trunk
                ("pretrained", str | None, field(default=None)),
                # start from another model's weights (the original's --snapshot); shape-mismatched
                # tensors are skipped and listed
                ("init_from", str | None, field(default=None)),
            ]
        if f.name in TRAINING_MODEL_DEFAULTS:
            spec = field(default=TRAINING_MODEL_DEFAULTS[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field(default=f.default)
        specs.append((f.name, hints[f.name], spec))
    return specs


def _model_config(self) -> ModelConfig:
    """The ModelConfig of this section (trunk and output stride from `arch`): what the
    trainer builds and what its checkpoints store."""
    from hanet.models.registry import parse_arch

    trunk, output_stride = parse_arch(self.arch)
    shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig) if f.name not in _ARCH_FIELDS}
    return ModelConfig(trunk=trunk, output_stride=output_stride, **shared)


# The `model:` section: ModelConfig's fields, generated from it (one definition of the
# model's settings), with `arch` for trunk + output stride, and `pretrained`/`init_from`.
ModelSection = dataclasses.make_dataclass(
    "ModelSection", _model_section_fields(),
    namespace={"__module__": __name__, "model_config": _model_config,
               "__doc__": "The training config's `model:` section; `model_config()` gives its ModelConfig."})


@dataclass
class DataSection:
    dataset: str = "cityscapes"  # cityscapes | bdd100k | mapillary | gtav | camvid | kitti | folder
    root: str = "data/cityscapes"
    train_split: str = "train"  # train | trainval (the original's --city_mode) | ...
    val_split: str = "val"
    crop_size: int = 768
    scale_min: float = 0.5
    scale_max: float = 2.0
    pre_size: int | None = None  # the original's --pre_size: shorter edge scaled to this before the random scale
    crop_nopad: bool = False  # the original's --crop_nopad: shrink the crop to a square of the shorter edge, no padding
    rrotate: int = 0  # the original's --rrotate: random rotation in [-rrotate, rrotate] degrees (0: none)
    color_aug: float = 0.25  # brightness, contrast, saturation jitter [1 - x, 1 + x] and hue [-x, x], random order
    gblur: bool = True  # Gaussian blur of every image, sigma in [0.15, 1.3)
    bblur: bool = False  # bilateral blur instead (the original: bblur wins over gblur)
    no_pos_dataset: bool = False  # the original's --no_pos_dataset: no row positions, no aux loss (Mapillary)
    class_uniform_pct: float = 0.5
    class_uniform_tile: int = 1024
    coarse_boost_classes: list[int] | None = None  # train ids drawn more often from coarse labels
    cv_split: int = 0  # the original's --cv: cross-validation split 0..2 (cityscapes, gtav, kitti)
    classes_file: str | None = None  # YAML/JSON class table for dataset=folder
    batch_size: int = 2  # per process (the original's bs_mult)
    val_batch_size: int = 1
    num_workers: int = 2
    max_val_images: int | None = None  # validate on the first N images only
    skip_corrupt: bool = False  # drop unreadable or size-mismatched pairs at start-up (counted, logged) instead of failing
    # keep each decoded training image and label in memory after its first read (small datasets: the
    # demo's 400 scenes take 52 MB; per DataLoader worker)
    cache_decoded: bool = False


OPTIMIZERS = ("sgd", "adamw")  # train.optimizer's values (hanet.training.optim builds them)


@dataclass
class TrainSection:
    max_iter: int = 90000
    # sgd: the original's (momentum, poly decay); adamw: not in the original (its Adam branch
    # is never built), for short from-scratch runs such as the demo, with the same groups
    optimizer: str = "sgd"
    lr: float = 0.01
    warmup_iters: int = 0  # > 0: the lr ramps linearly from 0 over these first iterations (not in the original)
    poly_exp: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    hanet_lr: float = 0.01
    hanet_poly_exp: float = 0.9
    hanet_weight_decay: float = 1e-4  # the original's --hanet_wd; used only when hanet_lr > 0
    backbone_lr: float = 0.0  # > 0: parameters named layer0*/layer1* get this lr (the original's --backbone_lr)
    aux_weight: float = 0.4
    cls_wt_loss: bool = False
    img_wt_loss: bool = False  # the original's per-image class-weighted loss (ImageBasedCrossEntropyLoss2d)
    wt_bound: float = 1.0  # its upper_bound (the original's -wb/--wt_bound)
    batch_weighting: bool = False  # its weights from the whole batch instead of each image (--batch_weighting)
    freeze_trunk: bool = False  # no effect on training, as in the original (it only names the run "ft")
    amp: str = "none"  # none | bf16 | fp16
    # fp16: the grad scaler skips steps with a non-finite loss; this many in a row stop the run.
    max_skipped_steps: int = 20
    grad_clip: float | None = None
    val_every: int = 1000
    log_every: int = 20
    ckpt_every: int = 500
    seed: int = 0
    resume: bool = False
    stop_at: int | None = None  # end this session at that iteration (saving last.pt); resume later
    syncbn: bool = True  # used only on GPU with more than one process
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class Config:
    output_dir: str = "runs/default"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value, tp, key: str):
    """Checks `value` against the annotation `tp`; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_type_name(item)}, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:  # written as a list; its length is for the dataclass to check
        items = typing.get_args(tp)
        item = items[0]
        if not isinstance(value, (list, tuple)) or any(a not in (item, Ellipsis) for a in items):
            raise ConfigError(f"{key}: expected a list of {_type_name(item)}, got {value!r}")
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _merge(obj, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            from .original_flags import explain_unknown_key

            known = ", ".join(hints)
            hint = explain_unknown_key(full)
            detail = f": {hint}" if hint else f" (known keys here: {known})"
            raise ConfigError(f"unknown config key {full!r}{detail}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, full + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def _read_yaml(path: Path, seen=()) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"config {path} includes itself through _base_")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("_base_", None)
    if base is None:
        return data
    merged = _read_yaml((path.parent / base).resolve(), seen + (path,))
    return _deep_update(merged, data)


def _deep_update(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Reads `path` (or the defaults), then applies dotted overrides such as
    ``train.max_iter=200`` or ``model.hanet=[0,0,0,0,0]``."""
    cfg = Config()
    if path is not None:
        _merge(cfg, _read_yaml(Path(path).resolve()))
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def apply_overrides(obj, overrides, defaults: dict | None = None):
    """Merges `defaults` (a nested dict), then each dotted ``key=value`` into the
    dataclass tree `obj`, type-checking every value."""
    if defaults:
        _merge(obj, defaults)
    for text in overrides:
        keys, value = parse_override(text)
        nested: object = value
        for k in reversed(keys):
            nested = {k: nested}
        _merge(obj, nested)  # type: ignore[arg-type]
    return obj


def validate(cfg: Config) -> None:
    t, d = cfg.train, cfg.data
    if t.amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"train.amp must be none, bf16 or fp16, got {t.amp!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, got {t.device!r}")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be {' or '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if t.warmup_iters < 0:
        raise ConfigError(f"train.warmup_iters must be >= 0, got {t.warmup_iters}")
    for key, v in (("train.max_iter", t.max_iter), ("train.val_every", t.val_every), ("train.log_every", t.log_every),
                   ("train.ckpt_every", t.ckpt_every), ("train.max_skipped_steps", t.max_skipped_steps),
                   ("data.batch_size", d.batch_size),
                   ("data.val_batch_size", d.val_batch_size), ("data.crop_size", d.crop_size)):
        if v < 1:
            raise ConfigError(f"{key} must be >= 1, got {v}")
    if not 0.0 <= d.class_uniform_pct <= 1.0:
        raise ConfigError(f"data.class_uniform_pct must be in [0, 1], got {d.class_uniform_pct}")
    if not 0 < d.scale_min <= d.scale_max:
        raise ConfigError(f"data.scale_min/scale_max must satisfy 0 < min <= max, got {d.scale_min}, {d.scale_max}")
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {d.num_workers}")
    from .config_checks import validate_original_semantics

    validate_original_semantics(cfg)
