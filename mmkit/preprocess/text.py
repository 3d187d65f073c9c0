"""Text tokenisation for image-text models: open_clip's BPE tokenizer behind a small module.

:class:`ClipTokenizer` (registered as ``clip_tokenizer``) maps a list of captions to a
``LongTensor [N, context_length]``: start token, BPE ids, end token, zero padding (too long
captions are cut and keep their end token, as open_clip cuts them; a caption of any length
tokenises in bounded time). With ``model_name`` empty it is open_clip's
``SimpleTokenizer`` (the BPE vocabulary ships inside the open_clip wheel, so it works offline);
with a name it is ``open_clip.get_tokenizer(model_name)`` (the tokenizer that architecture was
trained with; SigLIP and HF-text models need their vocabulary from the hub).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmkit.errors import UserInputError
from mmkit.registry import register_preprocessor

CLIP_VOCAB_SIZE = 49408
"""Vocabulary size of open_clip's ``SimpleTokenizer`` (49152 BPE merges + bytes + 2 specials)."""

DEFAULT_CONTEXT_LENGTH = 32
MAX_CHARS_PER_TOKEN = 64
"""Characters of a caption kept per token of context before tokenising (see ``_bounded``)."""


class ClipTokenizer(nn.Module):
    """Captions -> ``LongTensor [N, context_length]`` (on the CPU; move it with the batch).

    An ``nn.Module`` without parameters only so that it fits the preprocessor contract
    (``.to(device)``, ``.eval()`` are harmless no-ops).

    Args:
        context_length: tokens per caption, start and end tokens included.
        model_name: empty for the CLIP BPE tokenizer, else an open_clip architecture name whose
            tokenizer to use (``open_clip.get_tokenizer``).
    """

    def __init__(
        self, *, context_length: int = DEFAULT_CONTEXT_LENGTH, model_name: str = ""
    ) -> None:
        super().__init__()
        if int(context_length) < 3:
            raise UserInputError(f"context_length ({context_length}) must be >= 3")
        self.context_length = int(context_length)
        self.model_name = str(model_name)
        from open_clip import get_tokenizer  # lazy: open_clip imports slowly
        from open_clip.tokenizer import SimpleTokenizer

        if self.model_name:
            try:
                self.tokenizer = get_tokenizer(self.model_name, context_length=self.context_length)
            except Exception as exc:  # open_clip raises RuntimeError/OSError/ValueError here
                raise UserInputError(
                    f"clip_tokenizer: cannot load the tokenizer of {self.model_name!r}: {exc}"
                ) from exc
        else:
            self.tokenizer = SimpleTokenizer(context_length=self.context_length)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the text tower's embedding table must be at least this big)."""
        size = getattr(self.tokenizer, "vocab_size", None)
        if size is None:  # HFTokenizer / SigLipTokenizer wrap a transformers tokenizer
            size = len(self.tokenizer.tokenizer)
        return int(size)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments: ``ClipTokenizer(**t.params())`` rebuilds it."""
        return {"context_length": self.context_length, "model_name": self.model_name}

    def extra_repr(self) -> str:
        return f"context_length={self.context_length}, model_name={self.model_name!r}"

    def forward(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Tokenise one caption or a list of captions to ``LongTensor [N, context_length]``."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise UserInputError(f"clip_tokenizer expects strings, got {type(bad[0]).__name__}")
        if not texts:
            return torch.zeros(0, self.context_length, dtype=torch.long)
        texts = [self._bounded(t) for t in texts]
        tokens = self.tokenizer(texts, context_length=self.context_length)
        return tokens.to(torch.long)

    def _bounded(self, text: str) -> str:
        """``text`` cut to :data:`MAX_CHARS_PER_TOKEN` characters per token of context (its
        whitespace runs collapsed first, as the tokenizers' own cleaning does), before the
        tokenizer sees it. The tokenizer then truncates to ``context_length`` as open_clip does;
        the cut changes no token of a caption whose words are shorter than the limit, and keeps
        a pathological one (a 10,000-word text, one 100,000-letter word: BPE time grows with
        the square of a word's length) from taking minutes."""
        limit = MAX_CHARS_PER_TOKEN * self.context_length
        if len(text) <= limit:
            return text
        return " ".join(text.split())[:limit]

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Token ids back to text, special tokens and padding dropped (CLIP BPE only)."""
        from open_clip.tokenizer import SimpleTokenizer

        if not isinstance(self.tokenizer, SimpleTokenizer):
            raise UserInputError(f"decode needs the CLIP BPE tokenizer, not {self.model_name!r}")
        special = {*self.tokenizer.all_special_ids, 0}
        rows = tokens.tolist() if tokens.ndim == 2 else [tokens.tolist()]
        return [self.tokenizer.decode([t for t in row if t not in special]).strip() for row in rows]


@register_preprocessor("clip_tokenizer", modality="text")
def clip_tokenizer(
    *, context_length: int = DEFAULT_CONTEXT_LENGTH, model_name: str = ""
) -> ClipTokenizer:
    """open_clip BPE tokenizer: captions to LongTensor [N, context_length]."""
    return ClipTokenizer(context_length=context_length, model_name=model_name)
