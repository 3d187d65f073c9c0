"""Self-supervised speech models on the waveform: wav2vec 2.0, HuBERT and WavLM from torchaudio.

The network is built by torchaudio's own constructor (``wav2vec2_model`` / ``wavlm_model``) with
the architecture of a torchaudio pipeline bundle (its ``_params``), so the bundle's weights file
loads key for key: the tags ``WAV2VEC2_BASE``, ``HUBERT_BASE``, ``WAVLM_BASE`` and
``WAVLM_BASE_PLUS`` (:func:`mmkit.backbones.pretrained.load_pretrained`). Every transformer
layer's output (``extract_features``) is mixed by a learned softmax-weighted sum (SUPERB-style),
averaged over time, and read by a linear head. Input: mono 16 kHz waveforms ``[B, samples]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmkit.backbones.base import ClassifierBackbone
from mmkit.backbones.pretrained import WeightsSpec
from mmkit.errors import UserInputError
from mmkit.registry import register_backbone, variant

SAMPLE_RATE = 16000


def _bundle(name: str) -> Any:
    import torchaudio.pipelines as pipelines

    bundle = getattr(pipelines, name, None)
    if not isinstance(bundle, pipelines.Wav2Vec2Bundle):
        known = [n for n, b in vars(pipelines).items() if isinstance(b, pipelines.Wav2Vec2Bundle)]
        raise UserInputError(
            f"bundle must be a torchaudio wav2vec2 bundle ({', '.join(sorted(known))}), "
            f"got {name!r}"
        )
    return bundle


class SSLSpeechClassifier(ClassifierBackbone):
    """A torchaudio SSL speech model on the waveform; a learned layer-weighted sum of its
    transformer layers, mean over time, linear head.

    ``bundle`` names the torchaudio bundle whose architecture is built; ``architecture``
    overrides some of it (``{"encoder_num_layers": 2, ...}``: then the bundle's weights no longer
    fit). ``freeze_feature_extractor`` keeps the convolutional front end fixed (the usual
    fine-tuning recipe).
    """

    head_name = "fc"
    pretrained_fresh = ("fc.", "layer_logits")  # the file holds the SSL network only

    def __init__(
        self,
        *,
        num_classes: int,
        bundle: str = "HUBERT_BASE",
        architecture: dict[str, Any] | None = None,
        dropout: float = 0.0,
        freeze_feature_extractor: bool = True,
    ) -> None:
        super().__init__()
        from torchaudio.models import wav2vec2_model, wavlm_model

        spec = _bundle(bundle)
        params = dict(spec._params)
        unknown = sorted(set(architecture or {}) - set(params) - {"aux_num_out"})
        if unknown:
            raise UserInputError(
                f"architecture: unknown key(s) {', '.join(unknown)}; {bundle} has "
                f"{', '.join(sorted(params))}"
            )
        params.update(architecture or {}, aux_num_out=None)
        build = {"Wav2Vec2": wav2vec2_model, "WavLM": wavlm_model}[spec._model_type]
        self.model = build(**params)
        self.normalize_waveform = bool(spec._normalize_waveform)
        self.sample_rate = int(spec.sample_rate)
        if freeze_feature_extractor:
            self.model.feature_extractor.requires_grad_(False)
        self.num_layers = int(params["encoder_num_layers"])
        self.layer_logits = nn.Parameter(torch.zeros(self.num_layers))  # softmax -> layer weights
        self._init_head(params["encoder_embed_dim"], num_classes, dropout)

    def adapt_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchaudio bundle's file holds the network alone: its keys go under ``model.``."""
        return {f"model.{k}": v for k, v in state.items()}

    def layer_weights(self) -> torch.Tensor:
        """The learned weight of each transformer layer (they sum to 1)."""
        return self.layer_logits.softmax(0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[B, samples]`` (or ``[B, 1, samples]``) -> ``[B, num_features]``."""
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"expected waveforms [B, samples], got shape {tuple(x.shape)}")
        if self.normalize_waveform:  # what the bundle's model does first (large models)
            x = nn.functional.layer_norm(x, x.shape[-1:])
        layers, _ = self.model.extract_features(x)
        stacked = torch.stack(layers, 0)  # [L, B, frames, D]
        mixed = (self.layer_weights().to(stacked.dtype).view(-1, 1, 1, 1) * stacked).sum(0)
        return mixed.mean(1)


def _register(name: str, doc: str, bundle: str, **defaults: Any) -> Any:
    weights = {bundle: WeightsSpec(f"torchaudio.pipelines:{bundle}", sample_rate=SAMPLE_RATE)}
    register = register_backbone(
        name,
        modality="audio",
        input="waveform",
        tags=("torchaudio", "ssl"),
        weights=None if "architecture" in defaults else weights,
    )
    return register(variant(SSLSpeechClassifier, doc, bundle=bundle, **defaults))


_MIX = "learned layer-weighted sum of its 12 transformer layers, mean over time, linear head"
wav2vec2_base = _register(
    "wav2vec2_base",
    f"wav2vec 2.0 Base (95M parameters) on the 16 kHz waveform: {_MIX}.",
    "WAV2VEC2_BASE",
)
hubert_base = _register(
    "hubert_base", f"HuBERT Base (95M parameters) on the 16 kHz waveform: {_MIX}.", "HUBERT_BASE"
)
wavlm_base = _register(
    "wavlm_base", f"WavLM Base (95M parameters) on the 16 kHz waveform: {_MIX}.", "WAVLM_BASE"
)
wavlm_base_plus = _register(
    "wavlm_base_plus",
    f"WavLM Base+ (95M parameters) on the 16 kHz waveform: {_MIX}.",
    "WAVLM_BASE_PLUS",
)
ssl_speech_test = _register(
    "ssl_speech_test",
    "Tiny wav2vec 2.0 (2 layers of 32, 26k parameters) for fast tests: learned "
    "layer-weighted sum, mean over time, linear head; no pretrained weights.",
    "WAV2VEC2_BASE",
    architecture={
        "extractor_conv_layer_config": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2,
        "encoder_embed_dim": 32,
        "encoder_pos_conv_kernel": 16,
        "encoder_pos_conv_groups": 4,
        "encoder_num_layers": 2,
        "encoder_num_heads": 2,
        "encoder_ff_interm_features": 64,
    },
    freeze_feature_extractor=False,
)
