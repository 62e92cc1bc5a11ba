"""Ahead-of-time GPU compilation of every Triton kernel of hanet (no GPU needed).

Each launch that the ``hanet_triton`` launchers make at representative HANet shapes
(``hanet.ops.triton.aot.launch_configs``: pool inputs (2, 1024, 96, 96) and
(2, 304, 192, 192) with rows=16, rescale (2, 2048, 96, 96) and (2, 256, 192, 192)
with h=16, NCHW and channels_last, forward and backward) is compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` for cc 80, 90 and 100
(A100, H100, B200)
and fp32 / fp16 / bf16 tensors, with the launch's own signature, constexpr block sizes,
Triton's runtime specialisation and num_warps; PTX and a cubin must come out.
Nothing is run.

The compiles run in a subprocess without TRITON_INTERPRET (under the interpreter
``triton.jit`` makes interpreted, uncompilable functions; and this process's own
kernels must stay however the other test modules imported them).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CCS = (80, 90, 100)
DTYPES = ("float32", "float16", "bfloat16")

if importlib.util.find_spec("triton") is None:  # pragma: no cover
    pytest.skip("triton is not installed", allow_module_level=True)

_SCRIPT = r"""
import json, os, sys
from concurrent.futures import ProcessPoolExecutor

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from hanet.ops.triton import aot as K

CCS = json.loads(sys.argv[1])
DTYPES = json.loads(sys.argv[2])


def jobs():
    # Unique (kernel, signature, constexprs, attrs, num_warps) per dtype, with the
    # labels of every launch that uses it.
    out = {}
    for dt in DTYPES:
        for label, launch in K.launch_configs(getattr(torch, dt)):
            sig, consts, attrs = launch.aot_source()
            key = json.dumps([launch.name, sig, {k: repr(v) for k, v in consts.items()},
                              sorted((list(k), v) for k, v in attrs.items()),
                              launch.num_warps], sort_keys=True)
            job = out.setdefault(key, {"dtype": dt, "kernel": launch.name, "labels": []})
            job["labels"].append(label)
            job["launch"] = launch
    return list(out.values())


JOBS = jobs()


def compile_one(arg):
    i, cc = arg
    job = JOBS[i]
    launch = job["launch"]
    sig, consts, attrs = launch.aot_source()
    res = {"dtype": job["dtype"], "kernel": job["kernel"], "labels": job["labels"], "cc": cc,
           "signature": sig, "constexprs": {k: repr(v) for k, v in consts.items()},
           "num_warps": launch.num_warps}
    try:
        src = ASTSource(fn=launch.kernel, signature=sig, constexprs=consts, attrs=attrs)
        k = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                           options={"num_warps": launch.num_warps})
        ptx = k.asm.get("ptx") or ""
        cubin = k.asm.get("cubin") or b""
        res.update(ptx_bytes=len(ptx), cubin_bytes=len(cubin),
                   ptx_target=next((l.split()[1] for l in ptx.splitlines()
                                    if l.startswith(".target")), None),
                   shared=getattr(k.metadata, "shared", None), error=None)
    except Exception as e:  # reported, not raised: the test lists every failure
        res.update(error=f"{type(e).__name__}: {e}"[:2000])
    return res


if __name__ == "__main__":
    work = [(i, cc) for cc in CCS for i in range(len(JOBS))]
    nproc = max(1, min(len(os.sched_getaffinity(0)), 8))
    if nproc > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(nproc, mp_context=mp.get_context("fork")) as ex:
            results = list(ex.map(compile_one, work, chunksize=2))
    else:
        results = [compile_one(w) for w in work]
    covered = sorted({fn.fn.__name__ for fn in K.KERNELS.values()}
                     - {r["kernel"] for r in results})
    print("@@RESULTS@@" + json.dumps({"results": results, "not_covered": covered}))
"""


@pytest.fixture(scope="module")
def aot_results():
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    if "CUDA_HOME" not in env and Path("/usr/local/cuda").is_dir():
        env["CUDA_HOME"] = "/usr/local/cuda"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(list(CCS)), json.dumps(list(DTYPES))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    marker = "@@RESULTS@@"
    line = next((l for l in proc.stdout.splitlines() if l.startswith(marker)), None)
    if proc.returncode != 0 or line is None:
        pytest.fail(f"AOT compile subprocess failed (rc={proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return json.loads(line[len(marker):])


def test_every_kernel_is_planned(aot_results):
    assert aot_results["not_covered"] == [], (
        f"kernels missing from launch_configs(): {aot_results['not_covered']}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cc", CCS)
def test_aot_compile(aot_results, cc, dtype):
    results = [r for r in aot_results["results"] if r["cc"] == cc and r["dtype"] == dtype]
    assert results, f"no launches planned for {dtype}"
    failures = []
    for r in results:
        what = f"{r['kernel']} {r['constexprs']} num_warps={r['num_warps']} ({r['labels'][0]})"
        if r["error"]:
            failures.append(f"{what}: {r['error']}")
        elif not (r["ptx_bytes"] > 0 and r["cubin_bytes"] > 0):
            failures.append(f"{what}: empty PTX or cubin")
        elif not (r["ptx_target"] or "").startswith(f"sm_{cc}"):
            failures.append(f"{what}: PTX target {r['ptx_target']}, expected sm_{cc}")
    assert not failures, "\n".join(failures)
    kernels = {r["kernel"] for r in results}
    assert {"_rescale_nchw_kernel", "_rescale_nhwc_kernel", "_pool_nchw_kernel",
            "_pool_nhwc_kernel", "_pool_bwd_nchw_kernel", "_pool_bwd_nhwc_kernel"} <= kernels
