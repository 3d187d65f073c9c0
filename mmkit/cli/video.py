"""``mmkit video prepare|train|eval|infer``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from mmkit.cli import common as c
from mmkit.cli import output as o
from mmkit.cli.binding import command, config_from
from mmkit.cli.classify import add_eval_and_infer
from mmkit.configs import SAMPLINGS, STORE_FORMATS, VideoConfig

app = typer.Typer(help="Video classification: actions, gestures, motion.", no_args_is_help=True)

Frames = Annotated[int | None, typer.Option(help="Frames per clip.", show_default=False, min=1)]
Size = Annotated[int | None, typer.Option(help="Crop size in pixels.", show_default=False)]
Sampling = Annotated[
    Literal[SAMPLINGS] | None,
    typer.Option(
        help="'random' clips (test: --num-clips averaged) or 'uniform' over the video.",
        show_default=False,
    ),
]
FrameInterval = Annotated[
    int | None,
    typer.Option(help="Step between sampled frames ('random').", show_default=False, min=1),
]
NumClips = Annotated[
    int | None, typer.Option(help="Test-time clips averaged.", show_default=False, min=1)
]
Hflip = Annotated[
    bool | None,
    typer.Option(
        "--hflip/--no-hflip",
        show_default=False,
        help="Random horizontal flips (off: they swap left/right).",
    ),
]
Fold = Annotated[
    int | None, typer.Option(help="UCF101 split list (1-3).", show_default=False, min=1)
]
StoreFormat = Annotated[
    Literal[STORE_FORMATS] | None,
    typer.Option(
        help="Frames in the store: raw uint8, or JPEG (several times smaller on disk, decoded "
        "by the loader workers).",
        show_default=False,
    ),
]
VideoColumn = Annotated[
    str | None, typer.Option(help="HF video column.", show_default=False, rich_help_panel=c.HF)
]


@command(
    app,
    VideoConfig,
    cli_only=("out",),
    rename={"workers": "prepare_workers"},
    example="mmkit video prepare --dataset ./UCF101 --fold 1 --size 112",
)
def prepare(
    ctx: typer.Context,
    dataset: c.Dataset = None,
    out: c.StoreOut = None,
    workers: c.PrepareWorkers = None,
    size: Size = None,
    fold: Fold = None,
    store_format: StoreFormat = None,
    hf_config: c.HfConfig = None,
    video_column: VideoColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Decode every video once into the frame store and report what was found and skipped."""
    cfg = config_from(ctx)
    from mmkit.pipelines import video

    store = video.prepare(cfg, out=out, progress=o.progress_for(json_))
    o.render_prepare(store.summary(), json_)


@command(
    app,
    VideoConfig,
    cli_only=("resume",),
    example="mmkit video train --dataset ./UCF101 --out runs/ucf --frames 16 --size 112",
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
    frames: Frames = None,
    size: Size = None,
    sampling: Sampling = None,
    frame_interval: FrameInterval = None,
    num_clips: NumClips = None,
    hflip: Hflip = None,
    fold: Fold = None,
    store_format: StoreFormat = None,
    num_workers: c.Workers = None,
    threads: c.Threads = None,
    compile: c.Compile = None,
    channels_last: c.ChannelsLast = None,
    logger: c.Logger = None,
    hf_config: c.HfConfig = None,
    video_column: VideoColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Train a classifier (prepares the dataset first when needed)."""
    cfg = config_from(ctx)
    from mmkit.pipelines import video

    result = video.train(cfg, resume=resume, progress=o.progress_for(json_))
    o.render_train(result.to_dict(), json_)


add_eval_and_infer(
    app,
    "video",
    VideoConfig,
    eval_example="mmkit video eval --checkpoint runs/ucf --dataset ./UCF101 --json",
    infer_example="mmkit video infer clip.mp4 --checkpoint runs/ucf --top-k 5",
    infer_help="Classify video files (scores averaged over the test-time clips).",
)
