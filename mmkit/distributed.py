"""torchrun's distributed data parallel, as the engine uses it (no home-made launcher).

``torchrun --nproc_per_node N -m mmkit ... train`` starts N processes with ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` set; :func:`init` joins them into one process group (NCCL on
GPUs, gloo on CPUs). Rank 0 prepares data and writes files; every decision that ends a loop
(early stopping, an interrupt, a non-finite loss) is agreed through :func:`any_rank`, so all ranks
leave it at the same step; validation is sharded (``rank::world``) and its outputs gathered back
in order with :func:`gather_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

_control: dist.ProcessGroup | None = None  # a gloo group for CPU flags, even beside NCCL


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this rank's device (the
    ``LOCAL_RANK``-th GPU under CUDA)."""
    global _control
    if world() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if _control is None:
        _control = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return device


def close() -> None:
    """Leave the process group after a clean finish (every rank gets here), so no rank tears
    the connections down under another one still using them."""
    global _control
    if active():
        dist.barrier(group=_control)
        dist.destroy_process_group()
        _control = None


def barrier() -> None:
    if active():
        dist.barrier(group=_control)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. prepares the store); the others wait, then run it (and
    find the store ready). A no-op without torchrun."""
    if active() and not is_main():
        barrier()
    yield
    if active() and is_main():
        barrier()


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true on any rank (one small all-reduce on the CPU)."""
    if not active():
        return tuple(flags)
    t = torch.tensor([float(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return tuple(bool(v) for v in t.tolist())


def shard(items: Sequence[int]) -> list[int]:
    """This rank's part of ``items`` for sharded evaluation: every ``world``-th from ``rank``."""
    return list(items)[rank() :: world()] if active() else list(items)


def gather_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """Undo :func:`shard`: rank ``r``'s rows are items ``r, r + world, ...``; every rank gets all
    ``total`` rows in the original order."""
    if not active():
        return local
    n = dist.get_world_size()
    per_rank = -(-total // n)
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    padded = torch.zeros((per_rank, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(parts, padded)
    out = torch.empty((total, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        count = len(range(r, total, n))
        out[r::n] = part[:count].cpu()
    return out


def gather_objects(value: torch.Tensor) -> list[torch.Tensor]:
    """One same-shaped tensor per rank (e.g. RNG states), gathered on every rank."""
    if not active():
        return [value]
    parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, value, group=_control)
    return parts
