"""JPEG-compressed frames for prepared stores of ``uint8 [H, W, 3]`` items (video frames).

A store's ``frame_format`` (a decode parameter, so part of its fingerprint) is ``raw`` (frames
as they are, ``data.bin`` one array of frames) or ``jpeg``: every frame is one JPEG
(torchvision's libjpeg-turbo, ``jpeg_quality``), back to back in ``data.bin``, with each frame's
end offset in ``frames.bin`` (int64); see :mod:`mmkit.data.store`. Frames are encoded in
``prepare``'s decoding workers and decoded in the DataLoader workers, only those a clip samples.
Torch is imported on first use, so reading a manifest stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_FORMATS = ("raw", "jpeg")
JPEG_QUALITY = 90  # mean abs error ~1-2 grey levels on video frames (tests/test_frame_store.py)
ENDS = "frames.bin"  # a jpeg store's frame end offsets


def frame_params(frame_format: str) -> dict[str, Any]:
    """The decode parameters that say how frames are kept: none for ``raw`` (so raw stores
    keep the fingerprints they had before there was a choice), else the format and quality."""
    return {} if frame_format == "raw" else {"frame_format": "jpeg", "jpeg_quality": JPEG_QUALITY}


def frame_format(params: dict[str, Any]) -> str:
    return str(params.get("frame_format", "raw"))


@dataclass(frozen=True)
class EncodedFrames:
    """``len(sizes)`` frames as one byte string of back-to-back JPEGs."""

    data: bytes
    sizes: np.ndarray  # int64 [n], bytes of each frame
    shape: tuple[int, ...]  # the frames' (H, W, 3)

    def __len__(self) -> int:
        return len(self.sizes)


def encode_jpeg(frames: np.ndarray, quality: int = JPEG_QUALITY) -> EncodedFrames:
    """``uint8 [n, H, W, 3]`` frames as JPEGs."""
    import torch
    from torchvision.io import encode_jpeg as encode

    chw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    blobs = encode(list(chw), quality=quality) if len(chw) else []
    sizes = np.array([b.numel() for b in blobs], dtype=np.int64)
    data = b"".join(b.numpy().tobytes() for b in blobs)
    return EncodedFrames(data, sizes, tuple(frames.shape[1:]))


def decode_jpeg(
    data: np.ndarray,
    ends: np.ndarray,
    first: int,
    indices: np.ndarray,
    shape: tuple[int, ...],
) -> np.ndarray:
    """Frames ``first + indices`` (any shape) of a jpeg store as ``uint8 [*indices.shape,
    *shape]``; ``data`` is the store's bytes, ``ends`` its frame end offsets. Each distinct
    frame is decoded once."""
    import torch
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as decode

    indices = np.asarray(indices, dtype=np.int64)
    wanted, inverse = np.unique(indices, return_inverse=True)
    if not len(wanted):
        return np.zeros((*indices.shape, *shape), dtype=np.uint8)
    frames = wanted + first
    starts = np.where(frames > 0, ends[np.maximum(frames - 1, 0)], 0)
    blobs = [
        torch.from_numpy(np.array(data[a:b])) for a, b in zip(starts, ends[frames], strict=True)
    ]
    decoded = torch.stack(decode(blobs, mode=ImageReadMode.RGB)).permute(0, 2, 3, 1).numpy()
    return decoded[inverse.reshape(indices.shape)]
