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
<<<<<<< HEAD
from mmkit.errors import CheckpointError
from mmkit.io.atomic import replace_dir, temp_dir_for
from mmkit.io.checkpoint_dir import CONFIG_FILE, MODEL_FILE
from mmkit.io.weights import read_safetensors
=======
from mmkit.errors import CheckpointError, MmkitError
from mmkit.io.atomic import old_of, replace_dir, temp_dir_for
from mmkit.io.files import file_problem, path_exists, short_path, stat_problem, writing
from mmkit.io.weights import read_safetensors, safetensors_shapes
>>>>>>> i19-robust
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


<<<<<<< HEAD
=======
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


def resolve_checkpoint_dir(path: str | Path, *, prefer: str = "best") -> Path:
    """A checkpoint dir as given, or a run dir's ``best`` (falling back to ``last``). A kill in
    the middle of replacing one leaves it parked as ``.best.old`` / ``.last.old``: that complete
    copy is read instead (the next training start puts it back)."""
    path = Path(path).expanduser()
    other = "last" if prefer == "best" else "best"
    candidates = [path]
    for name in (prefer, other):
        candidates += [path / name, old_of(path / name)]
    for c in candidates:
        if file_problem(c / CONFIG_FILE) is None and file_problem(c / MODEL_FILE) is None:
            return c
    problem = stat_problem(path)
    if problem == "no such file":
        raise CheckpointError(f"checkpoint not found: {short_path(path)}")
    if problem is not None:
        raise CheckpointError(f"checkpoint {short_path(path)}: {problem}")
    if not path.is_dir():
        raise CheckpointError(
            f"{short_path(path)} is a file; --checkpoint takes a run or checkpoint directory"
        )
    for c in candidates:  # a checkpoint folder with one of its two files missing or damaged
        if file_problem(c / CONFIG_FILE) is None or path_exists(c / MODEL_FILE):
            name = MODEL_FILE if file_problem(c / CONFIG_FILE) is None else CONFIG_FILE
            problem = file_problem(c / name) or ""
            problem = "is missing" if problem == "no such file" else problem
            problem = problem if problem.startswith("is ") else f"cannot be read ({problem})"
            raise CheckpointError(f"checkpoint {short_path(c)} is incomplete: {name} {problem}")
    raise CheckpointError(
        f"{short_path(path)} is not a checkpoint or run directory (no {CONFIG_FILE})"
    )


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device) -> None:
    """Load ``model.safetensors`` into ``model`` strictly (missing or extra keys are an error)."""
    ckpt = resolve_checkpoint_dir(path)
    state = read_safetensors(ckpt / MODEL_FILE, what="checkpoint weights", device=str(device))
    expected = model.state_dict()
    wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(
            f"{ckpt}: weights do not match the model ({wrong[0]}: "
            f"{tuple(state[wrong[0]].shape)} vs {tuple(expected[wrong[0]].shape)})"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt}: weights do not match the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )


def read_spec(path: str | Path) -> CheckpointSpec:
    """The checked :class:`~mmkit.spec.CheckpointSpec` of a checkpoint or run directory."""
    return CheckpointSpec.read(resolve_checkpoint_dir(path) / CONFIG_FILE)


# in-place random fills: on the meta device torch runs them as Python decompositions whose first
# call imports torch._dynamo (over a second); a meta tensor has no values to fill
_FILL_NAMES = "normal_ uniform_ bernoulli_ random_ exponential_ log_normal_ cauchy_ geometric_"
_RANDOM_FILLS = frozenset(getattr(torch.Tensor, name) for name in _FILL_NAMES.split())


class SkipInitOnMeta(TorchFunctionMode):
    """Makes ``torch.nn.init`` functions and in-place random fills no-ops on meta tensors
    (their values do not exist), so that building a model skeleton on the meta device costs
    what its shapes cost."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        tensor = args[0] if args else kwargs.get("tensor")
        is_init = func in _RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init"
        if is_init and isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor
        return func(*args, **kwargs)


def build_checked(
    build: Callable[[], torch.nn.Module], ckpt: Path, device: str | torch.device
) -> torch.nn.Module:
    """``build()`` the model a checkpoint describes and load its weights, in eval mode.

    The model is first built on the ``meta`` device (no memory, no initialisation:
    :class:`SkipInitOnMeta`) and its parameter names and shapes are compared with the
    safetensors header: a config.json that describes another or an absurdly large model is
    refused before anything is allocated.
    """
    shapes = safetensors_shapes(ckpt / MODEL_FILE, what="checkpoint weights")
    try:
        with torch.device("meta"), SkipInitOnMeta():
            skeleton = build()
    except MmkitError:
        raise
    except Exception:  # a plugin that cannot be built on meta: the strict load below still checks
        skeleton = None
    if skeleton is not None:
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        if expected != shapes:
            raise CheckpointError(
                f"{ckpt}: config.json describes a model whose weights do not match "
                f"{MODEL_FILE} ({_first_difference(expected, shapes)})"
            )
    model = build()
    load_weights(model, ckpt, device)
    return model.to(device).eval()


def _first_difference(expected: dict[str, tuple], found: dict[str, tuple]) -> str:
    for key in sorted(expected.keys() - found.keys())[:1]:
        return f"missing {key}"
    for key in sorted(found.keys() - expected.keys())[:1]:
        return f"unexpected {key}"
    key = next(k for k in sorted(expected) if expected[k] != found[k])
    return f"{key}: {found[key]} in the file, {expected[key]} in the model"


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    spec: CheckpointSpec
    path: Path

    @property
    def config(self) -> dict[str, Any]:
        """The checkpoint's ``config.json`` as a dict."""
        return self.spec.to_json()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild a checkpoint's model from ``config.json`` alone and load its weights (eval mode)."""
    from mmkit.tasks import build_model

    ckpt = resolve_checkpoint_dir(path)
    spec = read_spec(ckpt)
    model = build_checked(lambda: build_model(spec, str(ckpt / CONFIG_FILE)), ckpt, device)
    return LoadedCheckpoint(model, spec, ckpt)


>>>>>>> i19-robust
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
