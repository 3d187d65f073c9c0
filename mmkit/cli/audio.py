"""``mmkit audio prepare|train|eval|infer``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmkit.cli import common as c
from mmkit.cli.classify import add_eval_and_infer

app = typer.Typer(
    help="Audio classification: keyword spotting, sound events.", no_args_is_help=True
)

SampleRate = Annotated[
    int | None, typer.Option(help="Sample rate to decode to (default 16000).", show_default=False)
]
Duration = Annotated[
    float | None, typer.Option(help="Clip length in seconds (default 1.0).", show_default=False)
]
NMels = Annotated[int | None, typer.Option(help="Mel bands (default 64).", show_default=False)]
Classes = Annotated[
    str | None,
    typer.Option(
        help="Speech Commands: 'all' words or '12' (10 words + _unknown_ + _silence_).",
        show_default=False,
    ),
]
AudioColumn = Annotated[str | None, typer.Option(help="HF audio column.", show_default=False)]


def _config(config: Path | None, **flags: object):
    from mmkit.config import build_config
    from mmkit.pipelines.audio import AudioConfig

    return build_config(AudioConfig, config, flags)


@app.command()
def prepare(
    dataset: c.Dataset = None,
    out: c.StoreOut = None,
    sample_rate: SampleRate = None,
    classes: Classes = None,
    hf_config: c.HfConfig = None,
    audio_column: AudioColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    json_: c.Json = False,
) -> None:
    """Decode every file once into the prepared store and report what was found and skipped."""
    flags = c.config_flags(locals(), "out")
    from mmkit.pipelines import audio

    cfg = _config(config, **flags)
    store = audio.prepare(cfg, out=out, progress=c.progress_for(json_))
    c.render_prepare(store.summary(), json_)


@app.command()
def train(
    dataset: c.Dataset = None,
    out: c.Out = None,
    backbone: c.Backbone = None,
    epochs: c.Epochs = None,
    batch_size: c.BatchSize = None,
    lr: c.Lr = None,
    seed: c.Seed = None,
    device: c.Device = None,
    resume: c.Resume = False,
    sample_rate: SampleRate = None,
    duration: Duration = None,
    n_mels: NMels = None,
    classes: Classes = None,
    augment: c.Augment = None,
    num_workers: c.Workers = None,
    hf_config: c.HfConfig = None,
    audio_column: AudioColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    json_: c.Json = False,
) -> None:
    """Train a classifier (prepares the dataset first when needed)."""
    flags = c.config_flags(locals(), "resume")
    from mmkit.pipelines import audio

    cfg = _config(config, **flags)
    result = audio.train(cfg, resume=resume, progress=c.progress_for(json_))
    c.render_train(result.to_dict(), json_)


add_eval_and_infer(
    app,
    "audio",
    config="AudioConfig",
    infer_help="Classify files; clips longer than the training duration get per-window results.",
)
