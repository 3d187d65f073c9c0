"""torchvision's video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) as mmkit backbones.

Randomly initialised; :func:`mmkit.backbones.pretrained.load_pretrained` loads the tag
``kinetics400`` (torchvision's Kinetics-400 weights) or a local state dict. The module keeps
torchvision's parameter names (``stem``, ``layer1..4``, ``fc``), so such files load as they are;
an ``fc`` whose class count differs is left out and the new head starts fresh. The weights were
trained on 16-frame 112x112 crops normalised with :data:`mmkit.preprocess.video.KINETICS_MEAN`/
``STD`` (their :class:`~mmkit.backbones.pretrained.WeightsSpec`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmkit.backbones.base import ClassifierBackbone
from mmkit.backbones.pretrained import WeightsSpec
from mmkit.errors import UserInputError
from mmkit.preprocess.video import KINETICS_MEAN, KINETICS_STD
from mmkit.registry import register_backbone, variant

# builders in ``torchvision.models.video``, imported when a model is built: importing
# ``torchvision.models`` pulls in ``torch._dynamo`` (1.5 s), which registering need not pay
ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")
WEIGHTS = {"r3d_18": "R3D_18_Weights", "mc3_18": "MC3_18_Weights",
           "r2plus1d_18": "R2Plus1D_18_Weights"}  # fmt: skip


class TorchvisionVideoResNet(ClassifierBackbone):
    """A torchvision ``VideoResNet`` with ``forward_features`` / ``forward_head`` split out."""

    head_name = "fc"  # torchvision's name: a Kinetics head of another class count starts fresh

    def __init__(self, *, arch: str, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise UserInputError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        from torchvision.models import video as tv_video

        net = getattr(tv_video, arch)(weights=None)
        self.stem, self.avgpool = net.stem, net.avgpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )  # fmt: skip
        self._init_head(net.fc.in_features, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, 3, T, H, W]`` -> pooled features ``[B, 512]``."""
        if x.dim() != 5:
            raise ValueError(f"expected clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.avgpool(x).flatten(1)


def _torchvision_variant(arch: str, doc: str) -> Callable[..., TorchvisionVideoResNet]:
    kinetics = WeightsSpec(
        f"torchvision.models.video:{WEIGHTS[arch]}.KINETICS400_V1",
        frames=16, size=112, resize=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD,
        num_classes=400,
    )  # fmt: skip
    register = register_backbone(
        arch, modality="video", tags=("torchvision",), weights={"kinetics400": kinetics}
    )
    return register(variant(TorchvisionVideoResNet, doc, arch=arch))


r3d_18 = _torchvision_variant("r3d_18", "torchvision R3D-18 (3D ResNet-18, 33M parameters).")
mc3_18 = _torchvision_variant(
    "mc3_18",
    "torchvision MC3-18 (3D stem, 2D later stages, 11.7M parameters).",
)
r2plus1d_18 = _torchvision_variant(
    "r2plus1d_18",
    "torchvision R(2+1)D-18 (factorised 3D convs, 31.5M parameters).",
)
