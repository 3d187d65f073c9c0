"""``mmkit video prepare|train|eval|infer``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmkit.cli import common as c
from mmkit.cli.classify import add_eval_and_infer

app = typer.Typer(help="Video classification: actions, gestures, motion.", no_args_is_help=True)

Frames = Annotated[
    int | None, typer.Option(help="Frames per clip (default 16).", show_default=False)
]
Size = Annotated[
    int | None, typer.Option(help="Crop size in pixels (default 64).", show_default=False)
]
Sampling = Annotated[
    str | None,
    typer.Option(
        help="'random' clips (test: --num-clips averaged) or 'uniform' over the video.",
        show_default=False,
    ),
]
NumClips = Annotated[
    int | None, typer.Option(help="Test-time clips averaged (default 3).", show_default=False)
]
Hflip = Annotated[
    bool | None,
    typer.Option(
        "--hflip/--no-hflip",
        show_default=False,
        help="Random horizontal flips (off: they swap left/right).",
    ),
]
Fold = Annotated[int | None, typer.Option(help="UCF101 split list 1-3.", show_default=False)]
VideoColumn = Annotated[str | None, typer.Option(help="HF video column.", show_default=False)]


def _config(config: Path | None, **flags: object):
    from mmkit.config import build_config
    from mmkit.pipelines.video import VideoConfig

    return build_config(VideoConfig, config, flags)


@app.command()
def prepare(
    dataset: c.Dataset = None,
    out: c.StoreOut = None,
    size: Size = None,
    fold: Fold = None,
    hf_config: c.HfConfig = None,
    video_column: VideoColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    json_: c.Json = False,
) -> None:
    """Decode every video once into the frame store and report what was found and skipped."""
    flags = c.config_flags(locals(), "out")
    from mmkit.pipelines import video

    cfg = _config(config, **flags)
    store = video.prepare(cfg, out=out, progress=c.progress_for(json_))
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
    frames: Frames = None,
    size: Size = None,
    sampling: Sampling = None,
    num_clips: NumClips = None,
    hflip: Hflip = None,
    fold: Fold = None,
    num_workers: c.Workers = None,
    hf_config: c.HfConfig = None,
    video_column: VideoColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    json_: c.Json = False,
) -> None:
    """Train a classifier (prepares the dataset first when needed)."""
    flags = c.config_flags(locals(), "resume")
    from mmkit.pipelines import video

    cfg = _config(config, **flags)
    result = video.train(cfg, resume=resume, progress=c.progress_for(json_))
    c.render_train(result.to_dict(), json_)


add_eval_and_infer(
    app,
    "video",
    config="VideoConfig",
    infer_help="Classify video files (scores averaged over the test-time clips).",
)
