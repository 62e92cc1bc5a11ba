"""The training loop: the original HANet recipe, on one process or under torchrun."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from hanet.metrics import ConfusionMatrix
from hanet.checkpoints import CheckpointError, TrainingState, atomic_save, load_matching, safe_load
from hanet.checkpoints.schema import TRAINING_KEYS  # noqa: F401 (its old home was here)
from hanet.checkpoints.weights import model_state_dict, strict_load_state_dict
from hanet.models import DeepLabV3Plus, load_pretrained_trunk

from . import rng
from .config import Config
from .data import build_train_set, build_val_set, collate
from .distributed import DistContext, all_gather_objects, any_rank, barrier
from .logger import RunLogger
from .losses import SegLoss
from .optim import build_optimizer, build_scheduler
from .sampler import ResumableSampler, SeededSamples


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf: the run stops, its last good checkpoint stays."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, quota, I/O error); the previous one is intact."""



class Trainer:
    def __init__(self, cfg: Config, ctx: DistContext):
        self.cfg, self.ctx = cfg, ctx
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.log = RunLogger(self.out, ctx.is_main, ctx.rank)
        self.device = ctx.device
        rng.seed_all(cfg.train.seed)

        self.train_set, self.classes = build_train_set(cfg)
        self.val_set = build_val_set(cfg)
        m = cfg.model
        if m.num_classes != len(self.classes.names):
            raise ValueError(f"model.num_classes={m.num_classes} but the dataset has {len(self.classes.names)} classes")
        model = DeepLabV3Plus(m.model_config())
        if m.pretrained:
            load_pretrained_trunk(model, m.pretrained)
        if m.init_from:
            self.log.info(f"init_from: {load_matching(model, m.init_from)}")  # loaded n of m; skipped ones by name
        self.model = model.to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if ctx.initialized:
            if self.device.type == "cuda" and ctx.world_size > 1 and cfg.train.syncbn:
                self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
                self.model = self.net
            self.net = DDP(self.net, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train.max_iter, cfg.train.warmup_iters)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.train.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        t = cfg.train
        self.loss = SegLoss(m.num_classes, t.cls_wt_loss, t.aux_weight, img_wt_loss=t.img_wt_loss,
                            wt_bound=t.wt_bound, batch_weighting=t.batch_weighting).to(self.device)
        if t.freeze_trunk:
            self.log.warning("train.freeze_trunk=true has no effect: the original's --freeze_trunk only adds 'ft' "
                             "to its run name; nothing is frozen")
        self.sampler = ResumableSampler(len(self.train_set), ctx.rank, ctx.world_size, cfg.train.seed)
        self.iters_per_epoch = len(self.sampler) // cfg.data.batch_size
        if self.iters_per_epoch < 1:
            raise ValueError(f"the training set ({len(self.train_set)} images over {ctx.world_size} processes) is "
                             f"smaller than one batch of data.batch_size={cfg.data.batch_size}")
        self.iteration = 0
        self.best_miou = float("-inf")
        self.stop_requested = False
        self.skipped_in_a_row = 0
        if ctx.is_main:
            self._remove_stale_temporaries()
        barrier(ctx)
        if cfg.train.resume:
            self.resume()

    # ---- checkpoints (their layout: hanet.checkpoints.schema) ---------------------
    def _payload(self) -> dict:
        rng_states = all_gather_objects(self.ctx, rng.capture())  # every rank's RNG state
        return TrainingState(
            model_config=self.model.config, state_dict=model_state_dict(self.model), iteration=self.iteration,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), rng=rng_states, world_size=self.ctx.world_size,
            best_miou=self.best_miou, config=self.cfg.to_dict(),
        ).to_payload()

    def save(self, best: bool = False) -> None:
        payload = self._payload()
        failure = None
        if self.ctx.is_main:
            for name in ("last.pt",) + (("best.pt",) if best else ()):
                path = self.ckpt_dir / name
                try:
                    atomic_save(payload, path)
                except OSError as exc:
                    # atomic_save removed its temporary file; `path` is as it was.
                    failure = (f"could not write checkpoint {path} at iteration {self.iteration}: "
                               f"{exc.strerror or exc}. {self._describe_previous(path)}")
                    self.log.warning(failure)
                    break
        # Every rank learns of the failure, so that none waits for a peer that has stopped.
        if any_rank(self.ctx, failure is not None):
            raise CheckpointWriteError(failure or "rank 0 could not write a checkpoint (see its log); the previous "
                                                  "checkpoint is intact")
        barrier(self.ctx)

    @staticmethod
    def _describe_previous(path: Path) -> str:
        if not path.exists():
            return "No earlier checkpoint existed there."
        try:
            it = safe_load(path).get("training", {}).get("iteration", "?")
        except (CheckpointError, OSError) as exc:  # should not happen: writes are atomic
            return f"The earlier {path.name} cannot be read either: {exc}"
        return f"The previous {path.name} (iteration {it}) is intact; free space and resume with train.resume=true."

    def _remove_stale_temporaries(self) -> None:
        """Half-written checkpoint files of a run killed while saving (never read, only removed)."""
        if not self.ckpt_dir.is_dir():
            return
        for tmp in sorted(self.ckpt_dir.glob(".*.pt.*.tmp")):
            self.log.warning(f"removing {tmp.name}: a checkpoint write interrupted by an earlier crash "
                             f"(the complete checkpoints beside it are unaffected)")
            tmp.unlink(missing_ok=True)

    def resume(self) -> None:
        path = self.ckpt_dir / "last.pt"
        if not path.exists():
            self.log.info(f"train.resume=true but {path} does not exist yet: starting from iteration 0")
            return
        state = TrainingState.from_payload(safe_load(path), str(path))
        saved = state.model_config
        if saved != self.model.config:
            diff = {k: (v, getattr(self.model.config, k)) for k, v in saved.to_dict().items()
                    if getattr(self.model.config, k) != v}
            raise CheckpointError(f"{path} was written for another model configuration: {diff} (checkpoint vs config)")
        strict_load_state_dict(self.model, state.state_dict, str(path))
        # AdamW's groups carry betas, SGD's momentum: loading one into the other would
        # succeed and then fail (or step wrongly) mid-run.
        groups = state.optimizer.get("param_groups") if isinstance(state.optimizer, dict) else None
        if groups and isinstance(groups[0], dict):
            saved_kind = "adamw" if "betas" in groups[0] else "sgd"
            if saved_kind != self.cfg.train.optimizer:
                raise CheckpointError(
                    f"{path} was written by a run with train.optimizer={saved_kind}, this config says "
                    f"train.optimizer={self.cfg.train.optimizer}: resume with the same optimizer, or start a new "
                    f"output_dir (model.init_from={path} starts from its weights)")
        try:
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
            self.scaler.load_state_dict(state.scaler)
            self.iteration = state.iteration
            self.best_miou = state.best_miou
            world_size = state.world_size
            if world_size == self.ctx.world_size:
                rng.restore(state.rng[self.ctx.rank])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: malformed training state ({type(exc).__name__}: {exc})") from None
        if not 0 <= self.iteration <= self.cfg.train.max_iter:
            raise CheckpointError(f"{path}: iteration {self.iteration} is outside [0, train.max_iter="
                                  f"{self.cfg.train.max_iter}]")
        if world_size != self.ctx.world_size:
            self.log.warning(f"{path} was written by {world_size} processes, resuming with "
                             f"{self.ctx.world_size}: random streams restart (the run is not bit-identical)")
        self.log.info(f"resumed from {path} at iteration {self.iteration}")

    # ---- training --------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start_batch * self.cfg.data.batch_size)
        if hasattr(self.train_set, "build_epoch"):
            self.train_set.build_epoch(epoch)
        workers = self.cfg.data.num_workers
        return DataLoader(SeededSamples(self.train_set, self.cfg.train.seed), batch_size=self.cfg.data.batch_size,
                          sampler=self.sampler, drop_last=True, num_workers=workers, collate_fn=collate,
                          pin_memory=self.device.type == "cuda", persistent_workers=False,
                          # Its own generator: creating a loader must not draw from the global
                          # RNG, or a resumed run's dropout stream would differ.
                          generator=torch.Generator().manual_seed(self.cfg.train.seed * 7919 + epoch),
                          multiprocessing_context="fork" if workers > 0 else None)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _step(self, batch) -> dict:
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        # --no_pos_dataset: the original's loader yields no positions and the model gets none.
        pos = None if self.cfg.data.no_pos_dataset else batch["pos_h"].to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.net(images, pos_h=pos)
        logits, aux = out.logits, out.aux_logits  # aux: None in eval mode or without the aux head
        loss, main, aux_loss = self.loss(logits, labels, aux)
        # Every rank decides alike (DDP would hang if one rank stopped alone).
        if any_rank(self.ctx, not bool(torch.isfinite(loss))):
            self.skipped_in_a_row += 1
            last = self.ckpt_dir / "last.pt"
            kept = (f"The last good checkpoint is {last}" if last.exists() else
                    "No checkpoint was written yet")
            if self.cfg.train.amp != "fp16":
                raise NonFiniteLossError(
                    f"the loss became {loss.item()} at iteration {self.iteration}; stopping. {kept} "
                    f"(lower train.lr, or use train.grad_clip).")
            if self.skipped_in_a_row >= self.cfg.train.max_skipped_steps:
                raise NonFiniteLossError(
                    f"the loss was non-finite for {self.skipped_in_a_row} steps in a row (last at iteration "
                    f"{self.iteration}); stopping. {kept} (lower train.lr).")
            self.log.warning(f"non-finite loss ({loss.item()}) at iteration {self.iteration}: the grad scaler skips "
                             f"this step ({self.skipped_in_a_row} in a row)")
        else:
            self.skipped_in_a_row = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": loss.item(), "loss_main": main.item(), **({"loss_aux": aux_loss.item()} if aux is not None else {})}

    def _on_sigterm(self, signum, frame):
        self.stop_requested = True

    def fit(self) -> dict | None:
        cfg = self.cfg
        prev = signal.signal(signal.SIGTERM, self._on_sigterm)
        bar = None
        if self.ctx.is_main:
            from tqdm import tqdm

            import sys

            # A redrawn bar on a terminal; an occasional line in a log file.
            bar = tqdm(total=cfg.train.max_iter, initial=self.iteration, desc="train", dynamic_ncols=True,
                       mininterval=2.0 if sys.stdout.isatty() else 30.0, file=sys.stdout)
        last_metrics = None
        self.log.info(f"training {cfg.model.arch} (hanet={cfg.model.hanet}) for {cfg.train.max_iter} iterations on "
                      f"{self.ctx.world_size} process(es), device {self.device}, {len(self.train_set)} training images")
        try:
            self.net.train()
            while self.iteration < cfg.train.max_iter:
                epoch, start = divmod(self.iteration, self.iters_per_epoch)
                for batch in self._loader(epoch, start):
                    t0 = time.perf_counter()
                    stats = self._step(batch)
                    self.iteration += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{stats['loss']:.3f}", refresh=False)
                    if self.iteration % cfg.train.log_every == 0:
                        lrs = {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups}
                        self.log.scalars(self.iteration, {f"train/{k}": v for k, v in stats.items()} | lrs |
                                         {"train/step_s": time.perf_counter() - t0})
                    is_last = self.iteration >= cfg.train.max_iter
                    best = False
                    if self.iteration % cfg.train.val_every == 0 or is_last:
                        last_metrics = self.validate()
                        if last_metrics["miou"] > self.best_miou:
                            self.best_miou, best = last_metrics["miou"], True
                        self.net.train()
                    stop = any_rank(self.ctx, self.stop_requested) or self.iteration == cfg.train.stop_at
                    if best or stop or is_last or self.iteration % cfg.train.ckpt_every == 0:
                        self.save(best=best)
                    if stop:
                        why = "SIGTERM" if self.stop_requested else f"train.stop_at={cfg.train.stop_at}"
                        self.log.info(f"{why}: saved {self.ckpt_dir / 'last.pt'} at iteration {self.iteration}; "
                                      f"continue with train.resume=true")
                        return last_metrics
                    if is_last:
                        break
        finally:
            signal.signal(signal.SIGTERM, prev)
            if bar is not None:
                bar.close()
        self.log.info(f"done: {self.iteration} iterations; best val mIoU {100 * self.best_miou:.2f}")
        return last_metrics

    # ---- validation --------------------------------------------------------------
    @torch.inference_mode()
    def validate(self) -> dict:
        model = self.model.eval()
        cm = ConfusionMatrix(len(self.classes.names), device=self.device)
        n = len(self.val_set)
        if self.cfg.data.max_val_images:
            n = min(n, self.cfg.data.max_val_images)
        shard = list(range(self.ctx.rank, n, self.ctx.world_size))
        loader = DataLoader(torch.utils.data.Subset(self.val_set, shard), batch_size=self.cfg.data.val_batch_size,
                            num_workers=min(self.cfg.data.num_workers, 2), collate_fn=collate)
        first = None
        for batch in loader:
            images = batch["image"].to(self.device)
            with self._autocast():
                out = model(images, pos_h=batch["pos_h"].to(self.device), return_attention=True)
            pred, attentions = out.logits.argmax(1), out.attention
            cm.update(pred, batch["label"].to(self.device))
            if first is None:
                first = (batch["image"][0], pred[0].cpu(), [a[0].float().cpu() for a in attentions])
        cm.all_reduce()
        metrics = cm.compute()
        record = {"iter": self.iteration, "miou": metrics.miou, "pixel_acc": metrics.pixel_acc,
                  "per_class": metrics.per_class(self.classes.names)}
        if self.ctx.is_main:
            self.log.info(f"validation at iteration {self.iteration} ({n} images):\n" + metrics.table(self.classes.names))
            self.log.metrics_line(record)
            self.log.scalars(self.iteration, {"val/miou": metrics.miou, "val/pixel_acc": metrics.pixel_acc} |
                             {f"val_iou/{k}": (0.0 if math.isnan(v) else v) for k, v in record["per_class"].items()})
            if first is not None:
                self._log_images(*first)
        return record

    def _log_images(self, image, pred, attentions) -> None:
        from hanet.vis import attention_heatmap, colorize, denormalize, overlay

        rgb = denormalize(image)
        self.log.image("val/prediction", self.iteration, overlay(rgb, colorize(pred, self.classes.palette)))
        for i, att in enumerate(attentions):
            self.log.image(f"val/attention_site{i}", self.iteration, attention_heatmap(att, height=rgb.shape[0]))

    def close(self) -> None:
        self.log.close()
