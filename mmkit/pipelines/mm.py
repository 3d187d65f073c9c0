"""Image-text (CLIP-style) models: ``prepare`` / ``train`` / ``evaluate`` / ``sim``.

Flow: captioned images (:mod:`mmkit.data.captions`) --prepare--> a store of ``uint8 [S, S, 3]``
images (short-side resize + centre crop, decoded once) with every caption's token ids and image
index as extras --> :class:`~mmkit.tasks.contrastive.ClipPipeline` (``image_transform`` on the
device, then the model) --> the one Trainer --> a checkpoint whose ``config.json`` alone rebuilds
the model, the image transform and the tokenizer.

The model is a registered mm backbone (``clip_lite`` by default, ``--image-size`` and
``--context-length`` set its towers) or, with ``--model NAME``, any open_clip architecture (an
open_clip model-config JSON file or ``open_clip_config.json``, registered under its file or
folder name, or ``hf-hub:ORG/REPO``, registered as ``ORG--REPO``: see
:mod:`mmkit.backbones.open_clip_sources`); ``--pretrained PATH_OR_TAG`` loads open_clip weights
(a hub model's own by default), usable by ``sim`` and ``evaluate`` directly and as the starting
point of ``train``. Images are fitted into the model's input size the way its weights expect
(``resize_mode`` / ``interpolation`` of the tag or hub config, as open_clip's eval transform),
when the store is prepared and in ``sim``; the checkpoint keeps that setting.

``sim`` output (see :func:`sim`): one image with texts ranks the texts, several images with one
text rank the images, several of both give one ranking of the texts per image.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import mmkit
from mmkit import distributed
from mmkit.configs import MMConfig
from mmkit.data.captions import CaptionOptions
from mmkit.data.mm_store import class_names, decode_image, prepare_store, summary
from mmkit.data.sources import expand_paths
from mmkit.data.splits import eval_selection, training_splits
from mmkit.data.store import Store
from mmkit.engine.placement import resolve_device
from mmkit.engine.run import Job, fit
from mmkit.engine.state import TrainResult
from mmkit.errors import CheckpointError, UserInputError
from mmkit.events import NullProgress, Progress
from mmkit.io.checkpoint_dir import build_checked, read_spec, resolve_checkpoint_dir
from mmkit.io.image import IMAGE_EXTENSIONS, RESIZE_DEFAULTS, check_resize
from mmkit.registry import BACKBONES, PREPROCESSORS, create_preprocessor
from mmkit.spec import CheckpointSpec
from mmkit.tasks.checks import check_finite
from mmkit.tasks.contrastive import (
    CaptionImages,
    CaptionPairs,
    ClipParts,
    ClipPipeline,
    ContrastiveTask,
    build_contrastive,
    create_pipeline,
)

__all__ = ["MMConfig", "evaluate", "load_clip", "prepare", "sim", "summary", "train"]

DEFAULT_PROMPT = "a photo of a {}"
IMAGE_EXTS = tuple(sorted(IMAGE_EXTENSIONS))


def caption_options(cfg: MMConfig) -> CaptionOptions:
    return CaptionOptions(
        image_column=cfg.image_column,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        hf_config=cfg.hf_config,
        hf_split=cfg.hf_split,
    )


# -- the model ---------------------------------------------------------------------------------
def model_spec(cfg: MMConfig) -> tuple[str, dict[str, Any]]:
    """(backbone name, kwargs) that build ``cfg``'s model, pretrained weights left out but not
    their preprocessing: an ``hf-hub:`` or JSON ``--model`` is resolved to a plain name + its
    architecture config and preprocessing (fetching the hub's ``open_clip_config.json``), a
    ``--pretrained`` tag brings its preprocessing from open_clip's metadata (so ``prepare`` and
    ``train --resume`` fit images as the weights expect without fetching them)."""
    if cfg.model:
        from mmkit.backbones.open_clip_sources import resolve_arch, tag_preprocess_cfg

        arch = resolve_arch(cfg.model, cfg.backbone_kwargs.get("model_kwargs"))
        preprocess = arch.preprocess_cfg
        if not preprocess and cfg.pretrained:
            preprocess = tag_preprocess_cfg(arch.name, cfg.pretrained)
        return "open_clip_model", {
            "model_name": arch.name,
            "pretrained": None,
            "force_image_size": cfg.image_size,
            "force_context_length": cfg.context_length,
            "model_kwargs": arch.model_kwargs,
            "preprocess_cfg": preprocess or None,
        }
    spec = BACKBONES.get(cfg.backbone)
    if spec.modality != "mm":
        raise UserInputError(
            f"backbone {cfg.backbone!r} is a {spec.modality} backbone; image-text training takes "
            f"one of {', '.join(BACKBONES.names('mm'))} (or --model for open_clip)"
        )
    kwargs = copy.deepcopy(cfg.backbone_kwargs)
    if cfg.image_size:
        kwargs["image_kwargs"] = dict(kwargs.get("image_kwargs") or {}, image_size=cfg.image_size)
    if cfg.context_length:
        text = dict(kwargs.get("text_kwargs") or {}, context_length=cfg.context_length)
        kwargs["text_kwargs"] = text
    return cfg.backbone, kwargs


def pretrained_for(cfg: MMConfig) -> str | None:
    """``--pretrained``; without it, an ``hf-hub:ORG/REPO`` model's own weights."""
    if cfg.pretrained or not cfg.model:
        return cfg.pretrained
    from mmkit.backbones.open_clip_sources import HF_HUB, hf_hub_repo

    repo = hf_hub_repo(cfg.model)
    return f"{HF_HUB}{repo}" if repo else None


@dataclass
class LoadedClip:
    """A model ready for ``sim`` / ``evaluate``: pipeline (eval mode), tokenizer, spec."""

    pipeline: ClipPipeline
    tokenizer: torch.nn.Module
    spec: CheckpointSpec
    path: Path | None
    device: torch.device

    @property
    def store_params(self) -> dict[str, Any]:
        return self.spec.data_params


def pipeline_spec(
    parts: ClipParts,
    *,
    labels: Sequence[str] = (),
    prompt: str = DEFAULT_PROMPT,
    data: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
) -> CheckpointSpec:
    """The checkpoint spec of a pipeline from :func:`create_pipeline`'s parts."""
    return CheckpointSpec(
        modality="mm",
        task="contrastive",
        backbone=parts.backbone,
        preprocess={k: [stage] for k, stage in parts.preprocess.items()},
        labels=list(labels),
        data={"params": parts.store_params, **(data or {})},
        train=train or {},
        prompt=prompt,
        mmkit_version=mmkit.__version__,
    )


def load_clip(
    checkpoint: str | Path | None = None,
    *,
    model: str | None = None,
    pretrained: str | None = None,
    device: str = "auto",
) -> LoadedClip:
    """An mm checkpoint (run dir or checkpoint dir), or open_clip ``model`` + ``pretrained``."""
    if (checkpoint is None) == (model is None):
        raise UserInputError("give either --checkpoint or --model (with --pretrained)")
    dev = distributed.init(resolve_device(device))  # torchrun: eval is sharded over ranks
    path = None
    if checkpoint is not None:
        path = resolve_checkpoint_dir(checkpoint)
        source = str(path / "config.json")
        spec = read_spec(path)
        if spec.task != "contrastive":
            raise UserInputError(
                f"{path} is a {spec.modality} {spec.task} checkpoint, not an image-text one"
            )
        _check_store_params(spec, source)
        pipeline = build_checked(lambda: build_contrastive(spec, source), path, dev)
    else:
        source = "model"
        cfg = MMConfig(dataset="-", model=model, pretrained=pretrained)
        name, kwargs = model_spec(cfg)
        pipeline, parts = create_pipeline(name, kwargs, pretrained=pretrained_for(cfg))
        spec = pipeline_spec(parts)
    (text,) = spec.stages("text")
    tokenizer = PREPROCESSORS.create_from_config(text.name, text.params, source=source)
    return LoadedClip(pipeline.to(dev).eval(), tokenizer, spec, path, dev)


def _check_store_params(spec: CheckpointSpec, source: str) -> None:
    """A checkpoint's ``data.params`` (untrusted data) must be valid decode settings."""
    params = spec.data_params
    size = params.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise CheckpointError(f"{source}: data.params.image_size must be 8..4096, got {size!r}")
    if not isinstance(params.get("tokenizer"), dict):
        raise CheckpointError(f"{source}: data.params.tokenizer must be a JSON object")
    try:
        check_resize(*(params.get(key, default) for key, default in RESIZE_DEFAULTS.items()))
    except UserInputError as exc:
        raise CheckpointError(f"{source}: data.params: {exc}") from None


def encode_image_files(loaded: LoadedClip, files: Sequence[str | Path]) -> torch.Tensor:
    """Normalised ``float [N, D]`` embeddings of image files, decoded as the model's prepared
    store would hold them (:func:`~mmkit.data.mm_store.decode_image`), then its image
    transform (eval mode) and image tower, 64 at a time."""
    params = loaded.store_params
    pixels = torch.from_numpy(np.stack([decode_image(f, params) for f in files]))
    return torch.cat(
        [
            loaded.pipeline.encode_images(pixels[i : i + 64].to(loaded.device)).float().cpu()
            for i in range(0, len(pixels), 64)
        ]
    )


# -- prepare / train / evaluate / sim ---------------------------------------------------------
def prepare(
    cfg: MMConfig,
    *,
    params: dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> Store:
    """The prepared store of ``cfg.dataset`` for ``params`` (image size + tokenizer; default:
    those of ``cfg``'s model, built without weights to read them). ``cfg`` is validated as the
    CLI validates it."""
    cfg.validate()
    if params is None:
        name, kwargs = model_spec(cfg)
        params = create_pipeline(name, kwargs)[1].store_params
    options, workers = caption_options(cfg), cfg.prepare_workers
    return prepare_store(cfg.dataset, options, params, out=out, progress=progress, workers=workers)


def train(cfg: MMConfig, *, resume: bool = False, progress: Progress | None = None) -> TrainResult:
    """Prepare (when needed), train, and write the run directory. ``cfg`` is validated as the
    CLI validates it (:meth:`~mmkit.config.TrainConfig.validate`), before anything is written."""
    cfg.validate()
    progress = progress or NullProgress()
    return fit(
        cfg, lambda: training_job(cfg, progress, resume=resume), resume=resume, progress=progress
    )


def training_job(cfg: MMConfig, progress: Progress, *, resume: bool = False) -> Job:
    """What :func:`train` trains: the store (prepared when needed), the model (pretrained
    weights unless ``resume``), the task and the datasets."""
    name, kwargs = model_spec(cfg)
    pipeline, parts = create_pipeline(
        name,
        kwargs,
        pretrained=None if resume else pretrained_for(cfg),
        crop_scale=cfg.crop_scale if cfg.augment else None,
        seed=cfg.seed,
    )
    store = prepare(cfg, params=parts.store_params, out=cfg.prepared, progress=progress)
    splits = training_splits(store, cfg.dataset, progress, seed=cfg.seed)
    spec = pipeline_spec(
        parts,
        labels=class_names(store),
        prompt=cfg.prompt or DEFAULT_PROMPT,
        data={
            "fingerprint": store.meta.get("fingerprint"),
            "dataset": cfg.dataset,
            "store": str(store.path),
            "validation": splits.info,
        },
        train=_without_locations(cfg.to_dict(), kwargs),
    )
    (text,) = spec.stages("text")
    tokenizer = create_preprocessor(text.name, **text.params)
    return Job(
        pipeline,
        ContrastiveTask(tokenizer, spec.prompt or DEFAULT_PROMPT),
        CaptionPairs(
            store, splits.train, seed=cfg.seed, batch_size=cfg.batch_size * distributed.world()
        ),
        CaptionImages(store, splits.validation),
        spec,
        store.skipped,
    )


def _without_locations(train: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The training options as the checkpoint records them: an ``hf-hub:`` model under the
    plain name it was registered as, ``hf-hub:`` weights as their repo id (a checkpoint's
    ``config.json`` never names a location another library would fetch)."""
    from mmkit.backbones.open_clip_sources import HF_HUB

    if str(train.get("model") or "").startswith(HF_HUB):
        train["model"] = kwargs["model_name"]
    if str(train.get("pretrained") or "").startswith(HF_HUB):
        train["pretrained"] = train["pretrained"][len(HF_HUB) :]
    return train


def evaluate(
    checkpoint: str | Path | None,
    cfg: MMConfig,
    *,
    split: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Retrieval metrics (and zero-shot accuracy when labelled) of a checkpoint, or of
    ``cfg.model`` + ``cfg.pretrained``, on one split: ``{"num_pairs", "num_images",
    "image_to_text": {"R@1", "R@5", "R@10", "mean_rank", "median_rank"}, "text_to_image": {...},
    "mean_recall"[, "zero_shot_accuracy", "zero_shot"]}``. ``cfg`` is validated as the CLI
    validates it."""
    cfg.validate()
    loaded = load_clip(
        checkpoint,
        model=None if checkpoint is not None else cfg.model,
        pretrained=cfg.pretrained,
        device=cfg.device,
    )
    progress = progress or NullProgress()
    with distributed.main_first():
        store = prepare(cfg, params=loaded.store_params, progress=progress)
    trained_fp = loaded.spec.fingerprint if loaded.path else None
    selection = eval_selection(store, split, trained_fp)
    progress.message(selection.note)
    indices, split = selection.indices, selection.split
    prompt = cfg.prompt or loaded.spec.prompt or DEFAULT_PROMPT
    images = CaptionImages(store, indices)
    loader = DataLoader(images, batch_size=64, sampler=distributed.shard(range(len(images))))
    result = ContrastiveTask(loaded.tokenizer, prompt).report(
        loaded.pipeline, loader, loaded.device, checkpoint=loaded.path
    )
    result.update(split=split, split_note=selection.note, skipped=store.skipped)
    distributed.close()  # every rank leaves together: none exits under another's gloo threads
    if loaded.path is not None and distributed.is_main():
        out_dir = loaded.path.parent / "eval"
        out_dir.mkdir(exist_ok=True)
        stem = f"{Path(str(cfg.dataset)).name or 'dataset'}-{split}"
        (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2))
    return result


@torch.no_grad()
def sim(
    images: Sequence[str],
    texts: Sequence[str],
    checkpoint: str | Path | LoadedClip | None = None,
    *,
    model: str | None = None,
    pretrained: str | None = None,
    device: str = "auto",
) -> dict[str, Any] | list[dict[str, Any]]:
    """Cosine similarities and softmax probabilities (over the ranked side, at the model's
    logit scale), best first:

    - one image, one or more texts: ``{"image", "scores": [{"text", "similarity",
      "probability"}]}`` (docs/design.md);
    - several images (folders expand to their images), one text: ``{"text", "scores":
      [{"image", "similarity", "probability"}]}``;
    - several images and several texts: a list with one ``{"image", "scores"}`` per image.
    """
    if not texts:
        raise UserInputError("give at least one text to compare with")
    if isinstance(checkpoint, LoadedClip):
        loaded = checkpoint
    else:
        loaded = load_clip(checkpoint, model=model, pretrained=pretrained, device=device)
    files = expand_paths(list(images), IMAGE_EXTS)
    image_f = encode_image_files(loaded, files)
    tokens = loaded.tokenizer(list(texts)).to(loaded.device)
    text_f = loaded.pipeline.encode_texts(tokens).float().cpu()
    sims = image_f @ text_f.T
    scale = float(loaded.pipeline.model.scale())
    scores = torch.cat([sims.flatten(), torch.tensor([scale])])  # NaN here is NaN in the JSON
    check_finite(scores, loaded.pipeline, loaded.path, files[0] if len(files) == 1 else images[0])
    if len(files) > 1 and len(texts) == 1:
        return {"text": texts[0], "scores": _ranked(sims[:, 0], scale, files, "image")}
    ranked = [
        {"image": f, "scores": _ranked(row, scale, texts, "text")}
        for f, row in zip(files, sims, strict=True)
    ]
    return ranked[0] if len(files) == 1 else ranked


def _ranked(
    similarity: torch.Tensor, scale: float, names: Sequence[str], key: str
) -> list[dict[str, Any]]:
    probability = (similarity * scale).softmax(-1)
    order = torch.argsort(similarity, descending=True, stable=True).tolist()
    return [
        {key: names[i], "similarity": float(similarity[i]), "probability": float(probability[i])}
        for i in order
    ]
