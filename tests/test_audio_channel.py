"""The real-recording augmentations (mmkit/preprocess/audio_channel.py) on real speech: a room's
reverberation, a telephone channel, speed perturbation, and their places in ``wave_augment``."""

from __future__ import annotations

import math

import pytest
import torch

from mmkit.io.audio import load_audio, pad_or_crop
from mmkit.preprocess.audio_augment import WaveAugment
from mmkit.preprocess.audio_channel import PhoneChannel, RoomReverb, SpeedPerturb
from mmkit.registry import create_preprocessor

RATE = 16000
NEW_STAGES = ("room_reverb", "phone_channel", "speed_perturb")


@pytest.fixture(scope="module")
def words(speech_set) -> torch.Tensor:
    """Eight real spoken words, each followed by 0.4 s of digital silence, [8, 16000]."""
    items = speech_set.items[::15][:8]
    speech = torch.stack([pad_or_crop(load_audio(i.path, RATE), 9600) for i in items])
    return torch.nn.functional.pad(speech, (0, RATE - 9600))


def _band_energy(wave: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    spectrum = torch.fft.rfft(wave).abs().pow(2)
    freqs = torch.fft.rfftfreq(wave.shape[-1], 1.0 / RATE)
    return spectrum[..., (freqs >= lo) & (freqs < hi)].sum(-1)


@pytest.mark.parametrize("name", NEW_STAGES)
def test_stages_are_seeded_rebuilt_from_params_and_identity_in_eval(name, words) -> None:
    stage = create_preprocessor(name, p=1.0)
    again = create_preprocessor(name, **stage.params())
    assert again.params() == stage.params()
    torch.manual_seed(5)
    first = stage(words)
    torch.manual_seed(5)
    assert torch.equal(again(words), first)
    assert first.shape == words.shape and torch.isfinite(first).all()
    assert not torch.allclose(first, words, atol=1e-3)
    stage.eval()
    assert torch.equal(stage(words), words)
    assert torch.equal(create_preprocessor(name, p=0.0)(words), words)


def test_room_reverb_rings_into_the_silence_and_keeps_the_level(words) -> None:
    torch.manual_seed(0)
    wet = RoomReverb(p=1.0, rt60=(0.6, 0.6), drr_db=(0.0, 0.0))(words)
    silence = slice(9600 + 800, 9600 + 4000)  # 50-250 ms after the words end
    assert (words[:, silence] == 0).all()
    tail = wet[:, silence].pow(2).mean(-1) / wet.pow(2).mean(-1)
    assert (tail > 1e-5).all()  # the room is still ringing where the dry clip is silent
    torch.testing.assert_close(wet.pow(2).mean(-1), words.pow(2).mean(-1), rtol=1e-3, atol=0)
    # the word stays where it was: the direct path comes first
    lag = torch.argmax(torch.fft.irfft(torch.fft.rfft(wet) * torch.fft.rfft(words).conj()), -1)
    assert (lag == 0).all()


def test_room_reverb_responses_decay_by_rt60_and_hold_the_drr() -> None:
    torch.manual_seed(1)
    reverb = RoomReverb(rt60=(0.2, 0.2), drr_db=(6.0, 6.0), max_seconds=0.4)
    rir = reverb.impulse_responses(64, torch.device("cpu"))
    assert rir.shape == (64, round(0.4 * RATE)) and (rir[:, 0] == 1).all()
    tail = rir[:, 1:].pow(2)
    torch.testing.assert_close(tail.sum(-1), torch.full((64,), 10**-0.6), rtol=1e-4, atol=0)
    early, late = tail[:, :800].mean(), tail[:, 3200 - 800 : 3200].mean()  # at 0-50 / 150-200 ms
    # energy falls 60 dB per rt60: about 45 dB from the first to the last 50 ms of 0.2 s
    assert 10 * math.log10(early / late) == pytest.approx(45.0, abs=4.0)


def test_phone_channel_keeps_the_telephone_band_only(words) -> None:
    torch.manual_seed(0)
    phone = PhoneChannel(p=1.0, low_hz=(300.0, 300.0), high_hz=(3400.0, 3400.0), bits=(8, 8))
    out = phone(words)
    speech = _band_energy(words, 500, 3000)
    assert (_band_energy(out, 4200, 8000) < 1e-3 * speech).all()  # nothing above 8 kHz / 2
    assert (_band_energy(out, 0, 120) < 0.05 * _band_energy(words, 0, 120) + 1e-6).all()
    torch.testing.assert_close(_band_energy(out, 500, 3000), speech, rtol=0.15, atol=0)


def test_phone_channel_companding_quantises_to_its_bits() -> None:
    torch.manual_seed(0)
    ramp = torch.linspace(-0.9, 0.9, 4000).repeat(4, 1) * torch.hann_window(4000)
    phone = PhoneChannel(p=1.0, rate=RATE, high_hz=(7000.0, 7000.0), bits=(3, 3), low_hz=(1, 1))
    levels = phone(ramp).round(decimals=5).unique().numel()
    assert levels <= 2**3
    fine = PhoneChannel(p=1.0, rate=RATE, high_hz=(7000.0, 7000.0), bits=(8, 8), low_hz=(1, 1))
    assert fine(ramp).round(decimals=5).unique().numel() > 64


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_speed_perturb_moves_pitch_with_rate(factor) -> None:
    t = torch.arange(RATE) / RATE
    tone = torch.sin(2 * math.pi * 1000.0 * t).repeat(4, 1) * 0.5
    out = SpeedPerturb(p=1.0, factors=(factor, factor))(tone)
    peak = torch.fft.rfftfreq(RATE, 1.0 / RATE)[torch.fft.rfft(out).abs().argmax(-1)]
    assert torch.allclose(peak, torch.full((4,), 1000.0 * factor), atol=15.0)


def test_speed_perturb_keeps_a_word_centred_and_the_length(words) -> None:
    out = SpeedPerturb(p=1.0, factors=(0.8, 0.8))(words)  # slower: longer, cropped centred
    assert out.shape == words.shape
    assert out[:, :800].abs().max() > 0  # the stretched word now reaches the start


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, r"p \(1.5\) must be in \[0, 1\]"),
        ({"rt60": [0.0, 0.5]}, r"rt60 must be > 0 s, got \[0.0, 0.5\]"),
        ({"drr_db": [5.0, 1.0]}, r"drr_db must be a \(low, high\) pair"),
        ({"max_seconds": 3.0}, r"max_seconds \(3.0\) must be in \(0, 2\]"),
    ],
)
def test_room_reverb_refuses_bad_settings(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        RoomReverb(**kwargs)


def test_channel_stages_refuse_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"bits must lie in \[2, 16\], got \[1, 8\]"):
        PhoneChannel(bits=(1, 8))
    with pytest.raises(ValueError, match=r"low_hz and high_hz must lie in \(0, 4000\) Hz"):
        PhoneChannel(high_hz=(3000.0, 4500.0))
    with pytest.raises(ValueError, match=r"factors must lie in \[0.5, 2\], got \[0.3, 1.0\]"):
        SpeedPerturb(factors=(0.3, 1.0))
    with pytest.raises(ValueError, match=r"chunks \(0\) must be >= 1"):
        SpeedPerturb(chunks=0)


def test_wave_augment_chains_the_new_stages_in_order(words) -> None:
    aug = WaveAugment()
    names = tuple(name for name, _ in aug.named_children())
    assert names == ("shift", "speed", "reverb", "noise", "band", "phone", "trim", "gain")
    assert isinstance(aug.reverb, RoomReverb) and aug.reverb.sample_rate == RATE
    assert WaveAugment(sample_rate=22050).phone.params()["sample_rate"] == 22050
    only_reverb = WaveAugment(**{k: {"p": 0.0} for k in names if k != "reverb"},
                              reverb={"p": 1.0})  # fmt: skip
    torch.manual_seed(2)
    wet = only_reverb(words)
    assert (wet[:, 10400:13600].abs().amax(-1) > 0).all()  # ringing where there was silence
    rebuilt = create_preprocessor("wave_augment", **aug.params())
    assert rebuilt.params() == aug.params()
