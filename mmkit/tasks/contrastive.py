"""Contrastive image-text training: the model wrapper, the datasets, the loss and evaluation.

:class:`ClipPipeline` takes batches as the prepared store holds them (``uint8 [B, S, S, 3]``
images, ``[B, L]`` token ids) and runs ``image_transform`` on the training device before the
image-text model (ClipLite, an open_clip model or any mm plugin with ``encode_image`` /
``encode_text`` / ``scale``). Training sees every image once per epoch with one of its captions,
in batches where no caption text occurs twice (:class:`CaptionPairs`), so neither two captions
of one image nor two copies of one caption meet as negatives; evaluation scores
every caption of every image (:class:`CaptionImages`): recall@1/5/10 and mean/median rank both
ways, and zero-shot accuracy through class prompts when the images have labels.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmkit import distributed
from mmkit.data.epochs import EpochDataset, distinct_batches
from mmkit.data.mm_store import class_names
from mmkit.data.store import Store
from mmkit.errors import CheckpointError, UserInputError
from mmkit.io.image import RESIZE_DEFAULTS, check_resize
from mmkit.losses import ContrastiveLoss
from mmkit.metrics.retrieval import retrieval_metrics, zero_shot_accuracy
from mmkit.registry import BACKBONES, PREPROCESSORS, create_backbone, create_preprocessor
from mmkit.seeds import epoch_seed, item_seed
from mmkit.spec import CheckpointSpec, Stage
from mmkit.tasks.checks import check_finite

DIRECTIONS = ("image_to_text", "text_to_image")
_ARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


class ClipPipeline(nn.Module):
    """``image_transform`` (random crops in train mode, centre in eval mode) + the model."""

    compile_scope = "model"  # what --compile compiles (engine.placement.compile_model)

    def __init__(self, transform: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.model = model

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text features and the clamped logit scale."""
        return self.model(self.transform(images, generator), tokens)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, H, W, 3]`` -> normalised ``[B, D]``."""
        return self.model.encode_image(self.transform(images))

    def encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` token ids -> normalised ``[N, D]``."""
        return self.model.encode_text(tokens.long())


def ensure_open_clip_arch(name: str, arch: dict | None) -> None:
    """Register a model config (``{"embed_dim", "vision_cfg", "text_cfg", ...}``, the format of
    open_clip's ``model_configs/*.json``) under ``name`` with open_clip, unless it is known."""
    import open_clip

    from mmkit.backbones.open_clip_model import check_arch

    if not isinstance(name, str) or not _ARCH_NAME.fullmatch(name):
        raise UserInputError(f"open_clip model name {name!r} is not a plain architecture name")
    if name in open_clip.list_models() or not arch:
        return
    arch = check_arch(arch, source=f"open_clip model config {name!r}")
    if not all(k in arch for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise UserInputError(f"open_clip model config {name!r} needs embed_dim/vision_cfg/text_cfg")
    with tempfile.TemporaryDirectory() as tmp:  # open_clip keeps the config once scanned
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(arch))
        open_clip.add_model_config(path)


def create_pipeline(
    name: str,
    kwargs: dict[str, Any],
    *,
    pretrained: str | None = None,
    crop_scale: Sequence[float] | None = None,
    seed: int = 0,
) -> tuple[ClipPipeline, ClipParts]:
    """Backbone ``name`` (open_clip weights from ``pretrained``) + its image transform, and the
    :class:`ClipParts` that rebuild them (weights aside).

    ``store_params`` are the prepared store's: image size, how images are fitted into it (the
    model's ``image_resize``, else :data:`~mmkit.io.image.RESIZE_DEFAULTS`) and the tokenizer.
    ``crop_scale`` is the area range of training crops; None makes them the whole image."""
    if name == "open_clip_model":
        ensure_open_clip_arch(kwargs["model_name"], kwargs.get("model_kwargs"))
    model = create_backbone(name, **(dict(kwargs, pretrained=pretrained) if pretrained else kwargs))
    saved = dict(model.config) if isinstance(getattr(model, "config", None), dict) else kwargs
    image_name, image_params = model.preprocessors()["image"]
    if crop_scale is None:
        image_params = dict(image_params, scale=[1.0, 1.0], ratio=[1.0, 1.0])
    else:
        image_params = dict(image_params, scale=list(crop_scale))
    image_params["seed"] = seed
    text_name, text_params = model.preprocessors()["text"]
    transform = create_preprocessor(image_name, **image_params)
    parts = ClipParts(
        backbone=Stage(name, saved),
        image=Stage(image_name, image_params),
        text=Stage(text_name, text_params),
        store_params={
            "image_size": int(model.image_size),
            **image_resize(model),
            "tokenizer": text_params,
        },
    )
    return ClipPipeline(transform, model), parts


@dataclass(frozen=True)
class ClipParts:
    """What rebuilds an image-text pipeline, weights aside: the backbone, the image transform
    and tokenizer stages, and the prepared store's parameters (image size and fitting, the
    tokenizer)."""

    backbone: Stage
    image: Stage
    text: Stage
    store_params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The ``backbone`` / ``preprocess`` / ``data`` entries of a checkpoint's config.json."""
        stage = {"name": self.backbone.name, "kwargs": self.backbone.params}
        pre = {k: {"name": v.name, "params": v.params} for k, v in self.preprocess.items()}
        return {"backbone": stage, "preprocess": pre, "data": {"params": self.store_params}}

    @property
    def preprocess(self) -> dict[str, Stage]:
        return {"image": self.image, "text": self.text}


def image_resize(model: nn.Module) -> dict[str, Any]:
    """How ``model`` wants images fitted into its input size (``resize_mode``,
    ``interpolation``, ``fill_color``); models without an ``image_resize`` get the defaults."""
    own = getattr(model, "image_resize", None) or {}
    resize = {key: own.get(key, default) for key, default in RESIZE_DEFAULTS.items()}
    check_resize(resize["resize_mode"], resize["interpolation"], resize["fill_color"])
    return resize


def build_contrastive(spec: CheckpointSpec, source: str = "config.json") -> ClipPipeline:
    """Rebuild the exact model + image transform from a checkpoint's spec (untrusted data:
    plugins are built through ``create_from_config``)."""
    kwargs = spec.backbone.params
    BACKBONES.check_config(spec.backbone.name, kwargs, source=source)
    if spec.backbone.name == "open_clip_model":
        try:
            ensure_open_clip_arch(kwargs.get("model_name"), kwargs.get("model_kwargs"))
        except UserInputError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
    model = BACKBONES.create_from_config(spec.backbone.name, kwargs, source=source)
    (image,) = spec.stages("image")
    with torch.device("cpu"):  # small buffers computed on the host, even in a meta pre-check
        transform = PREPROCESSORS.create_from_config(image.name, image.params, source=source)
    return ClipPipeline(transform, model)


class CaptionPairs(EpochDataset):
    """(image, one of its captions, crop seed) per position of an epoch: every image of
    ``indices`` once, in an order seeded by (seed, epoch) and packed by
    :func:`~mmkit.data.epochs.distinct_batches` so that no caption text occurs twice in a batch
    of ``batch_size`` (under DDP the global batch, the loss's negatives): a repeated caption
    would be its own false negative. Each image takes a random caption that the batch does not
    hold yet; the crop seed follows (seed, epoch, image index). Items are the same with any
    number of loader workers and after ``--resume``; the sampler reads them in sequence."""

    ordered = True

    def __init__(self, store: Store, indices: list[int], *, seed: int, batch_size: int) -> None:
        self.store, self.indices, self.seed, self.batch_size = store, indices, seed, batch_size
        tokens = np.asarray(store.extra("tokens"), dtype=np.int64)
        self.tokens = torch.from_numpy(tokens)
        self.texts = np.unique(tokens, axis=0, return_inverse=True)[1].reshape(-1).tolist()
        self.owner = np.asarray(store.extra("caption_image"))
        order = np.argsort(self.owner, kind="stable")
        starts = np.searchsorted(self.owner[order], np.arange(len(store) + 1))
        self.options = [order[starts[i] : starts[i + 1]].tolist() for i in indices]
        self._plan: tuple[int, list[int]] = (-1, [])
        super().__init__()

    def __len__(self) -> int:
        return len(self.indices)

    def plan(self) -> list[int]:
        """The caption of each position this epoch (computed once per epoch and process)."""
        if self._plan[0] != self.epoch:
            seed = epoch_seed(self.seed, self.epoch)
            picks = distinct_batches(self.options, self.texts, self.batch_size, seed=seed)
            self._plan = (self.epoch, picks)
        return self._plan[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        caption = self.plan()[i]
        idx = int(self.owner[caption])
        image = torch.from_numpy(np.array(self.store[idx][0]))
        return image, self.tokens[caption], item_seed(self.seed, self.epoch, idx)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class CaptionImages(Dataset):
    """Evaluation view of ``indices``: yields images; holds every caption of them as token ids
    (``tokens``), the image position of each caption (``caption_image``) and each image's class
    index (``targets``, -1 when unlabelled) over ``class_names``."""

    def __init__(self, store: Store, indices: list[int]) -> None:
        self.store, self.indices = store, indices
        position = np.full(len(store), -1, dtype=np.int64)
        position[indices] = np.arange(len(indices))
        owner = position[np.asarray(store.extra("caption_image"))]
        keep = owner >= 0
        self.tokens = torch.from_numpy(np.asarray(store.extra("tokens"))[keep].astype(np.int64))
        self.caption_image = torch.from_numpy(owner[keep])
        self.class_names = class_names(store)
        lookup = {name: i for i, name in enumerate(self.class_names)}
        self.targets = torch.tensor(
            [lookup.get(store.items[i].label, -1) for i in indices], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.store[self.indices[i]][0]))


def _inner(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel wraps the pipeline


class ContrastiveTask:
    """Symmetric InfoNCE training; ``mean_recall`` (R@1/5/10 both ways) is the metric to watch.

    ``tokenizer`` turns ``prompt.format(class_name)`` into token ids for zero-shot accuracy,
    reported when the evaluated images have labels.
    """

    monitor = "mean_recall"

    def __init__(self, tokenizer: nn.Module, prompt: str = "a photo of a {}") -> None:
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.loss_fn = ContrastiveLoss()

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        images, tokens, seeds = batch
        clamp = getattr(_inner(model).model, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()  # keep exp(logit_scale) <= 100, as after every optimiser step
        # one crop generator per batch, seeded by its items: resuming mid-epoch redraws the same
        generator = _gen(int(torch.as_tensor(seeds).sum()) % 2**63)
        image_f, text_f, scale = model(
            images.to(device, non_blocking=True), tokens.to(device, non_blocking=True), generator
        )
        return self.loss_fn(image_f.float(), text_f.float(), scale.float())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
        """Flat metrics: ``mean_recall``, ``image_to_text_R@1``, ..., ``zero_shot_accuracy``."""
        return flatten(self.report(model, loader, device))

    @torch.no_grad()
    def report(
        self,
        model: nn.Module,
        loader: DataLoader,
        device: torch.device,
        *,
        checkpoint: Path | None = None,
    ) -> dict:
        """The ``mm eval`` JSON (docs/design.md) for the images of ``loader.dataset``."""
        model = _inner(model).eval()
        data: CaptionImages = loader.dataset
        # under torchrun each rank encodes its shard of the images (the loader's sampler) and
        # of the captions; the rows are gathered back in order on every rank
        images = [model.encode_images(b.to(device, non_blocking=True)).float() for b in loader]
        images = torch.cat(images).cpu()  # one copy back, not one per batch
        images = distributed.gather_rows(images, len(data))
        tokens = data.tokens[distributed.shard(range(len(data.tokens)))]
        texts = torch.cat(
            [
                model.encode_texts(tokens[i : i + 256].to(device)).float().cpu()
                for i in range(0, len(tokens), 256)
            ]
            or [torch.zeros(0, images.shape[1])]
        )
        texts = distributed.gather_rows(texts, len(data.tokens))
        # NaN embeddings would rank every caption first and read as R@1 = 1.0
        check_finite(images, model, checkpoint, "the images")
        check_finite(texts, model, checkpoint, "the captions")
        result: dict[str, Any] = retrieval_metrics(images, texts, data.caption_image)
        result["num_images"] = len(data)
        result["mean_recall"] = float(
            np.mean([result[d][f"R@{k}"] for d in DIRECTIONS for k in (1, 5, 10)])
        )
        labelled = data.targets >= 0
        if bool(labelled.any()) and data.class_names:
            prompts = [self.prompt.format(name) for name in data.class_names]
            classes = model.encode_texts(self.tokenizer(prompts).to(device)).float().cpu()
            result["zero_shot_accuracy"] = zero_shot_accuracy(
                images[labelled], classes, data.targets[labelled]
            )
            result["zero_shot"] = {
                "prompt": self.prompt,
                "labels": data.class_names,
                "num_images": int(labelled.sum()),
            }
        return result


def flatten(report: dict[str, Any]) -> dict[str, float]:
    """``{"image_to_text": {"R@1": x}}`` -> ``{"image_to_text_R@1": x}``; numbers only."""
    flat: dict[str, float] = {}
    for key, value in report.items():
        if isinstance(value, dict) and key in DIRECTIONS:
            flat.update({f"{key}_{k}": float(v) for k, v in value.items()})
        elif isinstance(value, (int, float)):
            flat[key] = float(value)
    return flat
