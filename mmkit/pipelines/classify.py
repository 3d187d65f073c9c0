"""prepare / train / eval / infer for classification, shared by audio and video.

A :class:`Modality` says how its media are decoded into the prepared store, how training and
evaluation views are cut from it, which preprocess stages the model starts with, and how a file is
turned into views at inference. Everything else — sources, the store, the trainer, checkpoints,
metrics — is the same for every modality and lives here or below.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import mmkit
from mmkit import distributed
from mmkit.config import TrainConfig, from_dict
from mmkit.data.records import SourceData, SourceOptions
from mmkit.data.sources import expand_paths, resolve
from mmkit.data.splits import eval_selection, training_splits
from mmkit.data.store import Store
from mmkit.data.store_builder import (
    StoreRecipe,
    build_store,
    default_out,
    fingerprint,
    given_store,
    record_line,
)
from mmkit.data.store_writer import StoreWriter
from mmkit.engine.placement import resolve_device
from mmkit.engine.run import Job, fit
from mmkit.engine.state import TrainResult
from mmkit.errors import CheckpointError, UserInputError
from mmkit.events import NullProgress, Progress
from mmkit.io.checkpoint_dir import read_spec, resolve_checkpoint_dir
from mmkit.metrics.classification import classification_report
from mmkit.pipelines import finetune
from mmkit.spec import CheckpointSpec, Stage
from mmkit.tasks import load_checkpoint
from mmkit.tasks.checks import check_finite
from mmkit.tasks.classify import (
    ClassificationTask,
    Classifier,
    predict,
    stage_spec,
    top_k,
)

C = TypeVar("C", bound=TrainConfig)
Views = tuple[torch.Tensor, list[dict]]  # ``[K, ...]`` views and their infos


class Modality(ABC, Generic[C]):
    """The modality-specific half of the classification pipeline, over its config ``C`` (the
    modality's :class:`~mmkit.config.TrainConfig` subclass, ``config_class``)."""

    name: str
    extensions: tuple[str, ...]
    dtype: str
    shape_keys: tuple[str, ...]  # train options that define the input; eval reuses the run's
    config_class: type[C]
    # decoding is Python-bound (a pool of processes uses the cores) rather than done by ffmpeg
    decode_in_processes: bool = False

    @abstractmethod
    def store_params(self, cfg: C) -> dict[str, Any]:
        """Decode parameters that define the store (sample rate, frame size, ...)."""

    @abstractmethod
    def item_shape(self, params: dict[str, Any]) -> tuple[int, ...]: ...

    @abstractmethod
    def decode(self, source: str | bytes, params: dict[str, Any]) -> np.ndarray:
        """One record's media as the store keeps it; raises MediaError."""

    def extras(self, data: SourceData, params: dict[str, Any]) -> dict[str, np.ndarray]:
        """Extra arrays for the store (e.g. background noise); none by default."""
        return {}

    @abstractmethod
    def train_set(self, store: Store, indices: list[int], cfg: C) -> Dataset: ...

    @abstractmethod
    def eval_set(self, store: Store, indices: list[int], cfg: C) -> Dataset: ...

    @abstractmethod
    def stages(self, cfg: C, store: Store) -> list[tuple[str, nn.Module]]:
        """Preprocess stages, in order (augmentations are identity in eval mode)."""

    @abstractmethod
    def file_views(self, path: str, cfg: C) -> Views:
        """A file as ``[K, ...]`` views plus one info dict per view (e.g. window times) or one
        info for all of them, shaped by ``cfg``, the checkpoint's :func:`trained_config`."""

    def view_batches(self, path: str, cfg: C, batch_size: int) -> Iterator[Views]:
        """A file's views ``batch_size`` at a time with their infos. By default
        :meth:`file_views` cut into batches (one info for all views, as a video's test-time
        clips share, goes with the first batch); a modality that streams (audio) overrides this
        so that memory does not grow with a file's length."""
        views, infos = self.file_views(path, cfg)
        per_view = len(infos) == len(views)
        for i in range(0, len(views), batch_size):
            batch_infos = infos[i : i + batch_size] if per_view else (infos if i == 0 else [])
            yield views[i : i + batch_size], batch_infos


def source_options(modality: Modality[C], cfg: C) -> SourceOptions:
    return SourceOptions(
        modality=modality.name,
        extensions=modality.extensions,
        hf_config=getattr(cfg, "hf_config", None),
        hf_split=getattr(cfg, "hf_split", None),
        media_column=getattr(cfg, "media_column", None),
        label_column=getattr(cfg, "label_column", "label"),
        extra=getattr(cfg, "source_extra", lambda: {})(),
    )


def prepare(
    modality: Modality[C],
    cfg: C,
    *,
    out: str | Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Store:
    """Decode every file of ``cfg.dataset`` once into a prepared store (reused when unchanged).
    ``cfg`` is validated as the CLI validates it."""
    cfg.validate()
    given = given_store(cfg.dataset, modality.name)
    if given is not None:
        return given
    params = modality.store_params(cfg)
    data = resolve(cfg.dataset, source_options(modality, cfg))
    head = [modality.name, params, data.labels, data.kind, data.split_source]
    fp = fingerprint(head, [*(record_line(r) for r in data.records), *data.noise_files])
    recipe = StoreRecipe(
        modality.name,
        modality.dtype,
        modality.item_shape(params),
        params,
        modality.decode,
        processes=modality.decode_in_processes,
    )

    def finish(writer: StoreWriter) -> None:
        for key, array in modality.extras(data, params).items():
            writer.add_extra(key, array)

    info = {"dataset": cfg.dataset, "source_kind": data.kind, "split_source": data.split_source}
    return build_store(
        recipe,
        data.records,
        fp=fp,
        out=Path(out) if out else default_out(modality.name, fp),
        labels=lambda writer: data.labels,
        info=info,
        progress=progress,
        workers=cfg.prepare_workers if workers is None else workers,
        finish=finish,
    )


def checkpoint_spec(
    modality: Modality[C],
    cfg: C,
    store: Store,
    stages: list[tuple[str, nn.Module]],
    validation: dict[str, Any],
) -> CheckpointSpec:
    return CheckpointSpec(
        modality=modality.name,
        task="classify",
        backbone=Stage(cfg.backbone, cfg.backbone_kwargs),
        preprocess={"input": [stage_spec(m, n) for n, m in stages]},
        labels=store.labels,
        data={
            "params": store.params,
            "fingerprint": store.meta.get("fingerprint"),
            "dataset": cfg.dataset,
            "store": str(store.path),
            "validation": validation,
        },
        train=cfg.to_dict(),
        mmkit_version=mmkit.__version__,
    )


def training_job(modality: Modality[C], cfg: C, progress: Progress) -> Job:
    """What :func:`train` trains: the store (prepared when needed), the model, the task and
    the datasets."""
    store = prepare(modality, cfg, out=cfg.prepared, progress=progress)
    splits = training_splits(store, cfg.dataset, progress, seed=cfg.seed)
    stages = modality.stages(cfg, store)
    backbone = mmkit.create_backbone(
        cfg.backbone, num_classes=len(store.labels), **cfg.backbone_kwargs
    )
    return Job(
        Classifier(nn.Sequential(*(m for _, m in stages)), backbone),
        ClassificationTask(store.labels),
        modality.train_set(store, splits.train, cfg),
        modality.eval_set(store, splits.validation, cfg),
        checkpoint_spec(modality, cfg, store, stages, splits.info),
        store.skipped,
    )


def train(
    modality: Modality[C], cfg: C, *, resume: bool = False, progress: Progress | None = None
) -> TrainResult:
    """Prepare (when needed), train, and write the run directory. ``cfg`` is validated as the
    CLI validates it (:meth:`~mmkit.config.TrainConfig.validate`), before anything is written."""
    cfg.validate()
    progress = progress or NullProgress()
    cfg, start = finetune.plan(modality.name, cfg, progress, resume=resume)  # before the run

    def setup() -> Job:
        job = training_job(modality, cfg, progress)
        return finetune.apply(job, cfg, start, resume=resume)

    return fit(cfg, setup, resume=resume, progress=progress)


@dataclass
class LoadedClassifier(Generic[C]):
    model: Classifier
    spec: CheckpointSpec
    trained: C  # the modality's config with the data-shaping options the model trained with
    path: Path
    device: torch.device

    @property
    def labels(self) -> list[str]:
        return self.spec.labels


def trained_config(modality: Modality[C], spec: CheckpointSpec, source: str) -> C:
    """The checkpoint's data-shaping options (``modality.shape_keys``) as a checked config."""
    values = {k: spec.train[k] for k in modality.shape_keys if k in spec.train}
    try:
        cfg = from_dict(modality.config_class, dict(values, dataset="-"), source=f"{source}: train")
        cfg.validate()
    except UserInputError as exc:
        text = str(exc) if str(exc).startswith(source) else f"{source}: train: {exc}"
        raise CheckpointError(text) from exc
    return cfg


def load_classifier(
    checkpoint: str | Path, modality: Modality[C], device: str = "auto"
) -> LoadedClassifier[C]:
    """A classification checkpoint of this modality, rebuilt from its config, in eval mode."""
    path = resolve_checkpoint_dir(checkpoint)
    spec = read_spec(path)
    if spec.modality != modality.name or spec.task != "classify":
        raise UserInputError(
            f"{path} is a {spec.modality} {spec.task} checkpoint, not {modality.name} "
            "classification"
        )
    trained = trained_config(modality, spec, str(path / "config.json"))
    dev = distributed.init(resolve_device(device))  # torchrun: eval is sharded over ranks
    loaded = load_checkpoint(path, dev)
    return LoadedClassifier(loaded.model, spec, trained, path, dev)


def evaluate(
    modality: Modality[C],
    checkpoint: str | Path,
    cfg: C,
    *,
    split: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics of a checkpoint on a dataset, decoded with the checkpoint's params. Which items
    are scored follows :func:`~mmkit.data.splits.eval_selection` (``split`` None = auto); the
    result names the split and ``num_samples``. ``cfg`` is validated as the CLI validates it."""
    from mmkit.engine.plots import plot_confusion

    cfg.validate()
    progress = progress or NullProgress()
    loaded = load_classifier(checkpoint, modality, cfg.device)
    cfg = replace(cfg, **{k: getattr(loaded.trained, k) for k in modality.shape_keys})
    with distributed.main_first():
        store = prepare(modality, cfg, progress=progress)
    selection = eval_selection(store, split, loaded.spec.fingerprint)
    progress.message(selection.note)
    indices, split = selection.indices, selection.split
    labels = loaded.labels
    unknown = sorted({store.labels[store.targets[i]] for i in indices} - set(labels))
    if unknown:
        raise UserInputError(f"labels not in the checkpoint: {', '.join(unknown[:5])}")
    remap = torch.tensor([labels.index(x) if x in labels else -1 for x in store.labels])
    eval_set = modality.eval_set(store, indices, cfg)
    shard = distributed.shard(range(len(eval_set)))  # predict() gathers every rank's part
    loader = torch.utils.data.DataLoader(eval_set, batch_size=32, sampler=shard)
    targets, probs = predict(loaded.model, loader, loaded.device)
    check_finite(probs, loaded.model, loaded.path, str(cfg.dataset))
    result = classification_report(remap[targets], probs.argmax(1), labels)
    result.update(split=split, split_note=selection.note, skipped=store.skipped)
    distributed.close()  # every rank leaves together: none exits under another's gloo threads
    if not distributed.is_main():
        return result
    out_dir = loaded.path.parent / "eval"
    out_dir.mkdir(exist_ok=True)
    stem = f"{Path(str(cfg.dataset)).name or 'dataset'}-{split}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2))
    result["confusion_png"] = str(
        plot_confusion(result["confusion_matrix"], labels, out_dir / f"{stem}-confusion.png")
    )
    return result


def infer(
    modality: Modality[C],
    paths: Sequence[str],
    checkpoint: str | Path,
    *,
    k: int = 5,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Top-k labels per file (docs/design.md); several views are averaged. Views are
    scored a batch at a time as the modality makes them, so memory does not grow with a file's
    length (a 3-hour recording is thousands of windows); only each window's top-k is kept."""
    progress = progress or NullProgress()
    loaded = load_classifier(checkpoint, modality, device)
    labels = loaded.labels
    files = expand_paths(paths, modality.extensions)
    results = []
    progress.start("infer", len(files))
    for f in files:
        total, count, windows = torch.zeros(len(labels)), 0, []
        for views, infos in modality.view_batches(f, loaded.trained, 64):
            with torch.no_grad():
                probs = loaded.model(views.to(loaded.device)).float().softmax(-1).cpu()
            check_finite(probs, loaded.model, loaded.path, f)
            total += probs.sum(0)
            count += len(probs)
            if any("start" in info for info in infos):  # one info per view: time windows
                windows.extend(
                    dict(info, top_k=top_k(p, labels, k))
                    for info, p in zip(infos, probs, strict=True)
                )
        entry: dict[str, Any] = {"path": f, "top_k": top_k(total / count, labels, k)}
        if windows:
            entry["windows"] = windows
        results.append(entry)
        progress.advance(1)
    progress.end()
    return results
