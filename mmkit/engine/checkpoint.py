"""Checkpoints: a directory of ``model.safetensors`` + ``config.json`` (docs/design.md).

``config.json`` is a :class:`~mmkit.spec.CheckpointSpec`, written and read by it. For resume,
``trainer_state.json`` (a :class:`~mmkit.engine.state.TrainerState`: step, epoch, scheduler,
early-stopping state) and ``optimizer.safetensors`` (optimizer tensors and RNG states) sit beside
them. Everything is written into a temporary directory that is renamed into place, so a kill
never leaves half a checkpoint. Reading one back is :mod:`mmkit.io.checkpoint_dir` (and
:func:`mmkit.tasks.load_checkpoint`).
Nothing is ever unpickled: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from mmkit.engine.state import TrainerState
from mmkit.errors import CheckpointError
from mmkit.io.atomic import replace_dir, temp_dir_for
from mmkit.io.checkpoint_dir import CONFIG_FILE, MODEL_FILE
from mmkit.io.files import writing
from mmkit.io.weights import read_safetensors
from mmkit.spec import CheckpointSpec

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    spec: CheckpointSpec,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: TrainerState | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path. With ``optimizer`` and
    ``trainer_state`` it can be resumed; ``rng`` (default: this process's, :func:`rng_states`)
    holds every rank's random-number state."""
    path = Path(path)
    with writing(path, "checkpoint"):  # a full disk or a read-only folder: one line
        tmp = temp_dir_for(path)
    try:
        with writing(path, "checkpoint"):
            _write_checkpoint(tmp, path, model, spec, optimizer, trainer_state, rng)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint is untouched
        raise
    return path


def _write_checkpoint(
    tmp: Path,
    path: Path,
    model: torch.nn.Module,
    spec: CheckpointSpec,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: TrainerState | None,
    rng: dict[str, torch.Tensor] | None,
) -> None:
    # each tensor saved on its own: tied weights are stored twice, views become whole tensors
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / MODEL_FILE), metadata={"format": "pt"})
    spec.write(tmp / CONFIG_FILE)
    if optimizer is not None and trainer_state is not None:
        tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(rng or rng_states())
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        saved = replace(trainer_state, optimizer=opt_meta)
        (tmp / STATE_FILE).write_text(json.dumps(saved.to_json(), indent=2))
    replace_dir(tmp, path)


@dataclass
class ResumeState:
    trainer_state: TrainerState
    optimizer_state: dict[str, Any]


def load_resume_state(path: str | Path, *, rank: int = 0) -> ResumeState:
    """Trainer state and optimizer state of a ``last`` checkpoint; restores rank ``rank``'s
    RNG states."""
    path = Path(path)
    if not (path / STATE_FILE).is_file() or not (path / OPTIMIZER_FILE).is_file():
        raise CheckpointError(f"{path} has no trainer state to resume from")
    state = TrainerState.read(path / STATE_FILE)
    tensors = read_safetensors(path / OPTIMIZER_FILE, what="optimizer state")
    try:
        optimizer = _unflatten_optimizer(tensors, state.optimizer)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path / OPTIMIZER_FILE}: not an mmkit optimizer state") from exc
    _restore_rng(tensors, rank)
    return ResumeState(replace(state, optimizer={}), optimizer)


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_states() -> dict[str, torch.Tensor]:
    """Every rank's CPU (and current CUDA device's) RNG state, keyed ``rng.rank<r>.cpu`` /
    ``.cuda``; a collective under torchrun (every rank must call it)."""
    from mmkit import distributed

    out = {}
    for r, state in enumerate(distributed.gather_objects(torch.get_rng_state())):
        out[f"rng.rank{r}.cpu"] = state
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
        for r, state in enumerate(distributed.gather_objects(cuda)):
            out[f"rng.rank{r}.cuda"] = state
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], rank: int) -> None:
    cpu = tensors.get(f"rng.rank{rank}.cpu", tensors.get("rng.cpu") if rank == 0 else None)
    if cpu is not None:
        torch.set_rng_state(cpu)
    cuda = tensors.get(f"rng.rank{rank}.cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)
