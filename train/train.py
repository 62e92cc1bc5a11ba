"""torchrun entry point of hanet training.

    torchrun --nproc_per_node=N train/train.py CONFIG.yaml [key=value ...]

Multi-node: add --nnodes=M --node_rank=R --rdzv_backend=c10d
--rdzv_endpoint=HOST:PORT --rdzv_id=JOB (the same on every node).  DDP uses NCCL
on GPUs and gloo on CPUs.  `hanet train CONFIG [key=value ...]` runs the same
training in a single process without a process group.
"""
import sys

from hanet.training.run import main

if __name__ == "__main__":
    sys.exit(main(distributed=True))
