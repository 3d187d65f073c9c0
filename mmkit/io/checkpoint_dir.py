"""Reading a checkpoint directory (docs/design.md): find it (a run's ``best``/``last``, or one
a kill left parked), read its ``config.json`` spec, load ``model.safetensors`` strictly, and
build the model it describes checked against the weights' header before any memory is
allocated. Writing checkpoints is :mod:`mmkit.engine.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from mmkit.errors import CheckpointError, MmkitError
from mmkit.io.atomic import old_of
from mmkit.io.files import file_problem, path_exists, short_path, stat_problem
from mmkit.io.weights import read_safetensors, safetensors_shapes
from mmkit.spec import CheckpointSpec

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
