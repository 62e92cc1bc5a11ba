"""Command-line front of training (used by `hanet train` and train/train.py)."""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config


def build_parser(prog: str = "hanet train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train DeepLabV3+ (HANet) with the original recipe. CONFIG is a YAML file (see train/configs/); "
                    "any value can be overridden as a dotted key=value, e.g. train.max_iter=200 data.root=data/cs "
                    "model.hanet=[0,0,0,0,0] output_dir=runs/x train.resume=true.")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of config values")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def main(argv=None, distributed: bool = False) -> int:
    args = build_parser("train/train.py" if distributed else "hanet train").parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from hanet.checkpoints import CheckpointError

    from .distributed import cleanup, init_distributed
    from .trainer import CheckpointWriteError, NonFiniteLossError, Trainer

    # train/train.py joins the torchrun group when torchrun launched it; `hanet train` never does.
    ctx = init_distributed(cfg.train.device, use_process_group=None if distributed else False)
    trainer = None
    try:
        trainer = Trainer(cfg, ctx)
        trainer.fit()
    except (NonFiniteLossError, CheckpointWriteError, CheckpointError) as exc:
        # Failures with a complete explanation: one line, no traceback, exit status 1.
        prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
        print(f"{prefix}error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if trainer is not None:
            trainer.close()
        cleanup(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
