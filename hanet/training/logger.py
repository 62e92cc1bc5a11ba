"""Run logging on rank 0: a log file, TensorBoard, metrics.jsonl and a progress bar."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


class RunLogger:
    """Only the main rank writes; other ranks get a logger that drops everything
    but warnings (which are printed with their rank)."""

    def __init__(self, output_dir: Path, is_main: bool, rank: int = 0, tensorboard: bool = True):
        self.is_main = is_main
        self.output_dir = output_dir
        self.log = logging.getLogger(f"hanet.train.rank{rank}")
        self.log.handlers.clear()
        self.log.propagate = False
        fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(message)s", "%H:%M:%S")
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        self.log.addHandler(console)
        self.log.setLevel(logging.INFO if is_main else logging.WARNING)
        self.tb = None
        if is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(output_dir / "train.log")
            fh.setFormatter(fmt)
            self.log.addHandler(fh)
            if tensorboard:
                from hanet.tensorboard import summary_writer

                self.tb = summary_writer(output_dir / "tb")

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def warning(self, msg: str) -> None:
        self.log.warning(msg)

    def scalars(self, step: int, values: dict) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def image(self, tag: str, step: int, image_hwc) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, image_hwc, step, dataformats="HWC")

    def metrics_line(self, record: dict) -> None:
        if self.is_main:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        for h in list(self.log.handlers):
            h.close()
            self.log.removeHandler(h)
