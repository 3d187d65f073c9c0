"""The optimizer every run uses: AdamW (weight decay on weight matrices only: none on biases,
norms, temperatures and embeddings) with a linear warmup then cosine decay to zero, stepped once
per training step."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from mmkit.config import TrainConfig


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, total_steps: int
) -> tuple[torch.optim.AdamW, LRScheduler]:
    """AdamW over ``model``'s trainable parameters (``cfg.lr``, ``cfg.weight_decay``) and its
    schedule: ``cfg.warmup`` (a fraction of ``total_steps``, at least one step) from 1% of the
    rate up, then a cosine down to 0."""
    scale = getattr(cfg, "backbone_lr_scale", 1.0)  # a classification option (ClassifyConfig)
    groups = param_groups(model, cfg.weight_decay, lr=cfg.lr, backbone_lr_scale=scale)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    steps = max(1, int(cfg.warmup * total_steps))
    sched = torch.optim.lr_scheduler
    scheduler = sched.SequentialLR(
        optimizer,
        [
            sched.LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=steps),
            sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - steps), eta_min=0.0),
        ],
        milestones=[steps],
    )
    return optimizer, scheduler


def param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    *,
    lr: float | None = None,
    backbone_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """``model``'s trainable parameters in two AdamW groups: ``weight_decay`` on weight matrices,
    none on the rest: parameters under 2 dimensions (biases, norm scales, a logit scale), the
    weights of ``nn.Embedding`` modules and parameters named ``*embedding`` (open_clip's token,
    position and class embeddings; timm's ViTs exempt theirs the same way).

    With a ``backbone_lr_scale`` other than 1 and a model that names its head
    (``model.head_prefixes``), each group splits in two: the head's parameters at ``lr``, the
    others at ``lr * backbone_lr_scale`` (empty groups left out)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or id(p) in embeddings or name.rsplit(".", 1)[-1].endswith("embedding")
        (no_decay if plain else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    head = tuple(getattr(model, "head_prefixes", ()))
    if backbone_lr_scale == 1.0 or not head:
        return groups  # two groups, as a run's saved optimizer state has them
    if lr is None:
        raise ValueError("a backbone_lr_scale needs the base lr")
    names = {id(p): n for n, p in model.named_parameters()}
    split = []
    for group in groups:
        mine = [p for p in group["params"] if names[id(p)].startswith(head)]
        rest = [p for p in group["params"] if not names[id(p)].startswith(head)]
        split.append({**group, "params": mine, "lr": lr})
        split.append({**group, "params": rest, "lr": lr * backbone_lr_scale})
    return [g for g in split if g["params"]]
