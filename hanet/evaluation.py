"""Evaluation of a checkpoint on a labelled split, Cityscapes submission files, and
predictions with attention pictures for a folder of images."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hanet.inference import InferenceConfig
from hanet.metrics import SegMetrics, band_line


@dataclass
class EvalData:
    dataset: str = "cityscapes"
    root: str = "data/cityscapes"
    split: str = "val"
    classes_file: str | None = None
    max_images: int | None = None
    skip_corrupt: bool = False  # drop unreadable files (counted, logged) instead of failing
    cv_split: int = 0  # the original's --cv_split: Cityscapes/GTAV/KITTI cross-validation split 0-2
    # Shard `split_index` of `split_count` contiguous shards (the original's --split_index/--split_count).
    split_index: int = 0
    split_count: int = 1


# The `infer:` section is the library's InferenceConfig itself (EvalInfer: its old name here).
EvalInfer = InferenceConfig


@dataclass
class EvalModel:
    """The network flags of an official eval script.  The original builds the network
    from these flags and loads the checkpoint's tensors into it: ``arch`` may change the
    output stride (eval_resnext_os4 evaluates OS8-trained weights at OS4); the HANet
    flags must match the checkpoint (the original would silently load a different
    network; we refuse and name the flag)."""
    arch: str | None = None
    hanet: list[int] | None = None
    hanet_set: list[int] | None = None
    hanet_pos: list[int] | None = None
    pos_rfactor: int | None = None


@dataclass
class EvalConfig:
    device: str = "auto"
    backend: str | None = None
    model: EvalModel = field(default_factory=EvalModel)
    data: EvalData = field(default_factory=EvalData)
    infer: InferenceConfig = field(default_factory=InferenceConfig)


def load_eval_config(overrides: list[str], defaults: dict | None = None, path: str | None = None) -> EvalConfig:
    """EvalConfig from `defaults` (a nested dict), then the YAML file `path` (e.g.
    train/configs/eval_r101_os8.yaml), then dotted key=value overrides (unknown keys and
    wrong types are errors)."""
    from hanet.training.config import _deep_update, _read_yaml, apply_overrides

    if path is not None:
        defaults = _deep_update(defaults or {}, _read_yaml(Path(path).resolve()))
    cfg = apply_overrides(EvalConfig(), overrides, defaults)
    cfg.infer = cfg.infer.to_inference()  # checked (the keys were set one by one)
    d = cfg.data
    if d.split_count < 1 or not 0 <= d.split_index < d.split_count:
        raise ValueError(f"data.split_index must be in [0, data.split_count) and split_count >= 1, got "
                         f"{d.split_index} of {d.split_count}")
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model_for_inference(checkpoint: str, cfg: EvalConfig):
    """The model of `checkpoint` (ours, a training checkpoint, or an official file), in eval mode."""
    from hanet.checkpoints import load

    overrides = {"backend": cfg.backend} if cfg.backend else {}
    model = load(checkpoint, **overrides)
    model = _apply_eval_model_flags(model, cfg.model, checkpoint)
    return model.to(pick_device(cfg.device)).eval()


def _apply_eval_model_flags(model, flags: EvalModel, checkpoint: str):
    from hanet.models import DeepLabV3Plus, ModelConfig
    from hanet.models.registry import parse_arch

    c = model.config
    for key in ("hanet", "hanet_set", "hanet_pos", "pos_rfactor"):
        want = getattr(flags, key)
        if want is not None and want != getattr(c, key):
            raise ValueError(f"model.{key}={want} (the eval script's --{key}) does not match {checkpoint}, "
                             f"which was trained with {key}={getattr(c, key)}")
    if flags.arch is None:
        return model
    trunk, stride = parse_arch(flags.arch)
    if trunk != c.trunk:
        raise ValueError(f"model.arch={flags.arch} (trunk {trunk}) does not match {checkpoint} (trunk {c.trunk})")
    if stride == c.output_stride:
        return model
    # Same weights, other dilations: the original's eval at another output stride.
    other = DeepLabV3Plus(ModelConfig.from_dict({**c.to_dict(), "output_stride": stride}))
    other.load_state_dict(model.state_dict())
    return other


def training_defaults(checkpoint: str) -> dict:
    """Data settings of the run that wrote a training checkpoint (used as defaults)."""
    from hanet.checkpoints import safe_load

    ckpt = safe_load(checkpoint)
    data = ckpt.get("training")
    for key in ("config", "data"):  # a malformed training record gives no defaults, not a crash
        data = data.get(key) if isinstance(data, dict) else None
    data = data if isinstance(data, dict) else {}
    out = {}
    for k_src, k_dst in (("dataset", "dataset"), ("root", "root"), ("val_split", "split"),
                         ("classes_file", "classes_file"), ("cv_split", "cv_split")):
        if data.get(k_src) is not None:
            out[k_dst] = data[k_src]
    return {"data": out} if out else {}


def _dataset(cfg: EvalConfig, split: str):
    from hanet.data import build_dataset, eval_transforms

    kwargs = {"classes": cfg.data.classes_file} if cfg.data.dataset == "folder" else {}
    return build_dataset(cfg.data.dataset, cfg.data.root, split, transform=eval_transforms(),
                         skip_corrupt=cfg.data.skip_corrupt, cv_split=cfg.data.cv_split, **kwargs)


def _label_ids(dataset, pred: np.ndarray) -> np.ndarray:
    """Train ids -> the ids the dataset's files use (Cityscapes labelIds)."""
    from hanet.data import train_to_label_ids

    if dataset.classes.id_to_train is not None and len(dataset.classes.names) == 19:
        return train_to_label_ids(pred)
    return pred.astype(np.uint8)


def shard(n: int, index: int, count: int) -> range:
    """Images [index * n // count, (index + 1) * n // count): shard `index` of `count`."""
    return range(index * n // count, (index + 1) * n // count)


def predict_sample(model, dataset, i: int, infer: InferenceConfig, device) -> tuple[dict, torch.Tensor]:
    """Sample `i` (its label as train ids, its name and path) and the (H, W) prediction,
    under the standard protocol or the original eval.py's, through :class:`hanet.Segmenter`
    (the one inference path of eval, submit and predict)."""
    from hanet.segmenter import Segmenter

    segmenter = Segmenter(model, config=infer, classes=dataset.classes)
    if infer.protocol == "original":
        pair = dataset.pairs[i]
        raw = dataset.load(i)
        pred = segmenter(raw["image"], return_attention=False).labels
        sample = {"label": raw["label"].long(), "name": pair.name, "path": str(pair.image), "image": raw["image"]}
        return sample, torch.from_numpy(pred)
    sample = dataset[i]
    out = segmenter.predict_batch(sample["image"][None].to(device), sample["pos_h"][None].to(device),
                                  return_attention=False)
    return sample, out["labels"][0]


def evaluate(model, cfg: EvalConfig, save_predictions: str | None = None, progress: bool = True,
             ctx=None, dump_images: str | None = None) -> tuple[SegMetrics, list[str]]:
    """Confusion-matrix metrics of `model` on cfg.data.split, for the whole frame and its
    four height bands (``metrics.bands``); with `save_predictions` also writes
    `<name>_pred_labelIds.png` files, with `dump_images` the original's rgb/pred/diff/compose
    pictures.  Under torchrun (`ctx` with a process group) every rank evaluates a part
    of the shard and the matrices are summed."""
    from hanet.eval_images import dump_images as write_pictures
    from hanet.metrics import BandedConfusion

    dataset = _dataset(cfg, cfg.data.split)
    device = next(model.parameters()).device
    names = list(dataset.classes.names)
    cm = BandedConfusion(len(names), dataset.classes.ignore_index, device=device)
    n = len(dataset) if cfg.data.max_images is None else min(len(dataset), cfg.data.max_images)
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    infer = cfg.infer.to_inference()
    indices = shard(n, cfg.data.split_index, cfg.data.split_count)[rank::world]
    if progress and rank == 0:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"eval {cfg.data.split}")
    written = []
    for i in indices:
        sample, pred = predict_sample(model, dataset, i, infer, device)
        cm.update(pred.to(device), sample["label"].to(device))
        if progress and rank == 0 and world == 1:
            indices.set_postfix_str(band_line(cm.compute()).split(": ")[1], refresh=False)
        pred_np = pred.cpu().numpy()
        if out_dir is not None:
            path = out_dir / f"{sample['name']}_pred_labelIds.png"
            Image.fromarray(_label_ids(dataset, pred_np)).save(path)
            written.append(str(path))
        if dump_images is not None:
            image = sample["image"] if infer.protocol == "original" else dataset.load(i)["image"]
            written += [str(p) for p in write_pictures(
                dump_images, Path(sample["path"]).stem, image, pred_np, sample["label"].cpu().numpy(),
                dataset.classes.palette, _label_ids(dataset, pred_np), dataset.classes.ignore_index)]
    cm.all_reduce()
    return cm.compute(), written


def submit(model, cfg: EvalConfig, out: str) -> Path:
    """Cityscapes benchmark files for cfg.data.split (default test): one labelIds PNG per
    image, `<out>/<city>/<city>_<seq>_<frame>*.png`, and `<out>/submission.zip`."""
    from tqdm import tqdm

    dataset = _dataset(cfg, cfg.data.split)
    device = next(model.parameters()).device
    infer = cfg.infer.to_inference()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    n = len(dataset) if cfg.data.max_images is None else min(len(dataset), cfg.data.max_images)
    for i in tqdm(shard(n, cfg.data.split_index, cfg.data.split_count), desc=f"submit {cfg.data.split}"):
        sample, pred = predict_sample(model, dataset, i, infer, device)
        name = sample["name"]
        city = name.split("_")[0]
        path = out_dir / city / f"{name}_pred_labelIds.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_label_ids(dataset, pred.cpu().numpy())).save(path)
        files.append(path)
    archive = out_dir / "submission.zip"
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.relative_to(out_dir))
    tmp.replace(archive)
    return archive


def _record(metrics: SegMetrics, names: list[str]) -> dict:
    return {"miou": metrics.miou, "pixel_acc": metrics.pixel_acc, "fw_iou": metrics.fw_iou,
            "per_class": metrics.per_class(names)}


def write_json(path: str, metrics: SegMetrics, names: list[str], extra: dict | None = None) -> None:
    record = {**_record(metrics, names),
              "bands": {name: _record(m, names) for name, m in metrics.bands.items()}, **(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1))


def write_tensorboard(log_dir: str, metrics: SegMetrics, step: int = 0) -> None:
    """mIoU, pixel accuracy and the per-band mIoU as TensorBoard scalars (``eval/...``)."""
    from hanet.tensorboard import summary_writer

    with summary_writer(log_dir) as writer:
        writer.add_scalar("eval/miou", metrics.miou, step)
        writer.add_scalar("eval/pixel_acc", metrics.pixel_acc, step)
        for name, band in metrics.bands.items():
            writer.add_scalar(f"eval/miou_{name}", band.miou, step)
