"""A factorised space-time video transformer (ViViT "factorised encoder") for ``[B, 3, T, H, W]``.

Each frame is cut into ``patch_size`` patches (a strided ``Conv2d``), a spatial transformer runs
over each frame's patches plus a frame ``[CLS]`` token, and a temporal transformer runs over the
``T`` frame tokens plus a clip ``[CLS]`` token, whose output is the feature. Position embeddings
are learned for ``img_size`` / ``num_frames`` and interpolated for other input sizes. Layers are
``nn.TransformerEncoderLayer`` (pre-norm, GELU). Registered: ``video_vit`` and ``video_vit_test``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmkit.backbones.base import ClassifierBackbone
from mmkit.errors import UserInputError
from mmkit.registry import register_backbone, variant


def _encoder(dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float) -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True,
        norm_first=True,
    )  # fmt: skip
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


@register_backbone("video_vit", modality="video")
class VideoViT(ClassifierBackbone):
    """Factorised space-time transformer (~1.2M parameters at the defaults).

    A spatial transformer per frame, then a temporal one over the frames' class tokens."""

    def __init__(
        self,
        *,
        num_classes: int,
        img_size: int = 64,
        num_frames: int = 16,
        patch_size: int = 8,
        in_channels: int = 3,
        dim: int = 128,
        spatial_depth: int = 4,
        temporal_depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise UserInputError(
                f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})"
            )
        if dim % heads:
            raise UserInputError(f"dim ({dim}) must be a multiple of heads ({heads})")
        for name, value in (("dropout", dropout), ("head_dropout", head_dropout)):
            if not 0.0 <= value < 1.0:
                raise UserInputError(f"{name} ({value}) must be in [0, 1)")
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.frame_cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.spatial_pos = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))
        self.spatial = _encoder(dim, spatial_depth, heads, mlp_ratio, dropout)
        self.spatial_norm = nn.LayerNorm(dim)
        self.clip_cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.temporal_pos = nn.Parameter(torch.zeros(1, 1 + num_frames, dim))
        self.temporal = _encoder(dim, temporal_depth, heads, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)
        self._init_head(dim, num_classes, head_dropout)
        for p in (self.frame_cls, self.spatial_pos, self.clip_cls, self.temporal_pos):
            nn.init.trunc_normal_(p, std=0.02)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def _spatial_pos(self, gh: int, gw: int) -> torch.Tensor:
        if (gh, gw) == (self.grid, self.grid):
            return self.spatial_pos
        cls, grid = self.spatial_pos[:, :1], self.spatial_pos[:, 1:]
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)

    def _temporal_pos(self, t: int) -> torch.Tensor:
        if t + 1 == self.temporal_pos.shape[1]:
            return self.temporal_pos
        cls, frames = self.temporal_pos[:, :1], self.temporal_pos[:, 1:]
        frames = F.interpolate(frames.transpose(1, 2), size=t, mode="linear", align_corners=False)
        return torch.cat([cls, frames.transpose(1, 2)], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, C, T, H, W]`` (H, W multiples of ``patch_size``) -> ``[B, dim]``."""
        if x.dim() != 5:
            raise ValueError(f"expected clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"frame size {h}x{w} is not a multiple of patch_size {self.patch_size}"
            )
        patches = self.patch_embed(x.transpose(1, 2).reshape(b * t, c, h, w))  # [BT, D, gh, gw]
        gh, gw = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2)  # [BT, gh*gw, D]
        tokens = torch.cat([self.frame_cls.expand(b * t, -1, -1), tokens], dim=1)
        tokens = self.spatial(tokens + self._spatial_pos(gh, gw))
        frames = self.spatial_norm(tokens[:, 0]).reshape(b, t, -1)  # one token per frame
        frames = torch.cat([self.clip_cls.expand(b, -1, -1), frames], dim=1)
        frames = self.temporal(frames + self._temporal_pos(t))
        return self.norm(frames[:, 0])


video_vit_test = register_backbone("video_vit_test", modality="video")(
    variant(
        VideoViT,
        "Tiny factorised transformer (~24k parameters) for fast end-to-end tests.",
        img_size=32,
        num_frames=8,
        dim=32,
        spatial_depth=1,
        temporal_depth=1,
        heads=2,
        mlp_ratio=2.0,
        head_dropout=0.0,
    )
)
