"""``mmkit mm prepare|train|eval|sim``: image-text (CLIP-style) models."""

from __future__ import annotations

from typing import Annotated

import typer

from mmkit.cli import common as c
from mmkit.cli import output as o
from mmkit.cli.binding import command, config_from
from mmkit.configs import MMConfig

app = typer.Typer(
    help="Image-text models: CLIP-style training, retrieval, zero-shot, similarity.",
    no_args_is_help=True,
)

ImageSize = Annotated[
    int | None,
    typer.Option(
        help="Image side in pixels; default: clip_lite 64, open_clip the model's.",
        min=8,
        show_default=False,
    ),
]
ContextLength = Annotated[
    int | None,
    typer.Option(
        help="Tokens per caption; default: clip_lite 32, open_clip 77.",
        min=3,
        show_default=False,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        help="open_clip architecture (e.g. ViT-B-32), model-config JSON file or hf-hub:ORG/REPO.",
        show_default=False,
    ),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        help="open_clip weights: a local file, a tag or hf-hub:ORG/REPO (tags and hub need the "
        "network or a warm cache); their preprocessing comes with them.",
        show_default=False,
    ),
]
Prompt = Annotated[
    str | None,
    typer.Option(help="Zero-shot prompt template; default: 'a photo of a {}'.", show_default=False),
]
ImageColumn = Annotated[
    str | None, typer.Option(help="HF image column.", show_default=False, rich_help_panel=c.HF)
]
TextColumn = Annotated[
    str | None, typer.Option(help="HF caption column.", show_default=False, rich_help_panel=c.HF)
]
Checkpoint = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        "-k",
        help="Run or checkpoint directory (or use --model).",
        show_default=False,
    ),
]


def _one_source(checkpoint: str | None, model: str | None) -> None:
    """Usage error (exit 2) unless exactly one of --checkpoint / --model is given."""
    if (checkpoint is None) == (model is None):
        raise typer.BadParameter(
            "give either --checkpoint or --model (with --pretrained)",
            param_hint="'--checkpoint' / '--model'",
        )


@command(
    app,
    MMConfig,
    cli_only=("out",),
    rename={"workers": "prepare_workers"},
    example="mmkit mm prepare --dataset ./flickr8k --json",
)
def prepare(
    ctx: typer.Context,
    dataset: c.Dataset = None,
    out: c.StoreOut = None,
    workers: c.PrepareWorkers = None,
    image_size: ImageSize = None,
    context_length: ContextLength = None,
    model: Model = None,
    hf_config: c.HfConfig = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Decode every image and tokenise every caption once; report counts and skipped files."""
    cfg = config_from(ctx)
    from mmkit.pipelines import mm

    summary = mm.summary(mm.prepare(cfg, out=out, progress=o.progress_for(json_)))
    if json_:
        o.print_json(summary)
        return
    o.out.print(f"prepared store: [bold]{summary['path']}[/bold]")
    o.out.print(o.split_source_line(summary["split_source"]), highlight=False)
    rows = [[s, n["images"], n["captions"]] for s, n in summary["splits"].items()]
    o.out.print(o.table("images and captions per split", ["split", "images", "captions"], rows))
    if summary["labels"]:
        o.out.print(f"classes: {', '.join(summary['labels'])}", highlight=False)
    o.render_skipped(summary["skipped"], show=len(summary["skipped"]))


@command(
    app,
    MMConfig,
    cli_only=("resume",),
    example="mmkit mm train --dataset ./flickr8k --out runs/clip --epochs 30",
)
def train(
    ctx: typer.Context,
    dataset: c.Dataset = None,
    out: c.Out = None,
    backbone: c.Backbone = None,
    model: Model = None,
    pretrained: Pretrained = None,
    epochs: c.Epochs = None,
    batch_size: c.BatchSize = None,
    lr: c.Lr = None,
    weight_decay: c.WeightDecay = None,
    warmup: c.Warmup = None,
    patience: c.Patience = None,
    seed: c.Seed = None,
    device: c.Device = None,
    resume: c.Resume = False,
    image_size: ImageSize = None,
    context_length: ContextLength = None,
    prompt: Prompt = None,
    augment: c.Augment = None,
    num_workers: c.Workers = None,
    threads: c.Threads = None,
    compile: c.Compile = None,
    channels_last: c.ChannelsLast = None,
    logger: c.Logger = None,
    hf_config: c.HfConfig = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Train an image-text model contrastively (prepares the dataset first when needed)."""
    cfg = config_from(ctx)
    from mmkit.pipelines import mm

    result = mm.train(cfg, resume=resume, progress=o.progress_for(json_))
    o.render_train(result.to_dict(), json_)


@command(
    app,
    MMConfig,
    name="eval",
    cli_only=("checkpoint", "split"),
    example="mmkit mm eval --checkpoint runs/clip --dataset ./flickr8k --json",
)
def eval_(
    ctx: typer.Context,
    checkpoint: Checkpoint = None,
    dataset: c.Dataset = None,
    split: c.Split = "auto",
    model: Model = None,
    pretrained: Pretrained = None,
    prompt: Prompt = None,
    device: c.Device = None,
    hf_config: c.HfConfig = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    label_column: c.LabelColumn = None,
    config: c.ConfigFile = None,
    set_: c.Set = None,
    json_: c.Json = False,
) -> None:
    """Recall@1/5/10 and mean/median rank both ways; zero-shot accuracy when labelled.

    Image size and context length come from the checkpoint (or the open_clip model).
    """
    _one_source(checkpoint, model)
    cfg = config_from(ctx)
    from mmkit.pipelines import mm

    result = mm.evaluate(checkpoint, cfg, split=split, progress=o.progress_for(json_))
    if json_:
        o.print_json(result)
        return
    names = ("R@1", "R@5", "R@10", "mean_rank", "median_rank")
    rows = [[d, *(result[d][n] for n in names)] for d in ("image_to_text", "text_to_image")]
    title = f"{result['split']}: {result['num_images']} images, {result['num_pairs']} captions"
    o.out.print(o.table(title, ["direction", *names], rows))
    o.render_skipped(result.get("skipped", []))
    if "zero_shot_accuracy" in result:
        prompt_used = result["zero_shot"]["prompt"]
        o.out.print(
            f"zero-shot accuracy [bold]{result['zero_shot_accuracy']:.4f}[/bold] ({prompt_used!r})",
            highlight=False,
        )


@command(
    app,
    cli_only=("args", "checkpoint", "model", "pretrained", "device"),
    example='mmkit mm sim img.jpg "a dog" "a cat" --checkpoint runs/clip',
)
def sim(
    args: Annotated[
        list[str],
        typer.Argument(
            help="IMAGE [IMAGE...] TEXT [TEXT...]: leading existing files/folders are images.",
            metavar="IMAGE... TEXT...",
            show_default=False,
        ),
    ],
    checkpoint: Checkpoint = None,
    model: Model = None,
    pretrained: Pretrained = None,
    device: c.Device = None,
    json_: c.Json = False,
) -> None:
    """Cosine similarity and softmax probability of images and texts, best first.

    One image: {"image", "scores": [{"text", "similarity", "probability"}]} ranks the texts.

    Several images, one text: {"text", "scores": [{"image", ...}]} ranks the images.

    Several of both: a list with one {"image", "scores"} per image.
    """
    _one_source(checkpoint, model)
    from mmkit.io.files import path_exists  # False for a caption too long to be a file name

    n_images = next((i for i, a in enumerate(args) if i and not path_exists(a)), len(args))
    images, texts = args[:n_images], args[n_images:]
    if not texts:
        raise typer.BadParameter("give an image and at least one text", param_hint="IMAGE TEXT...")
    from mmkit.pipelines import mm

    result = mm.sim(
        images, texts, checkpoint, model=model, pretrained=pretrained, device=device or "auto"
    )
    if json_:
        o.print_json(result)
        return
    for entry in result if isinstance(result, list) else [result]:
        query, key = ("image", "text") if "image" in entry else ("text", "image")
        o.out.print(f"[bold]{o.shown(entry[query])}[/bold]", highlight=False)
        for s in entry["scores"]:
            o.out.print(
                f"  {s['similarity']:+.4f}  {s['probability']:.3f}  {o.shown(s[key])}",
                highlight=False,
            )
