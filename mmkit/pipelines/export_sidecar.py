"""What an export's sidecar says comes before each graph: the input a graph takes, in words,
and the decoding and preprocessing that turn a file into it (``preprocessing``,
``image_preprocessing``), and the tokenizer that turns a caption into token ids. Each is written
from the checkpoint's trained config or store params so that another runtime can reproduce
mmkit's inputs exactly (:mod:`mmkit.pipelines.export` writes it).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mmkit.configs import AudioConfig, VideoConfig


# -- classifiers ---------------------------------------------------------------------------------
def audio_input(cfg: AudioConfig) -> str:
    return (
        f"float32 mono waveform in [-1, 1] at {cfg.sample_rate} Hz, {cfg.num_samples} samples "
        f"({cfg.duration:g} s, the training clip length); int16 PCM / 32768"
    )


def audio_preprocessing(cfg: AudioConfig) -> dict[str, Any]:
    n = cfg.num_samples
    return {
        "sample_rate": cfg.sample_rate,
        "num_samples": n,
        "window_hop": max(1, n // 2),
        "steps": [
            "decode to float32 in [-1, 1] (soundfile), average the channels to mono, resample to "
            "sample_rate when the file's rate differs (torchaudio.functional.resample, default "
            "settings), clip to [-1, 1]",
            "a file of at most num_samples samples is one view: zero-padded to num_samples, "
            "centred (left pad (num_samples - length) // 2)",
            "a longer file is cut into views of num_samples samples starting every window_hop "
            "samples, plus one view ending at the last sample when that grid does not reach it",
        ],
    }


def video_input(cfg: VideoConfig) -> str:
    s = cfg.short_side
    return (
        f"uint8 RGB frames [batch, {cfg.frames}, {s}, {s}, 3]: one clip of {cfg.frames} frames, "
        f"each {s}x{s} as decoded below"
    )


def video_preprocessing(cfg: VideoConfig) -> dict[str, Any]:
    if cfg.sampling == "uniform":
        views = (
            f"one view: frames floor((i + 0.5) * n / {cfg.frames}) for i < {cfg.frames}, n the "
            "number of decoded frames"
        )
    else:
        views = (
            f"{cfg.num_clips} views (clips) of {cfg.frames} frames {cfg.frame_interval} apart: "
            f"span = ({cfg.frames} - 1) * {cfg.frame_interval} + 1, clip j starts at "
            f"floor((j + 0.5) * (max(n - span, 0) + 1) / {cfg.num_clips}), n the number of "
            "decoded frames; indices past the last frame take the last frame"
        )
    return {
        "short_side": cfg.short_side,
        "store_frames": cfg.store_frames,
        "frames": cfg.frames,
        "sampling": cfg.sampling,
        "num_clips": cfg.num_clips if cfg.sampling != "uniform" else 1,
        "frame_interval": cfg.frame_interval,
        "steps": [
            "decode upright RGB frames with ffmpeg (rotation metadata applied); when the video "
            f"has more than {cfg.store_frames} frames keep frames floor((i + 0.5) * total / "
            f"{cfg.store_frames}) for i < {cfg.store_frames}",
            f"scale inside ffmpeg so the short side is {cfg.short_side} (aspect kept; "
            "scale=w='if(lt(iw,ih),S,-1)':h='if(lt(iw,ih),-1,S)':flags=bilinear), then crop the "
            "centred square (top (h - S) // 2, left (w - S) // 2)",
            views,
        ],
    }


# -- image-text models ---------------------------------------------------------------------------
def image_preprocessing(params: dict[str, Any]) -> dict[str, Any]:
    from mmkit.io.image import RESIZE_DEFAULTS

    resize = {key: params.get(key, default) for key, default in RESIZE_DEFAULTS.items()}
    return {
        "image_size": int(params["image_size"]),
        **resize,
        "steps": [
            "decode with Pillow, EXIF orientation applied, converted to RGB (transparent pixels "
            "on white)",
            "shortest: resize so the short side is image_size (long side int(image_size * long "
            "/ short)); squash: resize to image_size x image_size; longest: the long side to "
            "image_size, then pad to a square of fill_color; Pillow resampling by "
            "interpolation, then the centred image_size square (top round((h - S) / 2))",
        ],
    }


CLEANING = {
    "_clean_lower": "ftfy fix + HTML unescape, whitespace collapsed, lower-cased",
    "_clean_whitespace": "ftfy fix + HTML unescape, whitespace collapsed (case kept)",
    "_clean_canonicalize": "ftfy fix + HTML unescape, punctuation removed, lower-cased",
}


def tokenizer_info(tokenizer: nn.Module, params: dict[str, Any]) -> dict[str, Any]:
    """What turns a caption into the text graph's token ids."""
    from open_clip.tokenizer import SimpleTokenizer

    inner = tokenizer.tokenizer
    info: dict[str, Any] = {
        "name": "clip_tokenizer",
        "params": dict(params),
        "context_length": int(tokenizer.context_length),
        "implementation": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "vocab_size": int(tokenizer.vocab_size),
    }
    if isinstance(inner, SimpleTokenizer):
        clean = getattr(getattr(inner, "clean_fn", None), "__name__", "")
        info.update(
            encoding="the OpenAI CLIP byte-pair encoding (bpe_simple_vocab_16e6.txt.gz, shipped "
            "with open_clip)",
            text_cleaning=CLEANING.get(clean, clean),
            sot_token_id=int(inner.sot_token_id),
            eot_token_id=int(inner.eot_token_id),
            pad_token_id=0,
            truncation="ids beyond context_length are cut; the last kept id is the end token",
        )
    else:
        hub = getattr(getattr(inner, "tokenizer", None), "name_or_path", None)
        if hub:
            info["hf_tokenizer"] = str(hub)
    return info
