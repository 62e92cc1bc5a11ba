"""Process-group set-up for torchrun (DDP: NCCL on GPU, gloo on CPU) and the
single-process case (`hanet train`, no process group at all)."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False  # a process group exists

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(want: str, local_rank: int) -> torch.device:
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def _attempt_store(rank: int, world: int, timeout: datetime.timedelta) -> dict:
    """Under torchrun, the rendezvous store of this restart attempt, with keys of its own.

    torchrun keeps one store for the whole job, and every attempt of the worker group
    writes the same keys (each rank's gloo address, NCCL's unique id).  After a restart
    (--max-restarts) a new worker could read the dead attempt's value before its peer
    overwrites it and wait for a peer that no longer exists.  A prefix per attempt
    (TORCHELASTIC_RESTART_COUNT) keeps the attempts apart."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return {}  # not torchrun's elastic agent: the default env:// rendezvous
    # The agent hosts the store at MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE);
    # otherwise rank 0 hosts it, as env:// would.
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent_store and rank == 0, timeout=timeout,
                          multi_tenant=not agent_store)
    return {"store": dist.PrefixStore(f"hanet/attempt_{attempt}", store), "rank": rank, "world_size": world}


def init_distributed(device: str = "auto", use_process_group: bool | None = None) -> DistContext:
    """Joins the torchrun process group when launched by torchrun (even with one
    process), else runs as a single process with no group."""
    if use_process_group is None:
        use_process_group = launched_by_torchrun()
    if not use_process_group:
        return DistContext(device=pick_device(device, 0))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(minutes=30)
        dist.init_process_group(backend=backend, timeout=timeout, device_id=dev if dev.type == "cuda" else None,
                                **_attempt_store(rank, world, timeout))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, initialized=True)


def barrier(ctx: DistContext) -> None:
    if ctx.initialized:
        dist.barrier()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank."""
    if not ctx.initialized:
        return flag
    t = torch.tensor([1 if flag else 0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_objects(ctx: DistContext, obj) -> list:
    if not ctx.initialized:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup(ctx: DistContext) -> None:
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()
