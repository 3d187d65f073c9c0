"""Losses shared by tasks: the CLIP contrastive loss.

:class:`ContrastiveLoss` is the symmetric InfoNCE objective of CLIP. For a batch of ``B`` matched
(image, caption) pairs with L2-normalised features ``I`` and ``T`` and temperature scale ``s``,
the logits are ``s * I @ T.T``; caption ``i`` is the correct "class" of image ``i`` among the
batch's captions and vice versa, and the loss is the mean of the two cross-entropies::

    loss = (CE(s * I @ T.T, arange(B)) + CE(s * T @ I.T, arange(B))) / 2

Other pairs in the batch are negatives, so a larger batch gives more negatives. Under DDP the
features of all ranks are gathered first (open_clip's ``gather_features``), so every rank scores
its pairs against the global batch. Two captions of the same image in one batch count as
negatives of each other; samplers that draw one caption per image per step avoid that.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE over image and text features, built on ``open_clip.loss.ClipLoss``.

    Args:
        local_loss: under DDP, score only this rank's rows against all gathered columns
            (``B x world*B`` logits instead of ``world*B`` squared). Gradients stay exact with
            ``gather_with_grad``; DDP's gradient averaging then gives the global-batch loss.
        gather_with_grad: gather features with ``torch.distributed.nn.all_gather`` so gradients
            flow back to the rank that computed them.
        rank, world_size: ``None`` reads ``torch.distributed`` at each call (so the loss may be
            built before ``init_process_group``); 0 and 1 without distributed training.

    ``forward(image_features, text_features, logit_scale)`` returns the scalar loss.
    """

    def __init__(
        self,
        *,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.rank = rank
        self.world_size = world_size
        from open_clip.loss import ClipLoss  # lazy: open_clip imports slowly

        self.clip_loss = ClipLoss(
            local_loss=local_loss, gather_with_grad=gather_with_grad, cache_labels=True
        )

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        """Mean of image->text and text->image cross-entropy over the (gathered) batch."""
        if image_features.shape != text_features.shape or image_features.ndim != 2:
            raise ValueError(
                "image_features and text_features must both be [B, D], got "
                f"{list(image_features.shape)} and {list(text_features.shape)}"
            )
        rank, world_size = _dist_rank_world()
        self.clip_loss.rank = rank if self.rank is None else self.rank
        self.clip_loss.world_size = world_size if self.world_size is None else self.world_size
        return self.clip_loss(image_features, text_features, logit_scale)
