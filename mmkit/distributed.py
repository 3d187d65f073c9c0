"""torchrun's distributed data parallel, as the engine uses it (no home-made launcher).

``torchrun --nproc_per_node N -m mmkit ... train`` starts N processes with ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` set; :func:`init` joins them into one process group (NCCL on
GPUs, gloo on CPUs). Rank 0 prepares data and writes files; every decision that ends a loop
(early stopping, an interrupt, a non-finite loss) is agreed through :func:`any_rank`, so all ranks
leave it at the same step; validation is sharded (``rank::world``) and its outputs gathered back
in order with :func:`gather_rows`.

A lost process never hangs the others: every collective waits at most ``timeout`` seconds
(``dist_timeout``, :data:`DEFAULT_TIMEOUT`) for a peer that stopped answering, a peer that died
fails it at once, and :func:`peer_failure` turns either into one line. Waits on rank 0's work
alone (preparing the store, writing a checkpoint) go through a separate patient group
(:func:`wait_for_main`), so a long prepare is not mistaken for a hang. The ranks check at start
that they run one config (:func:`check_same`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mmkit.errors import MmkitError, PeerLost, RanksDisagree

DEFAULT_TIMEOUT = 60.0
"""Seconds a collective waits for a rank that stopped answering (the ``dist_timeout`` key)."""
PATIENT = timedelta(days=7)  # waits on rank 0 alone: preparing a large store can take hours

_control: dist.ProcessGroup | None = None  # a gloo group for CPU flags, even beside NCCL
_patient: dist.ProcessGroup | None = None  # a gloo group that waits for rank 0's own work
_timeout = DEFAULT_TIMEOUT
# how a collective fails when a peer died (gloo: the connection reset or closed; torchrun's
# teardown of the job terminating a DataLoader worker) or stopped answering (a timeout)
_LOST = re.compile(
    r"connection (reset|closed|refused)|broken pipe|timed? ?out|killed by signal: terminated",
    re.IGNORECASE,
)
_TIMED_OUT = re.compile(r"timed? ?out|timeout", re.IGNORECASE)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: torch.device, timeout: float = DEFAULT_TIMEOUT) -> torch.device:
    """Join the process group when launched by torchrun; returns this rank's device (the
    ``LOCAL_RANK``-th GPU under CUDA). A collective waits at most ``timeout`` seconds for a rank
    that stopped answering."""
    global _control, _patient, _timeout
    if world() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    _timeout = timeout
    with failures():
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        if _control is None:
            cuda = device.type == "cuda"
            _control = dist.new_group(backend="gloo") if cuda else dist.group.WORLD
            _patient = dist.new_group(backend="gloo", timeout=PATIENT)
    return device


def peer_failure(exc: BaseException) -> PeerLost | None:
    """The one line for ``exc`` when it is how a collective failed because another rank died
    or stopped answering (``None`` otherwise, and outside torchrun)."""
    if world() <= 1 or isinstance(exc, MmkitError) or not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, dist.DistError) or _LOST.search(text)):
        return None
    if _TIMED_OUT.search(text):
        what = f"stopped answering for {_timeout:g} s (dist_timeout)"
    elif "killed by signal" in text:
        what = "is gone (torchrun is ending the job)"
    else:
        reason = re.sub(r"^\[[^\]]*\] ", "", text.strip().splitlines()[0] if text.strip() else "")
        what = f"is gone ({reason[:160]})" if reason else "is gone"
    return PeerLost(f"rank {rank()} of {world()}: another process of this torchrun job {what}")


@contextmanager
def failures(after: Callable[[], str] | None = None) -> Iterator[None]:
    """Inside the block, a collective that fails because a peer was lost raises
    :class:`PeerLost` (with ``after()`` appended to its line: how to continue). SIGTERM is
    ignored from then on: torchrun's teardown of the job must not cut that line off."""
    try:
        yield
    except Exception as exc:
        lost = peer_failure(exc)
        if lost is None:
            raise
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise PeerLost(f"{lost}{after() if after else ''}") from exc


def check_same(config: dict[str, Any], what: str = "config") -> None:
    """Every rank must run ``config``: a hash of it is gathered from all ranks and compared (a
    rank started with other options would train another model, or deadlock). Where one differs,
    every rank raises :class:`~mmkit.errors.RanksDisagree` naming the first key that differs
    (rank 0 prints it)."""
    if not active():
        return
    text = json.dumps(config, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    digests: list[Any] = [None] * dist.get_world_size()
    with failures():
        dist.all_gather_object(digests, digest, group=_control)
    odd = next((r for r, d in enumerate(digests) if d != digests[0]), None)
    if odd is None:
        return
    configs: list[Any] = [None] * dist.get_world_size()
    with failures():
        dist.all_gather_object(configs, config, group=_control)
    first, other = configs[0], configs[odd]
    keys = sorted(set(first) | set(other), key=str)
    key = next((k for k in keys if first.get(k) != other.get(k)), "?")
    raise RanksDisagree(
        f"rank {odd} was started with another {what} than rank 0 ({key}: "
        f"{other.get(key)!r} vs {first.get(key)!r}); start every process with the same options"
    )


def close() -> None:
    """Leave the process group after a clean finish (every rank gets here), so no rank tears
    the connections down under another one still using them."""
    global _control, _patient
    if active():
        dist.barrier(group=_control)
        dist.destroy_process_group()
        _control = _patient = None


def barrier() -> None:
    if active():
        dist.barrier(group=_control)


def wait_for_main() -> None:
    """A barrier that waits as long as rank 0's own work takes (preparing a store, writing a
    checkpoint), not only ``dist_timeout``; a rank that died still fails it at once."""
    if active():
        dist.barrier(group=_patient or _control)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. prepares the store); the others wait, then run it (and
    find the store ready). A no-op without torchrun."""
    if active() and not is_main():
        wait_for_main()
    yield
    if active() and is_main():
        wait_for_main()


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
