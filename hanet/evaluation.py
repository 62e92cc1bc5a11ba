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

from hanet.inference import InferenceConfig, predict_probs
from hanet.metrics import ConfusionMatrix, SegMetrics


@dataclass
class EvalData:
    dataset: str = "cityscapes"
    root: str = "data/cityscapes"
    split: str = "val"
    classes_file: str | None = None
    max_images: int | None = None
    skip_corrupt: bool = False  # drop unreadable files (counted, logged) instead of failing


@dataclass
class EvalInfer:
    mode: str = "whole"
    crop_size: list[int] = field(default_factory=lambda: [1024, 1024])
    overlap: float = 1 / 3
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    crop_batch: int = 4
    amp: str = "none"
    channels_last: bool = False

    def to_inference(self) -> InferenceConfig:
        return InferenceConfig(mode=self.mode, crop_size=tuple(self.crop_size), overlap=self.overlap,
                               scales=list(self.scales), flip=self.flip, crop_batch=self.crop_batch, amp=self.amp,
                               channels_last=self.channels_last)


@dataclass
class EvalConfig:
    device: str = "auto"
    backend: str | None = None
    data: EvalData = field(default_factory=EvalData)
    infer: EvalInfer = field(default_factory=EvalInfer)


def load_eval_config(overrides: list[str], defaults: dict | None = None) -> EvalConfig:
    """EvalConfig from dotted key=value overrides (unknown keys and wrong types are errors)."""
    from hanet.training.config import apply_overrides

    cfg = apply_overrides(EvalConfig(), overrides, defaults)
    cfg.infer.to_inference()  # validates
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model_for_inference(checkpoint: str, cfg: EvalConfig):
    """The model of `checkpoint` (ours, a training checkpoint, or an official file), in eval mode."""
    from hanet.models import load

    overrides = {"backend": cfg.backend} if cfg.backend else {}
    model = load(checkpoint, **overrides)
    return model.to(pick_device(cfg.device)).eval()


def training_defaults(checkpoint: str) -> dict:
    """Data settings of the run that wrote a training checkpoint (used as defaults)."""
    from hanet.models import safe_load

    ckpt = safe_load(checkpoint)
    data = ckpt.get("training")
    for key in ("config", "data"):  # a malformed training record gives no defaults, not a crash
        data = data.get(key) if isinstance(data, dict) else None
    data = data if isinstance(data, dict) else {}
    out = {}
    for k_src, k_dst in (("dataset", "dataset"), ("root", "root"), ("val_split", "split"),
                         ("classes_file", "classes_file")):
        if data.get(k_src) is not None:
            out[k_dst] = data[k_src]
    return {"data": out} if out else {}


def _dataset(cfg: EvalConfig, split: str):
    from hanet.data import build_dataset, eval_transforms

    kwargs = {"classes": cfg.data.classes_file} if cfg.data.dataset == "folder" else {}
    return build_dataset(cfg.data.dataset, cfg.data.root, split, transform=eval_transforms(),
                         skip_corrupt=cfg.data.skip_corrupt, **kwargs)


def _label_ids(dataset, pred: np.ndarray) -> np.ndarray:
    """Train ids -> the ids the dataset's files use (Cityscapes labelIds)."""
    from hanet.data import train_to_label_ids

    if dataset.classes.id_to_train is not None and len(dataset.classes.names) == 19:
        return train_to_label_ids(pred)
    return pred.astype(np.uint8)


def evaluate(model, cfg: EvalConfig, save_predictions: str | None = None, progress: bool = True,
             ctx=None) -> tuple[SegMetrics, list[str]]:
    """Confusion-matrix metrics of `model` on cfg.data.split; with `save_predictions`
    also writes `<name>_pred_labelIds.png` files.  Under torchrun (`ctx` with a
    process group) every rank evaluates a shard and the matrices are summed."""
    dataset = _dataset(cfg, cfg.data.split)
    device = next(model.parameters()).device
    names = list(dataset.classes.names)
    cm = ConfusionMatrix(len(names), dataset.classes.ignore_index, device=device)
    n = len(dataset) if cfg.data.max_images is None else min(len(dataset), cfg.data.max_images)
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    infer = cfg.infer.to_inference()
    indices = range(rank, n, world)
    if progress and rank == 0:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"eval {cfg.data.split}", total=len(range(rank, n, world)))
    written = []
    for i in indices:
        sample = dataset[i]
        image = sample["image"][None].to(device)
        probs = predict_probs(model, image, sample["pos_h"][None].to(device), infer)
        pred = probs.argmax(1)[0]
        cm.update(pred, sample["label"].to(device))
        if out_dir is not None:
            path = out_dir / f"{sample['name']}_pred_labelIds.png"
            Image.fromarray(_label_ids(dataset, pred.cpu().numpy())).save(path)
            written.append(str(path))
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
    for i in tqdm(range(n), desc=f"submit {cfg.data.split}"):
        sample = dataset[i]
        probs = predict_probs(model, sample["image"][None].to(device), sample["pos_h"][None].to(device), infer)
        name = sample["name"]
        city = name.split("_")[0]
        path = out_dir / city / f"{name}_pred_labelIds.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_label_ids(dataset, probs.argmax(1)[0].cpu().numpy())).save(path)
        files.append(path)
    archive = out_dir / "submission.zip"
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.relative_to(out_dir))
    tmp.replace(archive)
    return archive


def write_json(path: str, metrics: SegMetrics, names: list[str], extra: dict | None = None) -> None:
    record = {"miou": metrics.miou, "pixel_acc": metrics.pixel_acc, "fw_iou": metrics.fw_iou,
              "per_class": metrics.per_class(names), **(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1))
