"""torchvision's Kinetics-400 video classifiers ``s3d``, ``mvit_v1_b``, ``mvit_v2_s`` and
``swin3d_t`` as mmkit backbones.

Each is torchvision's network with its classifier replaced: features are what torchvision's
classifier would see (S3D's pooled 1024 channels, MViT's class token, Video Swin's pooled 768),
then mmkit's dropout and a linear head of ``num_classes`` (none for 0). The tag ``kinetics400``
(:func:`mmkit.backbones.pretrained.load_pretrained`) loads torchvision's weights; its 400-class
head is kept when ``num_classes`` is 400 (S3D's 1x1x1 convolution becomes the equivalent linear
layer) and starts fresh otherwise. The MViTs run on one clip shape only, 16 x 224 x 224
(torchvision sizes their position embeddings for it); the others take any clip size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmkit.backbones.base import ClassifierBackbone
from mmkit.backbones.pretrained import WeightsSpec
from mmkit.errors import UserInputError
from mmkit.preprocess.video import KINETICS_MEAN, KINETICS_STD
from mmkit.registry import register_backbone, variant

# arch: (torchvision's Weights enum, its classifier attribute, the classifier's keys in a file)
ARCHS = {
    "s3d": ("S3D_Weights", "classifier", "classifier.1."),
    "mvit_v1_b": ("MViT_V1_B_Weights", "head", "head.1."),
    "mvit_v2_s": ("MViT_V2_S_Weights", "head", "head.1."),
    "swin3d_t": ("Swin3D_T_Weights", "head", "head."),
}


class TorchvisionVideoNet(ClassifierBackbone):
    """A torchvision video classifier up to its pooled features, then dropout and a linear head."""

    head_name = "fc"  # a Kinetics head of another class count starts fresh

    def __init__(self, *, arch: str, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise UserInputError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        from torchvision.models import video as tv_video  # 1.5 s: when a model is built

        _, head_attr, self._file_head = ARCHS[arch]
        net = getattr(tv_video, arch)(weights=None)
        head = getattr(net, head_attr)
        last = head[-1] if isinstance(head, nn.Sequential) else head
        num_features = int(last.in_channels if arch == "s3d" else last.in_features)
        setattr(net, head_attr, nn.Identity())  # net(x) is now the pooled features
        if arch == "s3d":
            net.avgpool = _SmallClipPool(net.avgpool.kernel_size)
        self.net = net
        self._init_head(num_features, num_classes, dropout)

    def adapt_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's keys -> this module's: the network under ``net.``, its classifier as
        ``fc`` (S3D's ``[classes, 1024, 1, 1, 1]`` convolution flattened to a linear weight)."""
        out = {}
        for key, value in state.items():
            if key.startswith(self._file_head):
                name = "fc." + key.removeprefix(self._file_head)
                out[name] = value.flatten(1) if name == "fc.weight" else value
            else:
                out["net." + key] = value
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, 3, T, H, W]`` -> pooled features ``[B, num_features]``."""
        if x.dim() != 5:
            raise ValueError(f"expected clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        return self.net(x)


class TorchvisionMViT(TorchvisionVideoNet):
    """An MViT: torchvision builds its position embeddings for clips of 16 x 224 x 224 only."""

    num_frames, size = 16, 224

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and tuple(x.shape[2:]) != (self.num_frames, self.size, self.size):
            raise UserInputError(
                f"MViT takes clips of exactly {self.num_frames} frames of {self.size}x{self.size} "
                f"(set frames {self.num_frames} and size {self.size}), got {tuple(x.shape[2:])}"
            )
        return super().forward_features(x)


class _SmallClipPool(nn.Module):
    """S3D's average pool (``(2, 7, 7)``, stride 1; the model then averages what is left). For a
    clip too small for that window it is skipped: the mean that follows is then the whole pool."""

    def __init__(self, kernel_size: Any) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(n >= k for n, k in zip(x.shape[2:], self.kernel_size, strict=True)):
            return F.avg_pool3d(x, self.kernel_size, stride=1)
        return x


def _register(
    arch: str, doc: str, base: Callable[..., nn.Module], weights: WeightsSpec, **defaults: Any
) -> Callable[..., nn.Module]:
    register = register_backbone(
        arch, modality="video", tags=("torchvision",), weights={"kinetics400": weights}
    )
    return register(variant(base, doc, arch=arch, **defaults))


def _kinetics(arch: str, **preprocessing: Any) -> WeightsSpec:
    source = f"torchvision.models.video:{ARCHS[arch][0]}.KINETICS400_V1"
    return WeightsSpec(source, num_classes=400, **preprocessing)


# the preprocessing of torchvision's Weights (transforms, and clip_len in their docs)
_MVIT = {"frames": 16, "size": 224, "resize": (256,), "mean": (0.45,) * 3, "std": (0.225,) * 3}

s3d = _register(
    "s3d",
    "torchvision S3D (separable 3D Inception, 8.3M parameters).",
    TorchvisionVideoNet,
    _kinetics("s3d", frames=128, size=224, resize=(256, 256), mean=KINETICS_MEAN, std=KINETICS_STD),
    dropout=0.2,
)
mvit_v1_b = _register(
    "mvit_v1_b",
    "torchvision MViT-V1-B (multiscale ViT, 36.6M parameters, fixed 16x224x224 clips).",
    TorchvisionMViT,
    _kinetics("mvit_v1_b", **_MVIT),
    dropout=0.5,
)
mvit_v2_s = _register(
    "mvit_v2_s",
    "torchvision MViT-V2-S (multiscale ViT, 34.5M parameters, fixed 16x224x224 clips).",
    TorchvisionMViT,
    _kinetics("mvit_v2_s", **_MVIT),
    dropout=0.5,
)
swin3d_t = _register(
    "swin3d_t",
    "torchvision Video Swin-T (28.2M parameters).",
    TorchvisionVideoNet,
    _kinetics(
        "swin3d_t",
        frames=32,
        size=224,
        resize=(256,),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ),
)
