"""Model-level benchmark: DeepLabV3+ step time and peak memory, with and without HANet.

Variants: the plain baseline (hanet=[0,0,0,0,0]), HANet (hanet=[1,1,1,1,0],
hanet_set=[3,64,3], hanet_pos=[2,1]) on the reference ops, and the same on the
fused ops.  One training step = forward + loss + backward.  Step times are the
median of interleaved rounds (one step of each variant per round, each round
starting from another variant), so drift of the machine hits all variants alike.  Peak memory is measured in a fresh
subprocess per variant, started before the timed models are built: on CPU the peak
resident memory of the child's own address space (VmHWM; not ``ru_maxrss``, which
Linux carries over fork + exec from the parent, so every child would report at least
the parent's peak), on GPU ``max_memory_allocated`` after ``reset_peak_memory_stats``.
"held MB" is exact and device-independent: the distinct tensors autograd keeps for the
backward at the end of a forward (parameters excluded).
HANet's overhead is the median over rounds of (variant - baseline), in % of the median
baseline step, with a 95 % bootstrap interval over the paired rounds.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from hanet.bench.stats import paired_overhead
from hanet.models import build_model

HANET = dict(hanet=[1, 1, 1, 1, 0], hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8)
VARIANTS = ("baseline", "hanet_reference", "hanet_fused")


def _model(variant: str, arch: str, device, cuda_graph: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    if variant == "baseline":
        model = build_model(arch, hanet=[0, 0, 0, 0, 0])
    else:
        reference = variant == "hanet_reference"
        model = build_model(arch, backend="reference" if reference else None,
                            cuda_graph=cuda_graph and not reference, **HANET)
    return model.to(device).train()


def _step(model, images, target):
    model.zero_grad(set_to_none=True)
    logits = model(images).logits  # a SegmentationOutput (aux_logits unused: no aux head here)
    torch.nn.functional.cross_entropy(logits, target, ignore_index=255).backward()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _inputs(args, device):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.height, args.width, generator=g).to(device)
    target = torch.randint(0, 19, (args.batch, args.height, args.width), generator=g).to(device)
    return images, target


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process's address space: VmHWM of
    /proc/self/status, which starts afresh at exec.  ``ru_maxrss`` does not: Linux keeps
    the largest of the pre-exec and post-exec peaks, so a child started by a process
    holding 5 GB reads at least 5 GB.  Where /proc is missing, ru_maxrss (kB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def held_for_backward_mb(model, images) -> float:
    """MB of the distinct tensors autograd keeps for the backward at the end of a forward
    (parameters excluded): the activation memory, exact and the same on every device (a
    CPU's peak RSS moves by tens of MB between runs of the same step)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            held[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(images)
    return sum(held.values()) / 2**20


def measure_memory(variant: str, args) -> float:
    """Peak memory (MB) of one step of `variant`, in this process: call it in a fresh
    process (:func:`memory_in_subprocess`), one per variant."""
    device = torch.device(args.device)
    cuda_graph = getattr(args, "cuda_graph", False)
    model = _model(variant, args.arch, device, cuda_graph)
    images, target = _inputs(args, device)
    if device.type == "cuda":
        if cuda_graph:  # the capture's own warm-up steps are not part of the step's peak
            _step(model, images, target)
            _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        _step(model, images, target)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    _step(model, images, target)
    return peak_rss_mb()


def memory_in_subprocess(variant: str, args) -> float:
    """Peak memory (MB) of one step of `variant` measured in a fresh Python process."""
    cmd = [sys.executable, "-m", "hanet.bench.model_bench", "--memory-only", variant, "--arch", args.arch,
           "--device", args.device, "--batch", str(args.batch), "--height", str(args.height),
           "--width", str(args.width)] + (["--cuda-graph"] if getattr(args, "cuda_graph", False) else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {variant} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="deeplabv3plus_r101_os8")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--reps", type=int, default=50,
                   help="interleaved rounds, each timing one step of every variant (after one warm-up "
                        "round); the overhead's 95 %% interval needs >= 50 on a GPU")
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses")
    p.add_argument("--cuda-graph", action="store_true",
                   help="the fused variant replays each site's small branch from a CUDA graph (training, CUDA)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--memory-only", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error(f"--reps must be >= 1 (timed rounds), got {args.reps}")

    if args.memory_only:
        print(json.dumps({"peak_mb": measure_memory(args.memory_only, args)}))
        return None

    # Memory first, one fresh process per variant, while this process holds no model.
    peaks = {} if args.no_memory else {v: memory_in_subprocess(v, args) for v in VARIANTS}
    device = torch.device(args.device)
    images, target = _inputs(args, device)
    base = _model("baseline", args.arch, device)
    hanet = _model("hanet_fused", args.arch, device, args.cuda_graph)
    fused_backend = None

    def set_backend(b):
        for site in hanet.hanet_sites():
            site.backend = b
            site.cuda_graph = args.cuda_graph and b != "reference"

    runs = {v: [] for v in VARIANTS}
    for rep in range(args.reps + 1):
        # each round starts from another variant, so no variant always runs first
        for v in VARIANTS[rep % 3:] + VARIANTS[:rep % 3]:
            model = base if v == "baseline" else hanet
            if v != "baseline":
                set_backend("reference" if v == "hanet_reference" else fused_backend)
            _sync(device)
            t0 = time.perf_counter()
            _step(model, images, target)
            _sync(device)
            if rep > 0:  # the first round warms up
                runs[v].append((time.perf_counter() - t0) * 1e3)
        print(f"round {rep}: " + ", ".join(f"{v} {runs[v][-1]:.0f} ms" for v in VARIANTS if runs[v]), flush=True)

    results = {v: {"step_ms": statistics.median(runs[v]), "runs_ms": runs[v]} for v in VARIANTS}
    for v, peak in peaks.items():
        results[v]["peak_mb"] = peak
    for v in VARIANTS:
        if v != "baseline":
            set_backend("reference" if v == "hanet_reference" else fused_backend)
        results[v]["held_mb"] = held_for_backward_mb(base if v == "baseline" else hanet, images)
    for v in VARIANTS[1:]:
        # paired per round: the median of (variant - baseline) over the median baseline
        o = paired_overhead(runs["baseline"], runs[v]) if args.reps >= 2 else None
        b = results["baseline"]["step_ms"]
        results[v]["overhead_pct"] = o.pct if o else 100 * (results[v]["step_ms"] - b) / b
        if o:
            results[v]["overhead_ci95_pct"] = [o.low, o.high]
    ref_over, fused_over = results["hanet_reference"]["overhead_pct"], results["hanet_fused"]["overhead_pct"]

    import hanet.ops as hops

    print(f"\n{args.arch}, batch {args.batch}, {args.height}x{args.width}, {args.device} "
          f"({torch.get_num_threads()} threads), fused backend: {hops.dispatch.resolve(None, device)}"
          + (", small branch from CUDA graphs" if args.cuda_graph else ""))
    print(f"{'variant':<17} {'step ms':>9} {'HANet overhead (95 % interval)':>32} {'peak MB':>9} "
          f"{'held MB':>9}")
    for v in VARIANTS:
        r = results[v]
        over = f"{r['overhead_pct']:+.2f} %" if "overhead_pct" in r else "-"
        if "overhead_ci95_pct" in r:
            over += " [{:+.2f}, {:+.2f}]".format(*r["overhead_ci95_pct"])
        mem = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"
        print(f"{v:<17} {r['step_ms']:>9.1f} {over:>32} {mem:>9} {r['held_mb']:>9.1f}")
    if "peak_mb" in results["baseline"]:
        added = {v: results[v]["peak_mb"] - results["baseline"]["peak_mb"] for v in VARIANTS[1:]}
        mem_ratio = added["hanet_fused"] / added["hanet_reference"] if added["hanet_reference"] > 0 else float("nan")
        print(f"added peak memory: reference {added['hanet_reference']:+.0f} MB, fused "
              f"{added['hanet_fused']:+.0f} MB, fused / reference = {mem_ratio:.2f} (target <= 0.7)")
    held = {v: results[v]["held_mb"] - results["baseline"]["held_mb"] for v in VARIANTS[1:]}
    print(f"added memory held for the backward: reference {held['hanet_reference']:+.1f} MB, fused "
          f"{held['hanet_fused']:+.1f} MB, fused / reference = "
          f"{held['hanet_fused'] / held['hanet_reference']:.2f} (target <= 0.7)")
    ratio = fused_over / ref_over if ref_over > 0 else float("nan")
    print(f"fused overhead / reference overhead = {ratio:.2f}; fused overhead {fused_over:+.2f} % of the "
          f"baseline step (target on a GPU, fp32: <= 1.5 % with its 95 % interval)")
    if args.json:
        meta = {"arch": args.arch, "device": args.device, "batch": args.batch, "height": args.height,
                "width": args.width, "cuda_graph": args.cuda_graph, "threads": torch.get_num_threads(),
                "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
