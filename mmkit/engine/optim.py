"""The optimizer every run uses: AdamW (no weight decay on biases and norms) with a linear
warmup then cosine decay to zero, stepped once per training step."""

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
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
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


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
