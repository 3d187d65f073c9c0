"""The work-splitting helpers of the scale data generators (:mod:`.scale_data`): counts scaled
by a fraction, fixed-size chunks, and a process pool that sums what each job returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from multiprocessing import get_context


def scaled(full: int, fraction: Fraction, minimum: int) -> int:
    return max(minimum, round(full * fraction))


def map_jobs(task: Callable[..., int], jobs: Sequence[tuple], workers: int) -> int:
    """Run ``task(*job)`` for every job (in ``workers`` fresh processes when more than one);
    the sum of what they return."""
    if workers <= 1 or len(jobs) <= 1:
        return sum(task(*job) for job in jobs)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        return sum(pool.map(task, *zip(*jobs, strict=True)))


def chunks(items: list, size: int) -> list[tuple[int, list]]:
    return [(i // size, items[i : i + size]) for i in range(0, len(items), size)]


def allocate(counts: dict[str, int], fraction: Fraction) -> dict[str, int]:
    """``counts`` scaled by ``fraction`` (largest remainders, at least 1 each)."""
    exact = {k: v * fraction for k, v in counts.items()}
    out = {k: max(1, int(v)) for k, v in exact.items()}
    short = round(sum(counts.values()) * fraction) - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[: max(0, short)]:
        out[k] += 1
    return out
