"""Exporting a chain of modules (preprocess stages, then a model) to ONNX or TorchScript.

:func:`export_chain` first drops the stages that are the identity in eval mode (training
augmentations return the very tensor they were given), then exports ``stages[k:]`` + the final
module as one graph for the smallest ``k`` that exports: everything when it can, else the graph
starts after the stages that cannot be exported and the caller documents those (they run before
the graph). The graph has a dynamic batch axis and is checked against PyTorch on a batch size
other than the traced one: through onnxruntime for ONNX (when installed), in memory for
TorchScript. An export that does not match (max abs difference above ``RTOL`` times the largest
reference value) counts as one that failed.

ONNX goes through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs
``onnx`` and ``onnxscript``: the ``mmkit[export]`` extra); TorchScript through
``torch.jit.trace``. Files are written next to their destination and renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmkit.errors import ExportError

FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
"""Export formats and their file extensions."""

RTOL = 1e-4
"""Largest accepted ``max |exported - pytorch| / max |pytorch|``."""


class Chain(nn.Module):
    """``final(stages(x))`` as one module with a single tensor input and output."""

    def __init__(self, stages: Sequence[nn.Module], final: nn.Module) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.final = final

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.final(x)


@dataclass
class ExportedGraph:
    """One exported file and what it holds.

    ``in_graph`` names the stages inside the graph and then the final module; ``outside`` the
    stages that could not be exported and must run before it, in order; ``omitted`` the stages
    that are the identity in eval mode (in neither). ``example_input`` / ``example_output`` show
    the graph's input and output (shape after the batch axis, dtype); ``check`` is the parity
    check (None when onnxruntime is not installed).
    """

    path: Path
    in_graph: list[str]
    outside: list[str]
    omitted: list[str]
    example_input: torch.Tensor
    example_output: torch.Tensor
    check: dict[str, Any] | None
    failures: dict[str, str] = field(default_factory=dict)


def drop_identities(
    stages: Sequence[tuple[str, nn.Module]], example: torch.Tensor
) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """The stages that change their input in eval mode, and the names of those that do not
    (they return the tensor object they were given, as augmentations do in eval mode)."""
    kept, omitted = [], []
    x = example
    with torch.no_grad():
        for name, stage in stages:
            y = stage.eval()(x)
            if y is x:
                omitted.append(name)
            else:
                kept.append((name, stage))
                x = y
    return kept, omitted


def export_chain(
    stages: Sequence[tuple[str, nn.Module]],
    final: tuple[str, nn.Module],
    example: torch.Tensor,
    fmt: str,
    path: Path,
    *,
    input_name: str,
    output_name: str,
) -> ExportedGraph:
    """Export ``final(stages(x))`` to ``path`` in ``fmt``, from the first stage that exports.

    ``example`` is a batch of at least 2 inputs of the first stage (the batch axis stays
    dynamic). Raises :class:`~mmkit.errors.ExportError` when not even ``final`` alone exports,
    ``OSError`` when ``path`` cannot be written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if example.shape[0] < 2:
        raise ValueError("the example batch needs at least 2 items (a size-1 axis is not dynamic)")
    if fmt == "onnx":
        _require_onnx()
    final_name, final_module = final
    final_module.eval()
    kept, omitted = drop_identities(stages, example)
    inputs = [example]
    with torch.no_grad():
        for _, stage in kept:
            inputs.append(stage(inputs[-1]))
    failures: dict[str, str] = {}
    for k in range(len(kept) + 1):
        module = Chain([m for _, m in kept[k:]], final_module).eval()
        first = kept[k][0] if k < len(kept) else final_name
        try:
            check = _write(fmt, module, inputs[k], path, input_name, output_name)
        except OSError:  # the file cannot be written (a full disk...): no other graph can be
            raise
        except Exception as exc:  # any exporter failure: try the graph without this stage
            failures[first] = _first_line(exc)
            continue
        with torch.no_grad():
            output = module(inputs[k][:1])
        return ExportedGraph(
            path=path,
            in_graph=[n for n, _ in kept[k:]] + [final_name],
            outside=[n for n, _ in kept[:k]],
            omitted=omitted,
            example_input=inputs[k][:1],
            example_output=output,
            check=check,
            failures=failures,
        )
    raise ExportError(f"cannot export {final_name} to {fmt}: {failures[final_name]}")


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript") if not _importable(m)]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: pip install 'mmkit[export]'")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporter progress lines and tracer warnings go nowhere (``--json`` keeps one document)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path``, renamed onto it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write(
    fmt: str,
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
) -> dict[str, Any] | None:
    """Write ``module`` traced on ``example``; return its parity check on a bigger batch."""
    probe = torch.cat([example, example[:1]])
    with torch.no_grad():
        reference = module(probe)
    with _staged(path) as tmp:
        if fmt == "onnx":
            _write_onnx(module, example, tmp, input_name, output_name)
            run = _onnxruntime_runner(tmp)
        else:
            run = _write_torchscript(module, example, tmp)
        check = None if run is None else _compare(run(probe), reference, fmt)
    return check


def _write_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str
) -> None:
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path), external_data=False)  # a failed write is an OSError of its own


def _onnxruntime_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run


def _write_torchscript(
    module: nn.Module, example: torch.Tensor, path: Path
) -> Callable[[torch.Tensor], torch.Tensor]:
    with torch.no_grad(), _quiet():
        # the traced graph is compared with eager PyTorch on another batch size below, which is
        # the check that matters (check_trace reruns the same batch and trips on benign
        # differences in constant numbering)
        traced = torch.jit.trace(module, (example,), check_trace=False)
    # serialised in memory and written by Python: torch.jit.save onto a full disk aborts the
    # process from C++ instead of raising
    data = io.BytesIO()
    torch.jit.save(traced, data)
    path.write_bytes(data.getvalue())

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return traced(x)

    return run


def _compare(got: torch.Tensor, reference: torch.Tensor, fmt: str) -> dict[str, Any]:
    if tuple(got.shape) != tuple(reference.shape):
        raise ExportError(
            f"the {fmt} graph gives shape {list(got.shape)} for a batch of {reference.shape[0]}, "
            f"PyTorch {list(reference.shape)}"
        )
    diff = float((got.float() - reference.float()).abs().max())
    scale = float(reference.float().abs().max())
    if not diff <= RTOL * max(scale, 1e-12):
        raise ExportError(
            f"the {fmt} graph differs from PyTorch by {diff:.3g} (largest value {scale:.3g})"
        )
    return {
        "runtime": "onnxruntime" if fmt == "onnx" else "torch.jit",
        "batch_size": int(reference.shape[0]),
        "max_abs_diff": diff,
        "max_abs_reference": scale,
    }
