"""torchvision's video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) as mmkit backbones.

Randomly initialised; ``weights_path`` loads a local state dict (``.safetensors`` or a torch file
read with ``weights_only=True``), e.g. the Kinetics-400 weights saved from torchvision. The module
keeps torchvision's parameter names (``stem``, ``layer1..4``, ``fc``), so such files load as they
are; an ``fc`` whose class count differs is left out and the new head starts fresh. These models
expect 112x112 crops normalised with :data:`mmkit.preprocess.video.KINETICS_MEAN`/``STD``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from mmkit.errors import CheckpointError, UserInputError
from mmkit.io.weights import read_state_dict
from mmkit.registry import register_backbone, variant

# builders in ``torchvision.models.video``, imported when a model is built: importing
# ``torchvision.models`` pulls in ``torch._dynamo`` (1.5 s), which registering need not pay
ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")


class TorchvisionVideoResNet(nn.Module):
    """A torchvision ``VideoResNet`` with ``forward_features`` / ``forward_head`` split out."""

    def __init__(
        self, arch: str, *, num_classes: int, dropout: float = 0.0, weights_path: str | None = None
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise UserInputError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        if num_classes < 0:
            raise UserInputError(f"num_classes ({num_classes}) must be >= 0 (0: no classifier)")
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"dropout ({dropout}) must be in [0, 1)")
        from torchvision.models import video as tv_video

        net = getattr(tv_video, arch)(weights=None)
        self.stem, self.avgpool = net.stem, net.avgpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )  # fmt: skip
        self.num_features = net.fc.in_features
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if weights_path is not None:
            self.load_weights(weights_path)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load a torchvision-format state dict; a head of another size is skipped."""
        state = read_state_dict(path, what="weights_path")
        own = self.state_dict()
        skipped = {
            k for k in ("fc.weight", "fc.bias") if k in state and (
                k not in own or own[k].shape != state[k].shape
            )
        }  # fmt: skip
        state = {k: v for k, v in state.items() if k not in skipped}
        missing = sorted(k for k in own.keys() - state.keys() if not k.startswith("fc."))
        unexpected = sorted(state.keys() - own.keys())
        wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            raise CheckpointError(
                f"weights_path {path}: does not fit this model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})"
            )
        self.load_state_dict(state, strict=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, 3, T, H, W]`` -> pooled features ``[B, 512]``."""
        if x.dim() != 5:
            raise ValueError(f"expected clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.avgpool(x).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` -> logits ``[B, num_classes]``."""
        return self.fc(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _torchvision_variant(arch: str, doc: str) -> Callable[..., TorchvisionVideoResNet]:
    register = register_backbone(
        arch, modality="video", tags=("torchvision",), loads=("weights_path",)
    )
    return register(variant(TorchvisionVideoResNet, doc, arch=arch))


r3d_18 = _torchvision_variant(
    "r3d_18", "torchvision R3D-18 (3D ResNet-18, 33M parameters); optional local weights."
)
mc3_18 = _torchvision_variant(
    "mc3_18",
    "torchvision MC3-18 (3D stem, 2D later stages, 11.7M parameters); optional local weights.",
)
r2plus1d_18 = _torchvision_variant(
    "r2plus1d_18",
    "torchvision R(2+1)D-18 (factorised 3D convs, 31.5M parameters); optional local weights.",
)
