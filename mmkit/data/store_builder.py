"""The one store-building skeleton behind every modality's ``prepare``.

A modality says what a store holds (:class:`StoreRecipe`: dtype, item shape, decode parameters and
the decode function) and which records go in; :func:`build_store` fingerprints the source, reuses
an unchanged store, decodes every record on a pool of processes or threads, skips (and lists)
unreadable files, and commits atomically. Hooks add what only one modality has (captions and
their tokens for image-text, background noise for audio).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.cache import cache_dir
from mmkit.data.frame_codec import EncodedFrames, encode_jpeg, frame_format
from mmkit.data.hf_tables import RowBytes, stream_sources
from mmkit.data.records import Unusable
from mmkit.data.store import Store, is_store, open_cached
from mmkit.data.store_writer import StoreWriter
from mmkit.errors import MediaError, UserInputError
from mmkit.events import NullProgress, Progress

Decode = Callable[[Any, dict[str, Any]], np.ndarray | EncodedFrames]


@dataclass(frozen=True)
class StoreRecipe:
    """What a prepared store of one modality holds, and how one record is decoded into it."""

    modality: str
    dtype: str
    item_shape: tuple[int, ...]
    params: dict[str, Any]
    decode: Decode  # (record.source, params) -> array [n, *item_shape]; raises MediaError
    # decode in processes (Python-bound decoding: audio) rather than threads (ffmpeg, Pillow)
    processes: bool = False

    def encoder(self) -> Decode:
        """:attr:`decode`, then each frame JPEG-encoded when ``params`` ask for a jpeg store
        (in the decoding workers: :mod:`~mmkit.data.frame_codec`)."""
        if frame_format(self.params) != "jpeg":
            return self.decode
        decode, quality = self.decode, int(self.params["jpeg_quality"])
        return lambda source, params: encode_jpeg(decode(source, params), quality)


def source_stamp(source: str | bytes | RowBytes) -> str:
    """What identifies a media source's content for a store fingerprint (hash, or path+stat)."""
    if isinstance(source, Unusable):
        return f"unusable:{source.reason}"
    if isinstance(source, RowBytes):
        return source.stamp
    if isinstance(source, bytes):
        return hashlib.sha1(source).hexdigest()
    try:
        st = os.stat(source)
        return f"{source}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{source}:missing"


def fingerprint(head: Any, lines: Iterable[str]) -> str:
    """A short hash of ``head`` (JSON) and one line per record: equal sources, equal stores."""
    h = hashlib.sha1(json.dumps(head).encode())
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()[:16]


def record_line(record: Any, *extra: str) -> str:
    """A record's fingerprint line: name, label, split, ``extra`` and its content stamp."""
    fields = [record.name, record.label or "", record.split or "", *extra]
    return "|".join([*fields, source_stamp(record.source)])


def given_store(path: str, modality: str, params: dict[str, Any] | None = None) -> Store | None:
    """``--dataset`` naming a prepared store: that store, checked against the modality (and
    ``params`` when the model needs particular ones); None when it is not a store."""
    if not is_store(path):
        return None
    store = Store(path)
    if store.modality != modality:
        raise UserInputError(f"{path} is a {store.modality} store, not {modality}")
    if params is not None and store.params != params:
        raise UserInputError(f"{path} was prepared with {store.params}; this model needs {params}")
    return store


def default_out(modality: str, fp: str) -> Path:
    return cache_dir() / "prepared" / f"{modality}-{fp}"


# records per task sent to a decoding process: few enough to keep memory small, enough that the
# hand-over costs little next to the decoding
PROCESS_CHUNK = 32
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def decode_one(decode: Decode, source: Any, params: dict[str, Any]) -> Any:
    """``decode(source, params)``, or the reason the source is skipped."""
    if isinstance(source, Unusable):  # listed by the dataset, refused before decoding
        return source.reason
    try:
        return decode(source, params)
    except MediaError as exc:
        return exc.reason


def _decode_chunk(decode: Decode, sources: list[Any], params: dict[str, Any]) -> list[Any]:
    return [decode_one(decode, source, params) for source in sources]


def _decoding_process(parent: int) -> None:
    """Set up a decoding process: Ctrl-C and SIGTERM are the parent's to act on (it stops the
    pool, or exits at once), the process dies with its parent (a SIGKILLed ``prepare`` leaves no
    orphan), and one intra-op thread (the pool is the parallelism)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)
    torch.set_num_threads(1)


def _pool(workers: int, processes: bool) -> Executor:
    if not processes:
        return ThreadPoolExecutor(workers)
    context = multiprocessing.get_context("fork")  # the decoder is already imported: no start-up
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_decoding_process, initargs=(os.getpid(),)
    )


def decode_all(
    decode: Decode,
    records: Sequence[Any],
    params: dict[str, Any],
    workers: int | None = None,
    *,
    processes: bool = False,
) -> Iterable[tuple[Any, np.ndarray | EncodedFrames | str]]:
    """``(record, array or skip reason)`` for each record, in order.

    One worker decodes in this thread; more decode on a pool of ``workers`` processes
    (``processes``: ``decode`` must pickle; chunks of :data:`PROCESS_CHUNK` records) or threads.
    Sources are read as the pool needs them (:func:`~mmkit.data.hf_tables.stream_sources`: a
    dataset's media bytes stay in its files until then) and at most ``2 * workers`` tasks are in
    flight, so memory holds a few items, never the dataset."""
    workers = workers or min(8, os.cpu_count() or 1)
    pairs = zip(records, stream_sources(records), strict=True)
    if workers == 1:
        for record, source in pairs:
            yield record, decode_one(decode, source, params)
        return
    size = PROCESS_CHUNK if processes else 1
    pending: deque[tuple[tuple[Any, ...], Future]] = deque()
    pool = _pool(workers, processes)
    try:
        while chunk := list(itertools.islice(pairs, size)):
            chunk_records, sources = zip(*chunk, strict=True)
            future = pool.submit(_decode_chunk, decode, list(sources), params)
            pending.append((chunk_records, future))
            if len(pending) >= 2 * workers:
                yield from _results(*pending.popleft())
        while pending:
            yield from _results(*pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _results(records: tuple[Any, ...], future: Future) -> Iterator[tuple[Any, Any]]:
    yield from zip(records, future.result(), strict=True)


def build_store(
    recipe: StoreRecipe,
    records: Sequence[Any],
    *,
    fp: str,
    out: Path,
    labels: Callable[[StoreWriter], list[str]],
    info: dict[str, Any],
    progress: Progress | None = None,
    workers: int | None = None,
    added: Callable[[Any, int], None] | None = None,
    finish: Callable[[StoreWriter], None] | None = None,
) -> Store:
    """Decode ``records`` into a store at ``out`` (reused when its fingerprint is ``fp``).

    ``added(record, item_index)`` runs for each record kept; ``finish(writer)`` adds extra arrays
    before the commit; ``labels(writer)`` gives the label list; ``info`` goes into the manifest.
    Decoded work is committed in chunks (about 1/64 of the records, 8 to 1024, or a minute's
    work), so a prepare killed half-way continues where its last chunk ended
    when run again with the same source, and ends with the store a single run makes.
    """
    progress = progress or NullProgress()
    cached = open_cached(out, fp, progress)
    if cached is not None:
        return cached
    writer = StoreWriter(
        out,
        modality=recipe.modality,
        dtype=recipe.dtype,
        item_shape=recipe.item_shape,
        params=recipe.params,
        resume=fp,
    )
    try:
        done = min(writer.records, len(records))
        progress.start("prepare", len(records))
        if done:
            progress.message(
                f"continuing an interrupted prepare: {done} of {len(records)} files were "
                f"decoded before, decoding the other {len(records) - done}"
            )
            if added is not None:
                for item, position in enumerate(writer.kept):
                    added(records[position], item)
            progress.advance(done)
        chunk, last = min(1024, max(8, len(records) // 64)), time.monotonic()
        decode = recipe.encoder()
        results = decode_all(
            decode, records[done:], recipe.params, workers, processes=recipe.processes
        )
        for record, result in results:
            if isinstance(result, str):
                writer.skip(record.name, result)
                progress.message(f"skipped {record.name}: {result}")
            else:
                writer.add(
                    result,
                    name=record.name,
                    label=record.label or "",
                    split=record.split or "train",
                    group=getattr(record, "group", None) or "",
                )
                if added is not None:
                    added(record, len(writer.items) - 1)
            progress.advance(1)
            if writer.pending >= chunk or time.monotonic() - last >= 60:
                writer.checkpoint()
                last = time.monotonic()
        if finish is not None:
            finish(writer)
        store = writer.commit(labels(writer), fingerprint=fp, **info)
    except BaseException:
        writer.abort()  # the committed chunks stay for the next run
        raise
    progress.end(items=len(store), skipped=len(store.skipped))
    return store
