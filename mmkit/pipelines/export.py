"""``mmkit export``: a checkpoint as ONNX or TorchScript graphs plus a JSON sidecar.

A classifier (audio, video) becomes one graph from the raw input to the logits, its preprocessing
inside wherever it exports (:func:`mmkit.engine.export.export_chain`); an image-text model two
graphs, the image tower and the text tower. Training augmentations are the identity in eval mode
and are left out. The sidecar (``<out>.json``, next to the graphs, naming them relative to
itself) holds the rest: the labels, what each graph takes and returns, the exact preprocessing
that comes before it (decoding, and any stage that could not be exported), the postprocessing,
and for image-text models the tokenizer settings and the logit scale. ``MODALITIES`` says what
each modality exports; :mod:`mmkit.pipelines.export_sidecar` words its inputs.

What the graphs take (``batch`` is dynamic, everything else is fixed by the checkpoint):

- audio ``waveform``: float32 ``[batch, num_samples]``, mono in [-1, 1] at the training sample
  rate (a float32 soundfile read; int16 PCM / 32768), ``num_samples`` = the training clip length;
  returns ``logits [batch, classes]``.
- video ``frames``: uint8 RGB ``[batch, frames, short_side, short_side, 3]``, frames decoded as
  the prepared store holds them; returns ``logits``.
- image-text ``image``: uint8 RGB ``[batch, S, S, 3]`` fitted into ``S x S`` as the store does,
  and ``tokens``: int64 ``[batch, context_length]`` token ids; each returns an L2-normalised
  ``embedding [batch, D]``.
"""

from __future__ import annotations

import glob
import importlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mmkit
from mmkit.engine.export import FORMATS, ExportedGraph, export_chain
from mmkit.errors import UserInputError
from mmkit.io.atomic import write_text_atomic
from mmkit.io.checkpoint_dir import read_spec, resolve_checkpoint_dir
from mmkit.io.files import writing
from mmkit.pipelines import export_sidecar as sidecar_text
from mmkit.spec import CheckpointSpec

OMITTED = "identity in eval mode (training augmentation)"
SOFTMAX_VIEWS = (
    "softmax over each row of logits; a file's scores are the mean of the softmax of its views "
    "(windows or clips), its top-1 the label of the highest mean score"
)


def export(checkpoint: str | Path, fmt: str, out: str | Path | None = None) -> dict[str, Any]:
    """Export a checkpoint (run or checkpoint directory) as ``fmt`` (``onnx`` or
    ``torchscript``) to ``out`` (default ``<run>/export/model.onnx`` / ``model.pt``; image-text
    models write ``<stem>.image<ext>`` and ``<stem>.text<ext>``) and its sidecar
    ``<stem>.json``. Returns ``{"checkpoint", "format", "modality", "sidecar", "models":
    {part: {"file", "input", "output", "in_graph", "outside_graph", "omitted", "check"}}}``."""
    if fmt not in FORMATS:
        raise UserInputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    ckpt = resolve_checkpoint_dir(checkpoint)
    spec = read_spec(ckpt)
    exporter = MODALITIES[spec.modality]
    files, sidecar = output_paths(ckpt, fmt, out, exporter.parts)
    # every graph is written aside first: one that fails, or a kill, leaves the previous export
    # whole; leftovers of a killed export are removed
    staged = {part: path.with_name(f".{path.name}.partial") for part, path in files.items()}
    for path in staged.values():  # itself, and the engine's temporary files beside it
        for pattern in ("{}", ".{}.*.tmp"):
            for leftover in path.parent.glob(pattern.format(glob.escape(path.name))):
                leftover.unlink(missing_ok=True)
    try:
        with writing(sidecar.with_suffix(FORMATS[fmt]), "the export"):
            meta = exporter.build(ckpt, spec, fmt, staged)
            # from here the graphs change: a kill before the new sidecar leaves none, so a
            # folder with graphs and no sidecar is an export that did not finish
            sidecar.unlink(missing_ok=True)
            for part, path in files.items():
                meta["models"][part]["file"] = path.name
                os.replace(staged[part], path)
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    meta = {
        "mmkit_version": mmkit.__version__,
        "format": fmt,
        "modality": spec.modality,
        "task": spec.task,
        "checkpoint": str(ckpt.resolve()),
        **meta,
    }
    write_text_atomic(sidecar, json.dumps(meta, indent=2) + "\n", "the export sidecar")
    models = {
        part: dict(info, file=str(sidecar.parent / info["file"]))
        for part, info in meta["models"].items()
    }
    return {
        "checkpoint": meta["checkpoint"],
        "format": fmt,
        "modality": spec.modality,
        "sidecar": str(sidecar),
        "models": models,
    }


def output_paths(
    ckpt: Path, fmt: str, out: str | Path | None, parts: tuple[str, ...]
) -> tuple[dict[str, Path], Path]:
    """The graph file of each part and the sidecar path, their folder created."""
    ext = FORMATS[fmt]
    base = (
        Path(out).expanduser().absolute()
        if out
        else ckpt.absolute().parent / "export" / f"model{ext}"
    )
    if base.suffix == ".json":
        raise UserInputError(f"--out {base}: name the model file; the sidecar .json goes beside it")
    if not base.suffix:
        base = base.with_name(base.name + ext)
    if base.is_dir():
        raise UserInputError(f"--out {base} is a directory; name the model file")
    with writing(base.parent, "to"):  # before any work: a read-only or missing folder
        base.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base.parent):
            pass
    if parts == ("model",):
        files = {"model": base}
    else:
        files = {p: base.with_name(f"{base.stem}.{p}{base.suffix}") for p in parts}
    return files, base.with_suffix(".json")


# -- classifiers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassifierExport:
    """One graph from a classification modality's raw input to the logits: the pipeline module
    whose ``MODALITY`` loads the checkpoint, the graph input's name, an example batch of it and
    the sidecar's words for it, each from the checkpoint's trained config."""

    pipeline: str
    input_name: str
    example: Callable[[Any], torch.Tensor]
    input_text: Callable[[Any], str]
    preprocessing: Callable[[Any], dict[str, Any]]
    parts: tuple[str, ...] = ("model",)

    def build(
        self, ckpt: Path, spec: CheckpointSpec, fmt: str, files: dict[str, Path]
    ) -> dict[str, Any]:
        from mmkit.pipelines.classify import load_classifier

        modality = importlib.import_module(self.pipeline).MODALITY
        loaded = load_classifier(ckpt, modality, device="cpu")
        model = loaded.model.float().eval()
        stages = [(s.name, m) for s, m in zip(spec.stages("input"), model.preprocess, strict=True)]
        cfg = loaded.trained
        graph = export_chain(
            stages,
            (spec.backbone.name, model.backbone),
            self.example(cfg),
            fmt,
            files["model"],
            input_name=self.input_name,
            output_name="logits",
        )
        described = self.input_text(cfg)
        info = _graph_info(
            graph, spec, self.input_name, described, "logits", "class logits, one per label"
        )
        return {
            "labels": list(spec.labels),
            "models": {"model": info},
            "preprocessing": self.preprocessing(cfg),
            "postprocessing": SOFTMAX_VIEWS,
        }


def _audio_example(num_samples: int) -> torch.Tensor:
    """Two seeded test waveforms in [-1, 1]: a tone sweep with noise, and quieter noise."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(num_samples, dtype=torch.float32) / max(num_samples, 1)
    sweep = 0.4 * torch.sin(2 * math.pi * (200 + 1800 * t) * t * 8)
    noise = torch.randn(2, num_samples, generator=g)
    return torch.stack([sweep + 0.05 * noise[0], 0.1 * noise[1]]).clamp(-1, 1)


def _video_example(frames: int, side: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, frames, side, side, 3), generator=g, dtype=torch.uint8)


# -- image-text models ---------------------------------------------------------------------------
class _Encode(nn.Module):
    """``model.encode_image`` or ``model.encode_text`` (normalised) as a module's forward."""

    def __init__(self, model: nn.Module, tower: str) -> None:
        super().__init__()
        self.model = model
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tower == "image":
            return self.model.encode_image(x)
        return self.model.encode_text(x)


def _export_clip(
    ckpt: Path, spec: CheckpointSpec, fmt: str, files: dict[str, Path]
) -> dict[str, Any]:
    """The image tower and the text tower, each a graph to its normalised embedding."""
    from mmkit.pipelines.mm import load_clip

    loaded = load_clip(ckpt, device="cpu")
    pipeline = loaded.pipeline.float().eval()
    params = loaded.store_params
    size = int(params["image_size"])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8)
    tokens = loaded.tokenizer(["a photo of a dog", "two red squares on the left of a circle"])
    (image_stage,) = spec.stages("image")
    (text_stage,) = spec.stages("text")
    backbone = spec.backbone.name
    image = export_chain(
        [(image_stage.name, pipeline.transform)],
        (f"{backbone}.encode_image", _Encode(pipeline.model, "image")),
        images,
        fmt,
        files["image"],
        input_name="image",
        output_name="image_embedding",
    )
    text = export_chain(
        [],
        (f"{backbone}.encode_text", _Encode(pipeline.model, "text")),
        tokens,
        fmt,
        files["text"],
        input_name="tokens",
        output_name="text_embedding",
    )
    embedding = "L2-normalised embedding"
    image_input = f"uint8 RGB images [batch, {size}, {size}, 3], fitted as described below"
    text_input = (
        f"int64 token ids [batch, {tokens.shape[1]}] from the tokenizer below (start token, "
        "ids, end token, zero padding)"
    )
    return {
        "models": {
            "image": _graph_info(image, spec, "image", image_input, "image_embedding", embedding),
            "text": _graph_info(text, spec, "tokens", text_input, "text_embedding", embedding),
        },
        "image_preprocessing": sidecar_text.image_preprocessing(params),
        "tokenizer": sidecar_text.tokenizer_info(loaded.tokenizer, text_stage.params),
        "logit_scale": float(pipeline.model.scale().detach()),
        "similarity": (
            "cosine similarity = dot product of an image and a text embedding; probabilities = "
            "softmax(logit_scale * cosine) over the texts compared with one image"
        ),
        "labels": list(spec.labels),
        "prompt": spec.prompt,
    }


class ImageTextExport:
    """Two graphs of an image-text model: the image tower and the text tower."""

    parts = ("image", "text")
    build = staticmethod(_export_clip)


# -- what each modality exports ------------------------------------------------------------------
MODALITIES: dict[str, ClassifierExport | ImageTextExport] = {
    "audio": ClassifierExport(
        "mmkit.pipelines.audio",
        "waveform",
        lambda cfg: _audio_example(cfg.num_samples),
        sidecar_text.audio_input,
        sidecar_text.audio_preprocessing,
    ),
    "video": ClassifierExport(
        "mmkit.pipelines.video",
        "frames",
        lambda cfg: _video_example(cfg.frames, cfg.short_side),
        sidecar_text.video_input,
        sidecar_text.video_preprocessing,
    ),
    "mm": ImageTextExport(),
}
"""The graphs of a checkpoint's modality (its ``parts``) and what builds them (``build``: the
graphs and the sidecar's entries for them)."""


# -- the sidecar's description of one graph ------------------------------------------------------
def _graph_info(
    graph: ExportedGraph,
    spec: CheckpointSpec,
    input_name: str,
    input_text: str,
    output_name: str,
    output_text: str,
) -> dict[str, Any]:
    stages = {s.name: s.params for stream in spec.preprocess.values() for s in stream}
    if graph.outside:
        input_text = f"the output of the outside_graph stages, applied in order to: {input_text}"
    return {
        "file": graph.path.name,
        "input": _tensor_info(input_name, graph.example_input, input_text),
        "output": _tensor_info(output_name, graph.example_output, output_text),
        "in_graph": graph.in_graph,
        "outside_graph": [{"name": n, "params": stages.get(n, {})} for n in graph.outside],
        "omitted": [{"name": n, "reason": OMITTED} for n in graph.omitted],
        "check": graph.check,
    }


def _tensor_info(name: str, example: torch.Tensor, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "dtype": str(example.dtype).removeprefix("torch."),
        "shape": ["batch", *example.shape[1:]],
        "description": description,
    }
