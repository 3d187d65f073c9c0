"""Classification: a model = preprocess stages + backbone, the loss, evaluation and prediction.

The model takes raw batches as the prepared store holds them (int16 PCM audio ``[B, T]``, uint8
frames ``[B, T, H, W, 3]``) so that decoding happens once and everything else runs batched on the
training device. Evaluation batches may carry several views per item (``[B, K, ...]``: sliding
windows, test-time clips); their softmax scores are averaged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mmkit import distributed
from mmkit.errors import CheckpointError, UserInputError
from mmkit.metrics.classification import classification_report
from mmkit.registry import BACKBONES, PREPROCESSORS
from mmkit.spec import CheckpointSpec, Stage


class Classifier(nn.Module):
    """``backbone(preprocess(x))``; augmentation stages in ``preprocess`` act in train mode only.

    The head is the backbone's parameters under its ``pretrained_fresh`` prefixes
    (:mod:`mmkit.backbones.base`): :meth:`freeze_backbone` trains it alone, and the optimizer
    gives the rest ``--backbone-lr-scale`` (:attr:`head_prefixes`, :mod:`mmkit.engine.optim`).
    """

    compile_scope = "backbone"  # what --compile compiles (engine.placement.compile_model)

    def __init__(self, preprocess: nn.Sequential, backbone: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.frozen = False  # freeze_backbone() was called

    @property
    def head_prefixes(self) -> tuple[str, ...]:
        """The head's parameter names (prefixes of this model's ``named_parameters``)."""
        return tuple(f"backbone.{p}" for p in getattr(self.backbone, "pretrained_fresh", ()))

    def freeze_backbone(self) -> None:
        """Train the head only (a linear probe): every other parameter stops taking gradients
        and the backbone's BatchNorm layers stay in eval mode, their statistics unchanged."""
        head = self.head_prefixes
        if not head:
            raise UserInputError(
                f"--freeze backbone: {type(self.backbone).__name__} does not name its head "
                "(pretrained_fresh)"
            )
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith(head) and param.requires_grad)
        self.frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.int16:  # PCM from the prepared store
            x = x.float() / 32768.0
        return self.backbone(self.preprocess(x))

    @torch.no_grad()
    def predict_proba(self, views: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``[B, K, ...]`` views -> ``[B, C]`` softmax scores averaged over the K views."""
        b, k = views.shape[:2]
        flat = views.reshape(b * k, *views.shape[2:])
        probs = torch.cat(
            [self(flat[i : i + chunk]).float().softmax(-1) for i in range(0, b * k, chunk)]
        )
        return probs.reshape(b, k, -1).mean(1)


def build_classifier(spec: CheckpointSpec, source: str = "config.json") -> Classifier:
    """Rebuild the exact model from a checkpoint's spec (untrusted data: plugins are built
    through ``create_from_config``)."""
    with torch.device("cpu"):  # small buffers computed on the host, even in a meta pre-check
        stages = [
            PREPROCESSORS.create_from_config(s.name, s.params, source=source)
            for s in spec.stages("input")
        ]
    name = spec.backbone.name
    if name in BACKBONES and BACKBONES.get(name).modality != spec.modality:
        raise CheckpointError(
            f"{source}: backbone {name!r} is a {BACKBONES.get(name).modality} backbone, "
            f"not {spec.modality}"
        )
    backbone = BACKBONES.create_from_config(
        name, spec.backbone.params, source=source, num_classes=len(spec.labels)
    )
    return Classifier(nn.Sequential(*stages), backbone)


def stage_spec(module: nn.Module, name: str) -> Stage:
    """A preprocess stage as the checkpoint records it: its ``params()``, which every
    registered preprocessor has."""
    params = getattr(module, "params", None)
    if params is None:
        raise TypeError(f"preprocessor {name!r} has no params(): it cannot be saved")
    return Stage(name, params())


class ClassificationTask:
    """Cross-entropy training; accuracy is the validation metric early stopping watches."""

    monitor = "accuracy"

    def __init__(self, labels: list[str], *, label_smoothing: float = 0.05) -> None:
        self.labels = labels
        self.label_smoothing = label_smoothing

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, y = batch
        logits = model(x.to(device, non_blocking=True))
        return F.cross_entropy(
            logits.float(), y.to(device, non_blocking=True), label_smoothing=self.label_smoothing
        )

    def evaluate(
        self, model: nn.Module, loader: DataLoader, device: torch.device
    ) -> dict[str, Any]:
        targets, probs = predict(model, loader, device)
        report = classification_report(targets, probs.argmax(1), self.labels)
        report["loss"] = float(F.nll_loss(probs.clamp_min(1e-8).log(), targets))
        return report


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and view-averaged probabilities for every item of an eval loader.

    The results go into tensors allocated once: a small tensor kept per batch, between the
    batches' large short-lived ones, fragmented the heap so that the process grew by about an
    item's size for every item scored (+350 MB over Speech Commands' 10k test clips)."""
    model.eval()
    count = len(loader.sampler)  # this rank's items (a shard under torchrun)
    targets, probs, done = torch.empty(count, dtype=torch.long), torch.empty(0), 0
    for views, y in loader:
        batch = model.predict_proba(views.to(device, non_blocking=True)).cpu()
        if done == 0:
            probs = torch.empty(count, batch.shape[1])
        probs[done : done + len(y)], targets[done : done + len(y)] = batch, y
        done += len(y)
    total = len(loader.dataset)  # under torchrun each rank saw a shard: gather all of them
    return (
        distributed.gather_rows(targets[:done], total),
        distributed.gather_rows(probs[:done], total),
    )


def top_k(probs: torch.Tensor, labels: list[str], k: int) -> list[dict[str, Any]]:
    """``[{"label", "score"}]`` for the ``k`` best classes of one probability vector."""
    k = max(1, min(k, len(labels)))
    scores, idx = probs.topk(k)
    return [
        {"label": labels[i], "score": round(float(s), 6)}
        for s, i in zip(scores, idx.tolist(), strict=True)
    ]
