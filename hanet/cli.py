"""The `hanet` command line (also `python -m hanet`)."""
from __future__ import annotations

import argparse
import sys


def _convert_official(args) -> int:
    from hanet.checkpoints import convert_official

    model = convert_official(args.src, args.dst)
    c = model.config
    print(f"wrote {args.dst}: {c.trunk} OS{c.output_stride}, {c.num_classes} classes, hanet={c.hanet}, "
          f"hanet_set={c.hanet_set}, hanet_pos={c.hanet_pos}, pos_rfactor={c.pos_rfactor}")
    return 0


def _bench(args) -> int:
    from hanet.bench.__main__ import main as bench_main

    return bench_main([args.what] + args.rest)


def _train(args) -> int:
    from hanet.training.run import main as train_main

    return train_main(args.rest)


def _make_synthetic(args) -> int:
    from hanet.synthetic import make_synthetic_cityscapes

    h, w = _parse_size(args.size)
    out = make_synthetic_cityscapes(args.out, train=args.train, val=args.val, test=args.test, size=(h, w),
                                    seed=args.seed)
    print(f"wrote {args.train} train, {args.val} val, {args.test} test scenes ({h}x{w}) to {out}")
    return 0


def _eval_setup(args):
    from hanet.evaluation import load_eval_config, load_model_for_inference, training_defaults

    cfg = load_eval_config(args.overrides, training_defaults(args.checkpoint), getattr(args, "config", None))
    return cfg, load_model_for_inference(args.checkpoint, cfg)


def _eval(args) -> int:
    from hanet.evaluation import evaluate, write_json, write_tensorboard
    from hanet.metrics import band_line
    from hanet.training.distributed import cleanup, init_distributed, launched_by_torchrun

    cfg, model = _eval_setup(args)
    # Under torchrun every process evaluates a shard; the confusion matrices are summed.
    ctx = init_distributed(cfg.device, use_process_group=True) if launched_by_torchrun() else None
    try:
        metrics, written = evaluate(model.to(ctx.device) if ctx else model, cfg,
                                    save_predictions=args.save_predictions, ctx=ctx,
                                    dump_images=args.dump_images)
    finally:
        if ctx is not None:
            cleanup(ctx)
    if ctx is not None and ctx.rank != 0:
        return 0
    names = list(_class_table(cfg, model).names)
    print(metrics.table(names))
    print(band_line(metrics))
    if args.dump_images:
        print(f"wrote rgb/, pred/, diff/ and compose/ pictures to {args.dump_images}")
    if args.tensorboard:
        write_tensorboard(args.tensorboard, metrics)
        print(f"wrote TensorBoard scalars to {args.tensorboard}")
    if args.save_predictions:
        from pathlib import Path

        count = len(list(Path(args.save_predictions).glob("*_pred_labelIds.png")))  # every rank's files
        print(f"{count} prediction files in {args.save_predictions}")
    if args.json:
        write_json(args.json, metrics, names, {"checkpoint": args.checkpoint, "split": cfg.data.split,
                                               "protocol": cfg.infer.protocol, "mode": cfg.infer.mode,
                                               "scales": cfg.infer.scales, "flip": cfg.infer.flip})
        print(f"wrote {args.json}")
    return 0


def _class_table(cfg, model):
    from hanet.data import CITYSCAPES, ClassTable, load_class_table
    from hanet.data.labels import default_palette

    if cfg.data.classes_file:
        return load_class_table(cfg.data.classes_file)
    if model.config.num_classes == len(CITYSCAPES.names):
        return CITYSCAPES
    n = model.config.num_classes
    return ClassTable(names=tuple(f"class_{i}" for i in range(n)), palette=default_palette(n))


def _submit(args) -> int:
    from hanet.evaluation import submit

    args.overrides = [f"data.split={args.split}"] + args.overrides
    cfg, model = _eval_setup(args)
    archive = submit(model, cfg, args.out)
    print(f"wrote the benchmark files to {args.out} and {archive}")
    return 0


def _predict(args) -> int:
    from hanet.predict import predict_folder

    cfg, model = _eval_setup(args)
    index = predict_folder(model, args.inputs, args.out, _class_table(cfg, model), cfg.infer.to_inference(),
                           skip_corrupt=cfg.data.skip_corrupt)
    print(f"wrote pictures and {index}")
    return 0


def _export(args) -> int:
    from hanet.export import check, export_checkpoint, fused_ops_available

    out, model = export_checkpoint(args.checkpoint, args.format, args.out, _parse_size(args.size), args.backend)
    h, w = ("H", "W") if args.format == "exported-program" or fused_ops_available() else _parse_size(args.size)
    print(f"wrote {out} ({args.format}; input 'images' (batch, 3, {h}, {w}), output 'logits')")
    if args.check:
        diff = check(model, out, args.format, _parse_size(args.size))
        print(f"max abs difference of the logits from PyTorch's: {diff:.3g}")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like HxW, e.g. 256x512, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hanet", description="HANet: height-driven attention networks for urban-scene segmentation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert-official", help="convert an official HANet checkpoint to hanet's format",
                       description="Reads an official HANet checkpoint (architecture from its 'command' flags, "
                                   "weights loaded strictly, never executing code) and writes it in hanet's own "
                                   "format (weights + full model configuration), loadable with hanet.models.load.")
    c.add_argument("src", help="official checkpoint (.pth)")
    c.add_argument("dst", help="output file")
    c.set_defaults(func=_convert_official)

    overrides_help = ("dotted overrides: data.root=DIR data.split=val data.dataset=cityscapes|bdd100k|mapillary|gtav|camvid|kitti|folder "
                      "data.cv_split=0|1|2 data.max_images=N data.skip_corrupt=true data.split_index=I data.split_count=N "
                      "device=cpu|cuda backend=cpu|cuda|triton|reference "
                      "infer.protocol=standard|original infer.fixed_aspp_pool=true infer.mode=whole|sliding "
                      "infer.crop_size=[1024,1024] infer.overlap=0.333 infer.scales=[0.5,1.0,2.0] infer.flip=true "
                      "infer.amp=none|bf16|fp16")
    e = sub.add_parser("eval", help="evaluate a checkpoint on a labelled split (per-class IoU, mIoU)",
                       description="Evaluates a checkpoint (hanet's, a training checkpoint, or an official HANet "
                                   "file) on a labelled split: prints the per-class IoU table. A training "
                                   "checkpoint's data settings are the defaults.")
    e.add_argument("checkpoint")
    e.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)
    e.add_argument("--config", metavar="YAML", help="an eval config, e.g. train/configs/eval_r101_os8.yaml "
                                                    "(the official scripts/eval_r101_os8.sh); overrides win")
    e.add_argument("--json", metavar="PATH", help="write miou, per_class, pixel_acc and the height bands as JSON")
    e.add_argument("--dump-images", metavar="DIR",
                   help="write the original's pictures: rgb/<stem>_color.png, compose/<stem>_compose.png, "
                        "diff/<stem>_diff.png and pred/<stem>.png (labelIds)")
    e.add_argument("--tensorboard", metavar="DIR", help="write mIoU, pixel accuracy and band mIoU as TensorBoard scalars")
    e.add_argument("--save-predictions", metavar="DIR",
                   help="write Cityscapes labelIds PNGs <city>_<seq>_<frame>_pred_labelIds.png")
    e.set_defaults(func=_eval)

    sb = sub.add_parser("submit", help="write Cityscapes benchmark submission files",
                        description="Predicts a split (default test) and writes labelIds PNGs per city plus "
                                    "submission.zip, the files the Cityscapes test server takes.")
    sb.add_argument("checkpoint")
    sb.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)
    sb.add_argument("--config", metavar="YAML", help="an eval config, e.g. train/configs/submit_r101_os8.yaml")
    sb.add_argument("--split", default="test", help="split to predict (default test)")
    sb.add_argument("--out", required=True, help="output folder")
    sb.set_defaults(func=_submit)

    pr = sub.add_parser("predict", help="segment images, folders or globs; draw masks and height attention",
                        description="Runs a checkpoint on images (files, folders, globs; no dataset needed), one "
                                    "forward pass per image, and writes for each a colour mask, an overlay (with "
                                    "ground truth and error map where Cityscapes-layout labels exist), each HANet "
                                    "site's height attention (rows x channels heat map ordered by peak row, per-row "
                                    "mean curves), plus, over all images, the attention of each class's top "
                                    "channels against height, and index.html. Works on CPU; the figures need "
                                    "hanet[vis] (matplotlib).")
    pr.add_argument("checkpoint")
    pr.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--set", dest="overrides", action="append", default=[], metavar="key=value",
                    help="an override (repeatable): " + overrides_help)
    pr.set_defaults(func=_predict)

    ex = sub.add_parser("export", help="export a checkpoint as ONNX or a torch.export program (.pt2)",
                        description="Exports a checkpoint (ours, training, or official) for deployment. onnx: the "
                                    "HANet ops lowered to standard ONNX operators (runs in onnxruntime on the CPU; "
                                    "needs pip install 'hanet[export]'); exported-program: torch.export with the "
                                    "custom ops kept as torch.ops.hanet.* (load with import hanet.ops; "
                                    "torch.export.load). Input: normalised images (batch, 3, H, W), whole frames; "
                                    "batch, H and W dynamic (--size is the example the graph is traced with).")
    ex.add_argument("checkpoint")
    ex.add_argument("--format", required=True, choices=["onnx", "exported-program"])
    ex.add_argument("--out", required=True, help="output file (.onnx / .pt2)")
    ex.add_argument("--size", default="1024x2048", help="HxW of the example input (default 1024x2048)")
    ex.add_argument("--backend", default=None, help="HANet op backend for exported-program (default: fastest on CPU)")
    ex.add_argument("--check", action="store_true",
                    help="run the exported file on a random batch and print the max abs difference from PyTorch")
    ex.set_defaults(func=_export)

    t = sub.add_parser("train", help="train in a single process (no process group); see train/train.py for torchrun",
                       add_help=False,
                       description="hanet train CONFIG [key=value ...] (--help for details)")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=_train)

    m = sub.add_parser("make-synthetic-cityscapes", help="generate urban scenes in the exact Cityscapes layout",
                       description="Writes procedurally generated urban scenes (sky and buildings above, road below, "
                                   "cars and people at plausible heights) as leftImg8bit/ and gtFine/ (labelIds, "
                                   "color, instanceIds, polygons) in the Cityscapes layout. Deterministic per seed.")
    m.add_argument("out", help="output dataset root")
    m.add_argument("--train", type=int, default=20, help="training scenes (default 20)")
    m.add_argument("--val", type=int, default=5, help="validation scenes (default 5)")
    m.add_argument("--test", type=int, default=0, help="test scenes (default 0)")
    m.add_argument("--size", default="256x512", help="HxW of every scene (default 256x512)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.set_defaults(func=_make_synthetic)

    b = sub.add_parser("bench", help="benchmarks: ops (kernels), model (training step), infer (images/s), "
                                     "protocol (original vs standard eval)",
                       description="hanet bench ops | model | infer | protocol [--help]")
    b.add_argument("what", choices=["ops", "model", "infer", "protocol"])
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see its --help)")
    b.set_defaults(func=_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        # Every error of ours names the file at fault: the message, no traceback.
        print(f"hanet {args.command}: error: {exc}", file=sys.stderr)
        return 1
