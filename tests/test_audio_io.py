"""mmkit.io.audio: decoding every format variant, int16 storage, pad/crop, sliding windows,
streaming in blocks, refused paths and mpg123's stderr."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from mmkit.errors import MediaError
from mmkit.io.audio import (
    AUDIO_EXTENSIONS,
    from_int16,
    info,
    iter_windows,
    load_audio,
    pad_or_crop,
    sliding_windows,
    stream_audio,
    to_int16,
)

DECODABLE = (
    "wav_u8",
    "wav_16",
    "wav_24",
    "wav_8k",
    "wav_44k",
    "wav_48k",
    "stereo",
    "flac",
    "ogg",
    "mp3",
    "short",
    "long",
)


@pytest.mark.parametrize("name", DECODABLE)
@pytest.mark.parametrize("rate", [16000, 22050])
def test_load_audio_rate_length_mono(audio_variants, name, rate):
    variant = audio_variants[name]
    wave = load_audio(variant.path, rate)
    assert wave.dtype == torch.float32
    assert wave.dim() == 1
    expected = math.ceil(variant.frames * rate / variant.sample_rate)
    assert abs(wave.numel() - expected) <= 2, (wave.numel(), expected)
    assert wave.abs().max() <= 1.0
    assert wave.abs().max() > 0.05  # real speech, not silence
    assert torch.isfinite(wave).all()


@pytest.mark.parametrize("name", ["wav_16", "flac", "ogg", "mp3", "stereo"])
def test_bytes_and_file_objects_decode_like_paths(audio_variants, name):
    path = audio_variants[name].path
    from_path = load_audio(path, 16000)
    from_bytes = load_audio(path.read_bytes(), 16000)
    with path.open("rb") as f:
        from_file = load_audio(f, 16000)
    torch.testing.assert_close(from_bytes, from_path)
    torch.testing.assert_close(from_file, from_path)


def test_lossless_formats_agree(audio_variants):
    reference = load_audio(audio_variants["wav_24"].path, 16000)
    for name, tol in (("wav_16", 1e-4), ("flac", 1e-4), ("wav_u8", 1e-2)):
        torch.testing.assert_close(
            load_audio(audio_variants[name].path, 16000), reference, atol=tol, rtol=0
        )


def test_stereo_is_mixed_down_by_averaging(audio_variants):
    path = audio_variants["stereo"].path
    both = load_audio(path, 16000, mono=False)
    assert both.shape[0] == 2
    torch.testing.assert_close(both[1], 0.5 * both[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(load_audio(path, 16000), both.mean(0))


def test_mono_false_keeps_one_channel_dim(audio_variants):
    assert load_audio(audio_variants["wav_16"].path, 16000, mono=False).shape[0] == 1


def test_resampled_speech_keeps_its_content(audio_variants):
    native = load_audio(audio_variants["wav_16"].path, 16000)
    from_48k = load_audio(audio_variants["wav_48k"].path, 16000)
    n = min(native.numel(), from_48k.numel())
    # Same text and voice rendered at another rate: energy within a few dB.
    ratio = from_48k[:n].pow(2).mean() / native[:n].pow(2).mean()
    assert 0.5 < ratio < 2.0


def test_info_reads_the_header(audio_variants):
    meta = info(audio_variants["wav_44k"].path)
    assert (meta.sample_rate, meta.channels) == (44100, 1)
    assert meta.frames == audio_variants["wav_44k"].frames
    assert meta.duration == pytest.approx(meta.frames / 44100)
    assert info(audio_variants["stereo"].path).channels == 2
    assert info(audio_variants["mp3"].path).format == "MP3"


@pytest.mark.parametrize("name", ["corrupt", "empty"])
def test_unreadable_files_raise_media_error(audio_variants, name):
    path = audio_variants[name].path
    with pytest.raises(MediaError, match=rf"^cannot decode {re.escape(str(path))}: \S"):
        load_audio(path, 16000)


def test_missing_file_raises_media_error(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(
        MediaError, match=rf"^cannot decode {re.escape(str(missing))}: no such file$"
    ):
        load_audio(missing, 16000)
    with pytest.raises(MediaError, match=r"no such file$"):
        info(missing)
    with pytest.raises(MediaError, match=r"is a directory$"):
        load_audio(tmp_path, 16000)


def test_corrupt_bytes_raise_media_error(audio_variants):
    data = audio_variants["corrupt"].path.read_bytes()
    with pytest.raises(MediaError, match=r"^cannot decode <4096 bytes>: "):
        load_audio(data, 16000)
    with pytest.raises(MediaError):
        load_audio(io.BytesIO(data), 16000)


def test_audio_extensions():
    assert {".wav", ".flac", ".ogg", ".mp3"} <= AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)


def test_int16_round_trip_matches_pcm16_files(audio_variants):
    wave = load_audio(audio_variants["wav_16"].path, 16000)
    pcm = to_int16(wave)
    assert pcm.dtype == torch.int16
    torch.testing.assert_close(from_int16(pcm), wave, atol=0, rtol=0)  # exact for PCM_16 input
    raw, _ = sf.read(audio_variants["wav_16"].path, dtype="int16")
    assert torch.equal(pcm, torch.from_numpy(raw))


def test_int16_clips_and_rounds():
    pcm = to_int16(torch.tensor([-2.0, -1.0, 0.0, 0.25, 1.0, 2.0]))
    assert pcm.tolist() == [-32768, -32768, 0, 8192, 32767, 32767]
    wave = torch.linspace(-1, 0.999, 1001)
    assert (from_int16(to_int16(wave)) - wave).abs().max() <= 0.5 / 32768


def test_pad_or_crop_modes():
    wave = torch.arange(1, 11, dtype=torch.float32)
    assert pad_or_crop(wave, 10) is wave
    assert pad_or_crop(wave, 4, mode="start").tolist() == [1, 2, 3, 4]
    assert pad_or_crop(wave, 4, mode="center").tolist() == [4, 5, 6, 7]
    assert pad_or_crop(wave, 14, mode="start").tolist() == [*range(1, 11), 0, 0, 0, 0]
    assert pad_or_crop(wave, 14, mode="center").tolist() == [0, 0, *range(1, 11), 0, 0]
    stereo = torch.stack([wave, -wave])
    assert pad_or_crop(stereo, 4, mode="center").tolist() == [[4, 5, 6, 7], [-4, -5, -6, -7]]


def test_pad_or_crop_random_is_seeded_and_varies():
    wave = torch.arange(1, 11, dtype=torch.float32)
    seeds = [torch.Generator().manual_seed(s) for s in range(20)]
    crops = {tuple(pad_or_crop(wave, 4, mode="random", generator=g).tolist()) for g in seeds}
    assert len(crops) > 2
    assert all(list(c) == list(range(int(c[0]), int(c[0]) + 4)) for c in crops)
    seeds = [torch.Generator().manual_seed(s) for s in range(20)]
    pads = [pad_or_crop(wave, 16, mode="random", generator=g) for g in seeds]
    assert len({int(p.nonzero()[0]) for p in pads}) > 2  # pad position moves
    assert all(p.sum() == wave.sum() and p.numel() == 16 for p in pads)
    a = pad_or_crop(wave, 4, mode="random", generator=torch.Generator().manual_seed(7))
    b = pad_or_crop(wave, 4, mode="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs,message",
    [({"length": 0}, r"length \(0\) must be > 0"), ({"length": 4, "mode": "edge"}, "mode must be")],
)
def test_pad_or_crop_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pad_or_crop(torch.zeros(8), **kwargs)


def test_sliding_windows_cover_the_clip():
    wave = torch.arange(100, dtype=torch.float32)
    windows = sliding_windows(wave, 30, 20)
    assert [s for s, _ in windows] == [0, 20, 40, 60, 70]
    for start, window in windows:
        assert window.shape == (30,)
        assert window.tolist() == list(range(start, start + 30))
    covered = set().union(*(range(s, s + 30) for s, _ in windows))
    assert covered == set(range(100))


def test_sliding_windows_exact_grid_and_short_clip():
    assert [s for s, _ in sliding_windows(torch.zeros(90), 30, 30)] == [0, 30, 60]
    [(start, window)] = sliding_windows(torch.ones(10), 30, 15)
    assert start == 0 and window.shape == (30,) and window.sum() == 10


def test_sliding_windows_on_long_speech(audio_variants):
    wave = load_audio(audio_variants["long"].path, 16000)
    assert wave.numel() > 3 * 16000
    windows = sliding_windows(wave, 16000, 8000)
    assert len(windows) >= 6
    assert windows[-1][0] + 16000 == wave.numel()
    with pytest.raises(ValueError, match=r"hop \(0\) must be > 0"):
        sliding_windows(wave, 16000, 0)


# -- streaming: the same samples and windows, block by block ----------------------------------
@pytest.mark.parametrize(
    "name,rate",
    [("wav_44k", 16000), ("wav_48k", 16000), ("wav_8k", 16000), ("stereo", 22050),
     ("mp3", 16000), ("long", 16000), ("long", 11025)],
)  # fmt: skip
@pytest.mark.parametrize("block_seconds", [0.05, 0.37, 10.0])
def test_stream_audio_equals_load_audio(audio_variants, name, rate, block_seconds):
    """Blocks of any size, resampled apart, concatenate to the whole-file decode (same length;
    values equal up to the float rounding of the resampler's convolution)."""
    path = audio_variants[name].path
    whole = load_audio(path, rate)
    blocks = list(stream_audio(path, rate, block_seconds=block_seconds))
    assert len(blocks) >= min(3, math.ceil(audio_variants[name].frames / 16000 / block_seconds))
    streamed = torch.cat(blocks)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length,hop", [(16000, 8000), (3000, 7000), (500, 500), (10**6, 5)])
def test_iter_windows_equals_sliding_windows(audio_variants, length, hop):
    path = audio_variants["long"].path
    expected = sliding_windows(load_audio(path, 16000), length, hop)
    got = list(iter_windows(stream_audio(path, 16000, block_seconds=0.3), length, hop))
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_audio_infer_views_equal_the_whole_file_windows(audio_variants):
    """What ``audio infer`` scores (streamed, in batches) is what it scored before streaming:
    half-overlapping windows of the whole decoded file, the last aligned to its end."""
    from mmkit.pipelines.audio import MODALITY, AudioConfig

    cfg = AudioConfig(dataset="-")
    path = audio_variants["long"].path
    wave = load_audio(path, cfg.sample_rate)
    expected = sliding_windows(wave, cfg.num_samples, cfg.num_samples // 2)
    batches = list(MODALITY.view_batches(str(path), cfg, batch_size=2))
    assert [len(v) for v, _ in batches[:-1]] == [2] * (len(batches) - 1)
    views = torch.cat([v for v, _ in batches])
    infos = [i for _, batch in batches for i in batch]
    assert [i["start"] for i in infos] == [round(s / 16000, 3) for s, _ in expected]
    torch.testing.assert_close(views, torch.stack([w for _, w in expected]), atol=1e-6, rtol=0)
    short = audio_variants["short"].path  # one centred, zero-padded view without times
    [(view, [info])] = MODALITY.view_batches(str(short), cfg, batch_size=64)
    torch.testing.assert_close(
        view[0], pad_or_crop(load_audio(short, 16000), 16000), atol=0, rtol=0
    )
    assert info == {}


def test_stream_audio_errors_are_media_errors(audio_variants, tmp_path):
    with pytest.raises(MediaError, match=r": no audio frames$"):
        list(stream_audio(audio_variants["empty"].path, 16000))
    with pytest.raises(MediaError, match=r": no such file$"):
        list(stream_audio(tmp_path / "nope.wav", 16000))


# -- paths that are not regular files, and the real reasons ---------------------------------
def test_fifo_and_long_names_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it would block until a writer comes: it must never be opened
    for call in (lambda p: load_audio(p, 16000), info, lambda p: list(stream_audio(p, 16000))):
        with pytest.raises(MediaError, match=r"pipe\.wav: is a named pipe \(FIFO\), not a regular"):
            call(fifo)
    with pytest.raises(MediaError, match=r"\.\.\.x+\.wav: file name too long$"):
        load_audio(tmp_path / ("x" * 300 + ".wav"), 16000)


def test_mp3_errors_name_the_real_cause_and_mpg123_stays_quiet(audio_variants, tmp_path, capfd):
    good = audio_variants["mp3"].path.read_bytes()
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(bytes(4096))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(good[:1500] + b"\x00" * 3000 + good[4500:])
    with pytest.raises(MediaError, match=r"junk\.mp3: no MPEG audio frames found$"):
        load_audio(junk, 16000)  # libsndfile says "File does not exist or is not a regular file"
    with pytest.raises(MediaError, match=r"junk\.mp3: no MPEG audio frames found$"):
        info(junk)
    with pytest.raises(MediaError, match=r"broken\.mp3: corrupt MPEG audio data \(the decoder"):
        load_audio(broken, 16000)  # libsndfile says "Unspecified internal error"
    assert capfd.readouterr().err == ""  # mpg123 printed its Notes to fd 2: all dropped


def test_stderr_filter_passes_other_writes():
    """Inside :func:`mpg123_quiet`, mpg123's lines are dropped and every other write to stderr
    (C or Python, whole or partial lines) comes out unchanged and in order."""
    script = """if True:
        import os, sys
        from mmkit.io.stderr_filter import mpg123_quiet
        print("before", file=sys.stderr, flush=True)
        with mpg123_quiet(), mpg123_quiet():  # nested / shared by threads: one redirection
            os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 4092.\\n")
            os.write(2, b"[src/libmpg123/parse.c:wetwork():1349] error: Giving up resync\\n")
            os.write(2, b"kept: C line\\npartial")
            print(" python line", file=sys.stderr, flush=True)
            os.write(2, b"Warning: Xing stream size off by more than 1%\\n")
        print("after", file=sys.stderr, flush=True)
    """
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "before\nkept: C line\npartial python line\nafter\n"
