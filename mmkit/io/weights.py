"""The one place mmkit reads tensors from disk.

Checkpoints are safetensors (:func:`read_safetensors`): a header of JSON and raw bytes, nothing that
can run code. A user-given weights file (``--pretrained``, ``weights_path``) may also be a torch
file, read by :func:`read_state_dict` with ``torch.load(weights_only=True)``, which refuses every
object but tensors and plain containers. No other module calls ``torch.load`` or hands a path to a
third-party loader (open_clip, torchvision, timm): they get the state dict from here.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from pickle import UnpicklingError  # the error torch.load(weights_only=True) raises

import torch

from mmkit.errors import CheckpointError
from mmkit.io.files import regular_file, short_path

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


def is_safetensors(path: Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header size, then ``{``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < size <= _MAX_SAFETENSORS_HEADER


def read_safetensors(
    path: str | os.PathLike[str], *, what: str = "weights", device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; anything else (a pickle renamed ``.safetensors``, a
    truncated file) is a :class:`CheckpointError` of one line."""
    from safetensors.torch import load_file

    path = regular_file(path, what)
    if not is_safetensors(path):
        raise CheckpointError(f"{what} {_short(path)} is not a safetensors file")
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types for every bad file
        raise CheckpointError(
            f"{what} {_short(path)}: cannot read it ({_first_line(exc)})"
        ) from exc


def safetensors_shapes(path: str | os.PathLike[str], *, what: str = "weights") -> dict[str, tuple]:
    """``{name: shape}`` from a safetensors header alone (no tensor is read), so a model can be
    checked against its weights before it is allocated."""
    import json

    path = regular_file(path, what)
    if not is_safetensors(path):
        raise CheckpointError(f"{what} {_short(path)} is not a safetensors file")
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{what} {_short(path)}: corrupt header") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{what} {_short(path)}: corrupt header")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise CheckpointError(f"{what} {_short(path)}: corrupt header entry {name!r}")
        shapes[name] = tuple(shape)
    return shapes


def read_state_dict(
    path: str | os.PathLike[str], *, what: str = "weights"
) -> dict[str, torch.Tensor]:
    """A user-given weights file as ``{name: tensor}``: safetensors, or a torch file read with
    ``weights_only=True``. Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and a
    DDP ``module.`` prefix. Raises :class:`CheckpointError` (one line) for anything else."""
    path = regular_file(path, what)
    if is_safetensors(path):
        state: object = read_safetensors(path, what=what)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except UnpicklingError as exc:  # weights_only refused an object: it could run code
            raise CheckpointError(
                f"{what} {_short(path)}: refused, it holds Python objects besides tensors "
                "(loading them could run code); save a state dict or safetensors instead"
            ) from exc
        except Exception as exc:  # RuntimeError for junk, EOFError for truncated files...
            raise CheckpointError(
                f"{what} {_short(path)} is not a safetensors or torch weights file "
                f"({_first_line(exc)})"
            ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(f"{what} {_short(path)}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _short(path: Path, limit: int = 120) -> str:
    return short_path(path, limit)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    text = lines[0]
    return text if len(text) <= limit else text[:limit] + "..."
