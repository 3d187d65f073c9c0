"""Image-text (CLIP-style) models: ``prepare`` / ``train`` / ``evaluate`` / ``sim``.

Flow: captioned images (:mod:`mmkit.data.captions`) --prepare--> a store of ``uint8 [S, S, 3]``
images (short-side resize + centre crop, decoded once) with every caption's token ids and image
index as extras --> :class:`~mmkit.tasks.contrastive.ClipPipeline` (``image_transform`` on the
device, then the model) --> the one Trainer --> a checkpoint whose ``config.json`` alone rebuilds
the model, the image transform and the tokenizer.

The model is a registered mm backbone (``clip_lite`` by default, ``--image-size`` and
``--context-length`` set its towers) or, with ``--model NAME``, any open_clip architecture (or an
open_clip model-config JSON file, registered under its file stem); ``--pretrained PATH_OR_TAG``
loads open_clip weights, usable by ``sim`` and ``evaluate`` directly and as the starting point
of ``train``.

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
from mmkit.configs import MMConfig
from mmkit.data.captions import CaptionOptions
from mmkit.data.store import Store
from mmkit.engine.checkpoint import load_weights, read_config, resolve_checkpoint_dir
from mmkit.engine.events import NullProgress, Progress
from mmkit.engine.run import start_run, training_splits
from mmkit.engine.trainer import Trainer, TrainResult, resolve_device, seed_everything
from mmkit.errors import UserInputError
from mmkit.io.image import IMAGE_EXTENSIONS, load_image_array
from mmkit.pipelines.classify import expand_paths
from mmkit.pipelines.mm_store import prepare_store, summary
from mmkit.registry import BACKBONES, PREPROCESSORS, create_preprocessor
from mmkit.tasks.contrastive import (
    CaptionImages,
    CaptionPairs,
    ClipPipeline,
    ContrastiveTask,
    build_contrastive,
    class_names,
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
def _open_clip_arch(model: str, model_kwargs: dict | None) -> tuple[str, dict | None]:
    """An architecture name as is; an open_clip model-config JSON file -> (its stem, its
    content), the content being registered under the stem when the model is built."""
    if not model.endswith(".json"):
        return model, model_kwargs
    path = Path(model).expanduser()
    try:
        arch = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"cannot read open_clip model config {model}: {exc}") from exc
    return path.stem, arch


def model_spec(cfg: MMConfig) -> tuple[str, dict[str, Any]]:
    """(backbone name, kwargs) that build ``cfg``'s model, pretrained weights left out."""
    if cfg.model:
        name, model_kwargs = _open_clip_arch(cfg.model, cfg.backbone_kwargs.get("model_kwargs"))
        return "open_clip_model", {
            "model_name": name,
            "pretrained": None,
            "force_image_size": cfg.image_size,
            "force_context_length": cfg.context_length,
            "model_kwargs": model_kwargs,
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


@dataclass
class LoadedClip:
    """A model ready for ``sim`` / ``evaluate``: pipeline (eval mode), tokenizer, config."""

    pipeline: ClipPipeline
    tokenizer: torch.nn.Module
    config: dict[str, Any]
    path: Path | None
    device: torch.device

    @property
    def store_params(self) -> dict[str, Any]:
        return self.config["data"]["params"]


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
    dev = resolve_device(device)
    path = None
    if checkpoint is not None:
        path = resolve_checkpoint_dir(checkpoint)
        config = read_config(path)
        if config.get("modality") != "mm" or config.get("task") != "contrastive":
            raise UserInputError(
                f"{path} is a {config.get('modality')} {config.get('task')} checkpoint, "
                "not an image-text one"
            )
        pipeline = build_contrastive(config, str(path / "config.json"))
        load_weights(pipeline, path, dev)
    else:
        name, kwargs = model_spec(MMConfig(dataset="-", model=model))
        pipeline, config = create_pipeline(name, kwargs, pretrained=pretrained)
    text = config["preprocess"]["text"]
    tokenizer = PREPROCESSORS.create_from_config(
        text["name"], text.get("params", {}), source=str(path / "config.json") if path else "model"
    )
    return LoadedClip(pipeline.to(dev).eval(), tokenizer, config, path, dev)


# -- prepare / train / evaluate / sim ---------------------------------------------------------
def prepare(
    cfg: MMConfig,
    *,
    params: dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> Store:
    """The prepared store of ``cfg.dataset`` for ``params`` (image size + tokenizer; default:
    those of ``cfg``'s model, built without weights to read them)."""
    if params is None:
        name, kwargs = model_spec(cfg)
        params = create_pipeline(name, kwargs)[1]["data"]["params"]
    return prepare_store(cfg.dataset, caption_options(cfg), params, out=out, progress=progress)


def train(cfg: MMConfig, *, resume: bool = False, progress: Progress | None = None) -> TrainResult:
    """Prepare (when needed), train, and write the run directory."""
    progress = progress or NullProgress()
    run_dir = start_run(cfg.out, cfg.to_dict(), resume=resume)
    seed_everything(cfg.seed)
    name, kwargs = model_spec(cfg)
    pipeline, spec = create_pipeline(
        name,
        kwargs,
        pretrained=None if resume else cfg.pretrained,
        crop_scale=cfg.crop_scale if cfg.augment else None,
        seed=cfg.seed,
    )
    store = prepare(cfg, params=spec["data"]["params"], out=cfg.prepared, progress=progress)
    train_idx, val_idx = training_splits(store, cfg.dataset, progress)
    text = spec["preprocess"]["text"]
    task = ContrastiveTask(
        create_preprocessor(text["name"], **text["params"]), cfg.prompt or DEFAULT_PROMPT
    )
    ckpt_config = {
        "mmkit_version": mmkit.__version__,
        "modality": "mm",
        "task": "contrastive",
        **spec,
        "labels": class_names(store),
        "prompt": cfg.prompt or DEFAULT_PROMPT,
        "data": dict(
            spec["data"],
            fingerprint=store.meta.get("fingerprint"),
            dataset=cfg.dataset,
            store=str(store.path),
        ),
        "train": cfg.to_dict(),
    }
    trainer = Trainer(
        pipeline,
        task,
        CaptionPairs(store, train_idx, seed=cfg.seed),
        CaptionImages(store, val_idx),
        cfg,
        run_dir,
        checkpoint_config=lambda: ckpt_config,
        progress=progress,
    )
    if resume:
        trainer.resume()
    return trainer.fit()


def evaluate(
    checkpoint: str | Path | None,
    cfg: MMConfig,
    *,
    split: str = "test",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Retrieval metrics (and zero-shot accuracy when labelled) of a checkpoint, or of
    ``cfg.model`` + ``cfg.pretrained``, on one split: ``{"num_pairs", "num_images",
    "image_to_text": {"R@1", "R@5", "R@10", "mean_rank", "median_rank"}, "text_to_image": {...},
    "mean_recall"[, "zero_shot_accuracy", "zero_shot"]}``."""
    loaded = load_clip(
        checkpoint,
        model=None if checkpoint is not None else cfg.model,
        pretrained=cfg.pretrained,
        device=cfg.device,
    )
    store = prepare(cfg, params=loaded.store_params, progress=progress)
    indices = store.indices(split)
    if not indices:
        raise UserInputError(f"{cfg.dataset}: the {split} split is empty")
    prompt = cfg.prompt or loaded.config.get("prompt") or DEFAULT_PROMPT
    loader = DataLoader(CaptionImages(store, indices), batch_size=64)
    result = ContrastiveTask(loaded.tokenizer, prompt).report(
        loaded.pipeline, loader, loaded.device
    )
    if loaded.path is not None:
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
      "probability"}]}`` (DESIGN §3);
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
    size = int(loaded.store_params["image_size"])
    pixels = torch.from_numpy(np.stack([load_image_array(f, size) for f in files]))
    image_f = torch.cat(
        [
            loaded.pipeline.encode_images(pixels[i : i + 64].to(loaded.device)).float().cpu()
            for i in range(0, len(pixels), 64)
        ]
    )
    tokens = loaded.tokenizer(list(texts)).to(loaded.device)
    text_f = loaded.pipeline.encode_texts(tokens).float().cpu()
    sims = image_f @ text_f.T
    scale = float(loaded.pipeline.model.scale())
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
