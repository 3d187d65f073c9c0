"""``mmkit audio prepare|train|eval|infer``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from mmkit.cli import common as c
from mmkit.cli import output as o
from mmkit.cli.binding import command, config_from
from mmkit.cli.classify import add_eval_and_infer
from mmkit.configs import SPEECH_COMMANDS_CLASSES, AudioConfig

app = typer.Typer(
    help="Audio classification: keyword spotting, sound events.", no_args_is_help=True
)

LOG_MEL = "Log-mel (torchaudio MelSpectrogram)"
SampleRate = Annotated[
    int | None, typer.Option(help="Sample rate to decode to (Hz).", show_default=False)
]
Duration = Annotated[float | None, typer.Option(help="Clip length in seconds.", show_default=False)]
NMels = Annotated[
    int | None, typer.Option(help="Mel bands.", show_default=False, rich_help_panel=LOG_MEL)
]
NFft = Annotated[
    int | None,
    typer.Option(help="FFT size (samples).", show_default=False, rich_help_panel=LOG_MEL),
]
WinLength = Annotated[
    int | None,
    typer.Option(help="Window length (samples).", show_default=False, rich_help_panel=LOG_MEL),
]
HopLength = Annotated[
    int | None,
    typer.Option(help="Hop between frames (samples).", show_default=False, rich_help_panel=LOG_MEL),
]
FMin = Annotated[
    float | None,
    typer.Option(help="Lowest mel frequency (Hz).", show_default=False, rich_help_panel=LOG_MEL),
]
FMax = Annotated[
    float | None,
    typer.Option(
        help="Highest mel frequency (Hz); default: half the sample rate.",
        show_default=False,
        rich_help_panel=LOG_MEL,
    ),
]
Classes = Annotated[
    Literal[SPEECH_COMMANDS_CLASSES] | None,
    typer.Option(
        help="Speech Commands: every word, or 12 (10 words + _unknown_ + _silence_).",
        show_default=False,
    ),
]
AudioColumn = Annotated[
    str | None, typer.Option(help="HF audio column.", show_default=False, rich_help_panel=c.HF)
]


@command(
    app,
    AudioConfig,
    cli_only=("out",),
    rename={"workers": "prepare_workers"},
    example="mmkit audio prepare --dataset ./speech_commands_v0.02 --classes 12",
)
def prepare(
    ctx: typer.Context,
    dataset: c.Dataset = None,
    out: c.StoreOut = None,
    workers: c.PrepareWorkers = None,
    sample_rate: SampleRate = None,
    classes: Classes = None,
    hf_config: c.HfConfig = None,
    audio_column: AudioColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Decode every file once into the prepared store and report what was found and skipped."""
    cfg = config_from(ctx)
    from mmkit.pipelines import audio

    store = audio.prepare(cfg, out=out, progress=o.progress_for(json_))
    o.render_prepare(store.summary(), json_)


@command(
    app,
    AudioConfig,
    cli_only=("resume",),
    example="mmkit audio train --dataset speech_commands --classes 12 --out runs/kws",
)
def train(
    ctx: typer.Context,
    dataset: c.Dataset = None,
    out: c.Out = None,
    backbone: c.Backbone = None,
    epochs: c.Epochs = None,
    batch_size: c.BatchSize = None,
    lr: c.Lr = None,
    weight_decay: c.WeightDecay = None,
    warmup: c.Warmup = None,
    patience: c.Patience = None,
    seed: c.Seed = None,
    device: c.Device = None,
    resume: c.Resume = False,
    pretrained: c.PretrainedSource = None,
    freeze: c.Freeze = None,
    backbone_lr_scale: c.BackboneLrScale = None,
    sample_rate: SampleRate = None,
    duration: Duration = None,
    classes: Classes = None,
    augment: c.Augment = None,
    n_mels: NMels = None,
    n_fft: NFft = None,
    win_length: WinLength = None,
    hop_length: HopLength = None,
    f_min: FMin = None,
    f_max: FMax = None,
    num_workers: c.Workers = None,
    threads: c.Threads = None,
    compile: c.Compile = None,
    channels_last: c.ChannelsLast = None,
    logger: c.Logger = None,
    hf_config: c.HfConfig = None,
    audio_column: AudioColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Train a classifier (prepares the dataset first when needed)."""
    cfg = config_from(ctx)
    from mmkit.pipelines import audio

    result = audio.train(cfg, resume=resume, progress=o.progress_for(json_))
    o.render_train(result.to_dict(), json_)


add_eval_and_infer(
    app,
    "audio",
    AudioConfig,
    eval_example="mmkit audio eval --checkpoint runs/kws --dataset speech_commands --json",
    infer_example="mmkit audio infer clip.wav long_recording.flac --checkpoint runs/kws",
    infer_help="Classify files; clips longer than the training duration get per-window results.",
)
