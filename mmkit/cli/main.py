"""The ``mmkit`` entry point: sub-apps per modality, plugin listing, demo and bench.

The error boundary lives here: an :class:`~mmkit.errors.MmkitError` becomes one line on stderr and
exit code 1 (``MMKIT_DEBUG=1`` re-raises it with its traceback); usage errors exit 2.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Annotated, Any, NoReturn

import typer

from mmkit import __version__
from mmkit.cli import audio, export, mm, plugins, video
from mmkit.cli.bench_output import render_bench, render_scale
from mmkit.cli.binding import command, show_config_defaults
from mmkit.cli.common import Device, Json
from mmkit.cli.exits import exit_now
from mmkit.cli.output import (
    err,
    mapping_tables,
    one_line,
    out,
    print_json,
    progress_for,
)
from mmkit.errors import MmkitError, PeerLost, RanksDisagree, TrainingInterrupted
from mmkit.io.files import os_reason, shared_memory_reason

MODALITIES = ("audio", "video", "mm")

app = typer.Typer(
    name="mmkit",
    help="Audio, video and image-text deep-learning experiments from one command line.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(audio.app, name="audio")
app.add_typer(video.app, name="video")
app.add_typer(mm.app, name="mm")
plugins.register(app)
export.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Audio, video and image-text deep-learning experiments from one command line."""


@command(app, cli_only=("out_dir", "only"), example="mmkit demo --only audio")
def demo(
    out_dir: Annotated[
        str, typer.Option("--out", "-o", help="Where the demo runs go.")
    ] = "runs/demo",
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="[audio|video|mm]",
            autocompletion=lambda: list(MODALITIES),
            help="Run only this modality (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_: Json = False,
) -> None:
    """Train, evaluate and infer on the small data sets embedded in examples/ (a few minutes)."""
    from mmkit.pipelines.demo import run_demo

    summary = run_demo(out_dir, progress_for(json_), only)
    if json_:
        print_json(summary)
        return
    for modality, part in summary.items():
        out.rule(f"[bold]{modality}")
        for piece in mapping_tables(modality, part):
            out.print(piece, highlight=False)


SCALE_KINDS = ("speech_commands", "ucf101", "coco")
SCALE = "Scale (--scale)"


@command(
    app,
    cli_only=(
        "modality",
        "device",
        "quick",
        "scale",
        "scale_kinds",
        "scale_fractions",
        "scale_data",
    ),
    example="mmkit bench -m audio --json",
)
def bench(
    modality: Annotated[
        list[str] | None,
        typer.Option(
            "--modality",
            "-m",
            metavar="[audio|video|mm]",
            autocompletion=lambda: list(MODALITIES),
            help="Benchmark only this modality (repeatable).",
            show_default=False,
        ),
    ] = None,
    device: Device = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny data and models: checks every part runs.")
    ] = False,
    scale: Annotated[
        bool,
        typer.Option(
            "--scale",
            help="Instead: prepare, one epoch, eval and infer on real-size generated Speech "
            "Commands, UCF101 (a quarter) and COCO captions at 1/64..1 (hours at full size).",
            rich_help_panel=SCALE,
        ),
    ] = False,
    scale_kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--scale-kinds",
            metavar="[speech_commands|ucf101|coco]",
            autocompletion=lambda: list(SCALE_KINDS),
            help="Only this data set (repeatable; default all).",
            show_default=False,
            rich_help_panel=SCALE,
        ),
    ] = None,
    scale_fractions: Annotated[
        list[str] | None,
        typer.Option(
            "--scale-fractions",
            metavar="F[,F...]",
            help="Fractions of full size (repeatable or comma-separated; default 1/64,1/16,1/4,1).",
            show_default=False,
            rich_help_panel=SCALE,
        ),
    ] = None,
    scale_data: Annotated[
        str | None,
        typer.Option(
            "--scale-data",
            help="Where the generated data sets are kept (default: $MMKIT_CACHE/scale).",
            show_default=False,
            rich_help_panel=SCALE,
        ),
    ] = None,
    json_: Json = False,
) -> None:
    """Real training epochs against the model's own speed and the paths users would otherwise
    take; cold start; how prepare and an epoch grow. Ratios with targets (a few minutes)."""
    from mmkit.pipelines.bench import BenchSettings, run_bench

    if scale or scale_kinds or scale_fractions or scale_data:
        _bench_scale(
            modality, scale, scale_kinds, scale_fractions, scale_data, device, quick, json_
        )
        return
    settings = BenchSettings.quick() if quick else BenchSettings()
    report = run_bench(modality, device or "auto", settings, progress_for(json_))
    if json_:
        print_json(report)
        return
    render_bench(report)


def _bench_scale(
    modality: list[str] | None,
    scale: bool,
    kinds: list[str] | None,
    fractions: list[str] | None,
    data: str | None,
    device: str | None,
    quick: bool,
    json_: bool,
) -> None:
    from mmkit.pipelines.bench.scale import FRACTIONS, KINDS, ScaleSettings, run_scale

    if not scale:
        raise typer.BadParameter("the --scale-* options need --scale", param_hint="'--scale'")
    if modality:
        raise typer.BadParameter(
            "--modality does not apply to --scale; use --scale-kinds", param_hint="'--modality'"
        )
    chosen = {
        "kinds": tuple(kinds or KINDS),
        "fractions": tuple(f for f in ",".join(fractions or FRACTIONS).split(",") if f.strip()),
        "data": data,
    }
    settings = ScaleSettings.quick(**chosen) if quick else ScaleSettings(**chosen)
    report = run_scale(settings, device or "auto", progress_for(json_))
    if json_:
        print_json(report)
        return
    render_scale(report)


def build_command() -> Any:
    """The click command tree of ``app``, each config option showing its modality's default."""
    root = typer.main.get_command(app)
    show_config_defaults(root)
    return root


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 ok, 1 user/media error (one line), 2 usage error, 130 interrupted.

    Click's standalone mode handles usage errors (exit 2), ``--help`` and ``Exit``; mmkit's own
    errors come through here and become one line on stderr.
    """
    # an image over PIL.Image.MAX_IMAGE_PIXELS is refused in one line (mmkit.io.image): Pillow's
    # warning about it would be a second line
    warnings.filterwarnings("ignore", r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    debug = os.environ.get("MMKIT_DEBUG", "0") not in ("", "0")
    try:
        build_command().main(args=argv, prog_name="mmkit", standalone_mode=True)
    except MmkitError as exc:
        if isinstance(exc, TrainingInterrupted):
            if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks for all
                err.print(
                    f"interrupted: {one_line(str(exc))}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            sys.exit(130)
        if isinstance(exc, RanksDisagree) and os.environ.get("RANK", "0") != "0":
            sys.exit(1)  # rank 0 says it for every rank
        if debug:
            raise
        _fail(str(exc), at_once=isinstance(exc, PeerLost))
    except OSError as exc:  # a full disk where no module named the file: still one line
        if debug or exc.errno not in DISK_ERRORS:
            raise
        _fail(f"cannot write {exc.filename or 'a file'}: {os_reason(exc)}")
    except RuntimeError as exc:  # DataLoader workers on a full /dev/shm (e.g. docker's 64 MB)
        reason = shared_memory_reason(exc)
        if debug or reason is None:
            raise
        _fail(
            f"the DataLoader workers cannot pass batches through shared memory: {reason}; "
            "make room in /dev/shm (docker: --shm-size) or pass --num-workers 0"
        )


DISK_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)


def _fail(message: str, at_once: bool = False) -> NoReturn:
    """``error: MESSAGE`` on stderr and exit 1; ``at_once`` skips the interpreter's teardown
    (a torchrun peer was lost: closing the broken process group or the DataLoader workers may
    block, and torchrun would wait 30 s before killing the process)."""
    text = one_line(message)
    err.print(f"error: {text}", style="red", highlight=False, markup=False, soft_wrap=True)
    if at_once:
        exit_now(1)
    sys.exit(1)
