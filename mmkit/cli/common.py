"""Options shared by the commands, as reusable ``Annotated`` types.

An option that fills a config field defaults to None here, meaning "not given": only what is
typed on the command line overrides ``--config``/``--set`` (see :mod:`mmkit.cli.binding`), and
``--help`` shows the field's per-modality default, filled in by
:func:`mmkit.cli.binding.show_config_defaults`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from mmkit.configs import FREEZE

DEVICES = ("auto", "cpu", "cuda")


def parse_device(value: str) -> str:
    """auto, cpu, cuda, or one GPU as ``cuda:N``."""
    if value in DEVICES or re.fullmatch(r"cuda:\d+", value):
        return value
    raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N.")


# -- options shared by every modality --------------------------------------------------------
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="Folder, CSV/JSONL manifest, HF dir/parquet, hub id or alias.",
        show_default=False,
    ),
]
StoreOut = Annotated[
    str | None,
    typer.Option(
        "--out", "-o", help="Store directory (default: the mmkit cache).", show_default=False
    ),
]
Paths = Annotated[list[str], typer.Argument(help="Media files or folders.", show_default=False)]
Out = Annotated[
    str | None, typer.Option("--out", "-o", help="Run directory to write.", show_default=False)
]
Backbone = Annotated[
    str | None, typer.Option(help="Registered backbone (see `mmkit list`).", show_default=False)
]
Epochs = Annotated[int | None, typer.Option(help="Training epochs.", show_default=False, min=1)]
BatchSize = Annotated[int | None, typer.Option(help="Batch size.", show_default=False, min=1)]
Lr = Annotated[
    float | None,
    typer.Option(help="Peak learning rate (AdamW, warmup + cosine).", show_default=False),
]
Seed = Annotated[int | None, typer.Option(help="Seed for every random choice.", show_default=False)]
Device = Annotated[
    str | None,
    typer.Option(
        parser=parse_device,
        metavar="[auto|cpu|cuda|cuda:N]",
        autocompletion=lambda: list(DEVICES),
        help="Where to run.",
        show_default=False,
    ),
]
WeightDecay = Annotated[
    float | None, typer.Option(help="AdamW weight decay.", show_default=False, min=0.0)
]
Warmup = Annotated[
    float | None,
    typer.Option(help="Fraction of the steps spent warming up the lr.", show_default=False),
]
Patience = Annotated[
    int | None,
    typer.Option(
        help="Stop after this many epochs without a better validation score (0: never).",
        show_default=False,
        min=0,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        help="DataLoader worker processes (default: one per two cores, 1 to 4).",
        show_default=False,
        min=0,
    ),
]
PrepareWorkers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Decoding workers: processes for audio, threads for video and images (default: one "
        "per core, at most 8; 1 decodes in the process); config key prepare_workers.",
        show_default=False,
        min=1,
    ),
]
SPEED = "Speed"
Threads = Annotated[
    int | None,
    typer.Option(
        help="Torch intra-op threads (0: one per core).",
        show_default=False,
        min=0,
        rich_help_panel=SPEED,
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model for training (the first steps compile; see the README).",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]
ChannelsLast = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last",
        help="Channels-last memory format for the conv weights (conv nets).",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]
Logger = Annotated[
    Literal["auto", "tensorboard", "csv", "none"] | None,
    typer.Option(
        help="Per-epoch metrics besides metrics.jsonl and curves.png: TensorBoard events "
        "(run_dir/tensorboard), metrics.csv, or none; auto = tensorboard when installed.",
        show_default=False,
    ),
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
]
Augment = Annotated[
    bool | None,
    typer.Option("--augment/--no-augment", help="Training augmentation.", show_default=False),
]
FINETUNE = "Fine-tuning"
PretrainedSource = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="Initial weights: an mmkit run or checkpoint directory (its backbone; its head too "
        "when the labels are the same), a weights tag of --backbone (see `mmkit describe "
        "BACKBONE`), or a weights file (safetensors, or a torch state dict).",
        show_default=False,
        rich_help_panel=FINETUNE,
    ),
]
Freeze = Annotated[
    Literal[FREEZE] | None,
    typer.Option(
        help="backbone: train the head only (a linear probe; BatchNorm statistics frozen too).",
        show_default=False,
        rich_help_panel=FINETUNE,
    ),
]
BackboneLrScale = Annotated[
    float | None,
    typer.Option(
        help="The backbone's learning rate as a fraction of --lr (the head keeps --lr).",
        show_default=False,
        rich_help_panel=FINETUNE,
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML/JSON experiment file (keys = config keys); --set and flags override it.",
        exists=False,
        show_default=False,
    ),
]
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint", "-k", help="Run directory (its best checkpoint) or checkpoint directory."
    ),
]
Split = Annotated[
    Literal["auto", "test", "validation", "train", "all"],
    typer.Option(
        help="auto: the test split of a dataset with splits, every item of one without (or the "
        "held-back test part of the dataset the checkpoint trained on); test, validation, "
        "train; or all."
    ),
]
TopK = Annotated[int, typer.Option("--top-k", help="How many labels to show per file.", min=1)]
Json = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Any config key, repeatable; dotted for nested keys (backbone_kwargs.width=64), "
        "values in YAML ([0, 20], null). Beats --config, loses to explicit flags.",
        show_default=False,
    ),
]
HF = "Hugging Face datasets"
HfConfig = Annotated[
    str | None,
    typer.Option(help="HF dataset config name.", show_default=False, rich_help_panel=HF),
]
LabelColumn = Annotated[
    str | None, typer.Option(help="HF label column.", show_default=False, rich_help_panel=HF)
]
