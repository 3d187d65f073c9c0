"""Video probing and decoding with the ffmpeg shipped by imageio-ffmpeg.

Conventions (what every caller of this module can rely on):

- Frames come out upright, as a player shows them: ffmpeg applies the container's display matrix
  (``autorotate``, on by default) *before* our filters, so sizes, short-side scaling and crops all
  refer to the displayed orientation. :attr:`VideoInfo.width`/``height`` are display sizes too.
- Frame ``n`` is the ``n``-th frame stored in the file (``-fps_mode passthrough``). ffmpeg's default
  for a raw pipe is to duplicate/drop frames to a constant rate, which turns a variable-frame-rate
  clip of 20 frames into 30; we never let it. ``fps=`` opts into a constant output rate instead
  (ffmpeg's ``fps`` filter), and indices then count the resampled frames.
- Scaling and frame selection run inside ffmpeg (``select`` then ``scale``), so only the frames
  asked for are converted to RGB and piped; ffmpeg stops after the last wanted frame.
- Clips shorter than asked are padded by repetition: :func:`even_indices` repeats frames in order
  (``0 0 1 1 2 2``), and explicit indices past the end repeat the last frame.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from mmkit.errors import MediaError, UserInputError
from mmkit.io.files import file_problem, short_path

# fmt: off
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv",
    ".3gp", ".ts", ".mts",
})
# fmt: on

VideoSource = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about the first video stream of a file.

    ``width``/``height`` are the displayed size (after rotation); ``rotation`` is the clockwise
    angle (0, 90, 180, 270) a player turns the stored frames by, i.e. the legacy ``rotate`` tag.
    ``fps`` is the stream's average rate; ``num_frames`` counts stored frames (packets, found
    without decoding).
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    codec: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`VIDEO_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def even_indices(total: int, num: int) -> np.ndarray:
    """``num`` frame indices spread evenly over ``total`` frames (segment centres, TSN style).

    With ``total < num`` frames repeat in order (``even_indices(3, 6) == [0, 0, 1, 1, 2, 2]``).
    """
    if total <= 0:
        raise UserInputError(f"num_frames_in_clip ({total}) must be > 0")
    if num <= 0:
        raise UserInputError(f"num_frames ({num}) must be > 0")
    return ((np.arange(num) + 0.5) * total / num).astype(np.int64)


@contextlib.contextmanager
def _as_path(source: VideoSource) -> Iterator[tuple[str, str]]:
    """Yield ``(path, name for messages)``; bytes go to a temporary file removed afterwards."""
    if isinstance(source, bytes | bytearray | memoryview):
        fd, tmp = tempfile.mkstemp(suffix=".video", prefix="mmkit-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(source)
            yield tmp, "<bytes>"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return
    path = os.fspath(source)
    name = short_path(path)
    problem = file_problem(path)  # a FIFO would block ffmpeg forever
    if problem is not None:
        raise MediaError.cannot_decode(name, problem)
    if os.path.getsize(path) == 0:
        raise MediaError.cannot_decode(name, "empty file")
    # ffmpeg reads "name:rest" as protocol "name" (http:, concat:, ...): say it is a file
    yield f"file:{os.path.abspath(path)}", name


def _reason(stderr: str) -> str:
    """The most useful line of an ffmpeg error log, without ffmpeg's ``[ctx @ 0x..]`` prefix."""
    lines = [re.sub(r"^\[[^]]*\]\s*", "", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("... showing")]
    for ln in lines:
        if ln.startswith("Error opening input:"):
            return ln.split(":", 1)[1].strip()
    if any("matches no streams" in ln for ln in lines):
        return "no video stream"
    for ln in reversed(lines):
        if "rror" in ln or "nvalid" in ln:
            return ln
    return lines[-1] if lines else "ffmpeg failed"


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_SIZE = re.compile(r"[ ,]([1-9]\d*)x([1-9]\d*)[ ,\[]")  # not codec tags such as 0x31637661
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_ROTATION = re.compile(r"(?:display ?matrix): rotation of (-?[\d.]+) degrees", re.IGNORECASE)


def _parse_header(text: str) -> dict[str, Any]:
    """Codec, stored size, rates, duration and rotation of the first video stream."""
    text = text.split("Stream mapping:", 1)[0].split("Output #0", 1)[0]
    lines = text.splitlines()
    out: dict[str, Any] = {"duration": 0.0, "rotation": 0}
    if m := _DURATION.search(text):
        out["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for i, line in enumerate(lines):
        if not (m := _VIDEO_STREAM.search(line)):
            continue
        out["codec"] = m[1]
        if size := _SIZE.search(m[2] + " "):
            out["size"] = (int(size[1]), int(size[2]))
        for value, kilo, kind in _RATE.findall(m[2]):
            out.setdefault(kind, float(value) * (1000 if kilo else 1))
        for follow in lines[i + 1 :]:
            if "Stream #" in follow:
                break
            if rot := _ROTATION.search(follow):
                # ffmpeg prints the counter-clockwise angle; report the clockwise ``rotate`` tag.
                out["rotation"] = round(-float(rot[1])) % 360
                break
        return out
    return out


def probe(source: VideoSource) -> VideoInfo:
    """Duration, rate, frame count, display size and rotation of a video, without decoding.

    Runs one ffmpeg pass that copies the first video stream to the null muxer (demuxing only) and
    counts its packets. Raises :class:`MediaError` for missing, empty or undecodable files.
    """
    with _as_path(source) as (path, name):
        return _probe_path(path, name)


def _probe_path(path: str, name: str) -> VideoInfo:
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path,
        "-map", "0:v:0", "-c", "copy", "-f", "null", "-", "-progress", "pipe:1", "-nostats",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise MediaError.cannot_decode(name, _reason(proc.stderr))
    header = _parse_header(proc.stderr)
    frames = re.findall(r"^frame=(\d+)", proc.stdout, flags=re.MULTILINE)
    num_frames = int(frames[-1]) if frames else 0
    if "size" not in header or num_frames == 0:
        raise MediaError.cannot_decode(name, "no video frames")
    width, height = header["size"]
    if header["rotation"] in (90, 270):
        width, height = height, width
    duration = header["duration"]
    fps = header.get("fps") or header.get("tbr") or (num_frames / duration if duration else 0.0)
    if not duration and fps:
        duration = num_frames / fps
    return VideoInfo(
        duration=float(duration),
        fps=float(fps),
        num_frames=num_frames,
        width=width,
        height=height,
        rotation=header["rotation"],
        codec=header.get("codec", "unknown"),
    )


def _scale_filter(size: int | tuple[int, int]) -> str:
    """``scale`` filter: an int resizes the short side keeping aspect, ``(h, w)`` is exact."""
    if isinstance(size, numbers.Integral):
        if size <= 0:
            raise UserInputError(f"size ({size}) must be > 0")
        w = f"'if(lt(iw,ih),{size},-1)'"
        h = f"'if(lt(iw,ih),-1,{size})'"
    else:
        if len(size) != 2 or min(size) <= 0:
            raise UserInputError(f"size {tuple(size)} must be an int or (height, width) > 0")
        h, w = (str(int(v)) for v in size)
    return f"scale=w={w}:h={h}:flags=bilinear"


def _select_filter(wanted: np.ndarray) -> str:
    """``select`` filter keeping the sorted unique frame numbers ``wanted`` (runs -> between)."""
    breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
    terms = []
    for run in np.split(wanted, breaks):
        lo, hi = int(run[0]), int(run[-1])
        terms.append(f"eq(n,{lo})" if lo == hi else f"between(n,{lo},{hi})")
    return "select='" + "+".join(terms) + "'"


_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+255\s")


def _decode(path: str, name: str, filters: list[str], max_frames: int | None) -> np.ndarray:
    """Run ffmpeg once; frames come back as binary PPMs, whose header carries the output size."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", path,
        "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
    ]  # fmt: skip
    if filters:
        cmd += ["-vf", ",".join(filters)]
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    cmd += ["-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 and not proc.stdout:
        raise MediaError.cannot_decode(name, _reason(proc.stderr.decode(errors="replace")))
    header = _PPM_HEADER.match(proc.stdout)
    if header is None:
        raise MediaError.cannot_decode(name, "no video frames")
    width, height = int(header[1]), int(header[2])
    frame_bytes = header.end() + width * height * 3
    count = len(proc.stdout) // frame_bytes  # a frame cut short by a decode error is dropped
    raw = np.frombuffer(proc.stdout, dtype=np.uint8, count=count * frame_bytes)
    frames = raw.reshape(count, frame_bytes)[:, header.end() :]  # drop each frame's header
    return np.ascontiguousarray(frames).reshape(count, height, width, 3)


def read_video(
    source: VideoSource,
    *,
    size: int | tuple[int, int] | None = None,
    num_frames: int | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """Decode a video (path or encoded bytes) to uint8 frames ``[T, H, W, 3]``, upright.

    Args:
        source: a file path, or the encoded file as bytes (written to a temporary file).
        size: ``int`` resizes the short side to ``size`` keeping the aspect ratio; ``(h, w)``
            resizes exactly; ``None`` keeps the displayed size. Done by ffmpeg's ``scale``.
        num_frames: decode this many frames spread evenly over the clip (:func:`even_indices`);
            clips with fewer frames are padded by repeating frames in order.
        indices: decode exactly these frame numbers, in this order (repeats allowed); indices past
            the last frame repeat the last frame. Exclusive with ``num_frames``.
        fps: resample to this constant rate first (ffmpeg ``fps`` filter). ``None`` decodes the
            stored frames at their own timing, so a variable-frame-rate clip is neither padded
            nor thinned; indices count stored frames.

    Returns all frames when neither ``num_frames`` nor ``indices`` is given. Raises
    :class:`MediaError` ``"cannot decode <path>: <reason>"`` for unreadable or empty files.
    """
    if num_frames is not None and indices is not None:
        raise UserInputError("pass num_frames or indices, not both")
    if fps is not None and fps <= 0:
        raise UserInputError(f"fps ({fps}) must be > 0")
    with _as_path(source) as (path, name):
        order: np.ndarray | None = None
        if num_frames is not None:
            info = _probe_path(path, name)
            total = info.num_frames if fps is None else max(1, math.ceil(info.duration * fps))
            order = even_indices(total, num_frames)
        elif indices is not None:
            order = np.asarray(indices, dtype=np.int64).reshape(-1)
            if order.size == 0 or order.min() < 0:
                raise UserInputError("indices must be a non-empty list of frame numbers >= 0")
        try:
            return _decode_order(path, name, order, size, fps)
        except MediaError:
            if indices is None or order is None:
                raise
            # Maybe every index is past the end and selected nothing: repeat the last frame.
            last = _probe_path(path, name).num_frames - 1
            if fps is not None or order.min() <= last:
                raise
            return _decode_order(path, name, np.minimum(order, last), size, fps)


def _decode_order(
    path: str,
    name: str,
    order: np.ndarray | None,
    size: int | tuple[int, int] | None,
    fps: float | None,
) -> np.ndarray:
    """Decode the frames ``order`` (all when ``None``) with one ffmpeg run."""
    filters = [f"fps={fps}"] if fps is not None else []
    wanted = None if order is None else np.unique(order)
    if wanted is not None:
        filters.append(_select_filter(wanted))
    if size is not None:
        filters.append(_scale_filter(size))
    frames = _decode(path, name, filters, None if wanted is None else len(wanted))
    if order is None or wanted is None:
        return frames
    # Position of each requested index among the decoded ones; past the end -> the last frame.
    pos = np.minimum(np.searchsorted(wanted, order), len(frames) - 1)
    return np.ascontiguousarray(frames[pos])
