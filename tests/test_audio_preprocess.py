"""Audio preprocessors: log-mel features, SpecAugment and the waveform augmentations."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_model, save_model

from mmkit.io.audio import load_audio, pad_or_crop
from mmkit.preprocess.audio import LogMel, SpecAugment
from mmkit.preprocess.audio_augment import (
    BandLimit,
    NoiseMix,
    RandomGain,
    RandomTrim,
    TimeShift,
    WaveAugment,
    colored_noise,
)
from mmkit.registry import create_preprocessor

AUDIO_PREPROCESSORS = (
    "log_mel",
    "spec_augment",
    "noise_mix",
    "random_gain",
    "time_shift",
    "band_limit",
    "random_trim",
    "room_reverb",
    "phone_channel",
    "speed_perturb",
    "wave_augment",
)
WAVE_AUGMENTS = (
    "noise_mix",
    "random_gain",
    "time_shift",
    "band_limit",
    "random_trim",
    "room_reverb",
    "phone_channel",
    "speed_perturb",
    "wave_augment",
)
WAVE_STAGES = ("shift", "speed", "reverb", "noise", "band", "phone", "trim", "gain")


@pytest.fixture(scope="module")
def speech_batch(speech_set) -> torch.Tensor:
    """Eight real 1 s spoken words, [8, 16000]."""
    items = speech_set.items[::15][:8]
    return torch.stack([pad_or_crop(load_audio(i.path, 16000), 16000) for i in items])


def _always(name: str) -> torch.nn.Module:
    """The augmentation with every random choice switched on (p = 1)."""
    if name == "wave_augment":
        return WaveAugment(**{k: {"p": 1.0} for k in WAVE_STAGES})
    return create_preprocessor(name, p=1.0)


@pytest.mark.parametrize("name", AUDIO_PREPROCESSORS)
def test_state_dict_round_trips_through_safetensors(name, tmp_path):
    module = create_preprocessor(name)
    save_model(module, str(tmp_path / "m.safetensors"))  # what checkpoints use
    rebuilt = create_preprocessor(name, **module.params())
    load_model(rebuilt, str(tmp_path / "m.safetensors"), strict=True)
    wave = torch.randn(2, 4000)
    if name == "spec_augment":
        wave = LogMel()(wave)
    torch.testing.assert_close(rebuilt.eval()(wave), module.eval()(wave))


def test_log_mel_shape_and_normalisation(speech_batch):
    log_mel = LogMel()
    spec = log_mel(speech_batch)
    assert spec.shape == (8, 1, 64, log_mel.num_frames(16000)) == (8, 1, 64, 101)
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()
    torch.testing.assert_close(spec.mean(dim=(-2, -1)), torch.zeros(8, 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(spec.std(dim=(-2, -1)), torch.ones(8, 1), atol=1e-3, rtol=0)


def test_log_mel_is_per_example(speech_batch):
    log_mel = LogMel(normalize=False)
    quiet = speech_batch * torch.logspace(0, -3, 8)[:, None]  # 0 to -60 dB
    batched = log_mel(quiet)
    alone = torch.cat([log_mel(w[None]) for w in quiet])
    torch.testing.assert_close(batched, alone, atol=1e-3, rtol=1e-4)
    floors = batched.amax(dim=(-2, -1)) - batched.amin(dim=(-2, -1))
    assert (floors <= 80.0 + 1e-3).all()  # top_db per example


def test_log_mel_params_change_the_output():
    wave = torch.randn(2, 8000)
    spec = LogMel(n_mels=40, hop_length=80, sample_rate=8000, f_max=3800.0)(wave)
    assert spec.shape == (2, 1, 40, 101)
    with pytest.raises(ValueError, match=r"expects a waveform batch \[B, T\], got shape \(8000,\)"):
        LogMel()(wave[0])
    with pytest.raises(ValueError, match=r"win_length \(600\) must be <= n_fft \(512\)"):
        LogMel(win_length=600)


def test_log_mel_runs_under_autocast(speech_batch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = LogMel()(speech_batch)
    assert spec.dtype == torch.float32
    torch.testing.assert_close(spec, LogMel()(speech_batch))


def test_spec_augment_masks_in_train_and_is_identity_in_eval(speech_batch):
    spec = LogMel()(speech_batch)
    aug = SpecAugment(freq_mask=10, time_mask=20, num_masks=2)
    torch.manual_seed(0)
    masked = aug(spec)
    zeroed = (masked == 0) & (spec != 0)
    assert zeroed.any()
    # iid masks: the examples are not all masked alike
    assert len({tuple(z.flatten().nonzero().flatten().tolist()) for z in zeroed}) > 1
    assert torch.equal(masked[~zeroed], spec[~zeroed])
    torch.manual_seed(0)
    assert torch.equal(aug(spec), masked)  # seeded
    assert not torch.equal(aug(spec), masked)
    assert aug.eval()(spec) is spec


def test_noise_mix_reaches_the_requested_snr(speech_batch):
    mix = NoiseMix(snr_db=(10.0, 10.0), p=1.0)
    for bank in (None, torch.randn(3, 5000)):
        mix.set_noise_bank(bank)
        torch.manual_seed(1)
        noisy = mix(speech_batch)
        noise = noisy - speech_batch
        snr = 10 * torch.log10(speech_batch.pow(2).mean(-1) / noise.pow(2).mean(-1))
        torch.testing.assert_close(snr, torch.full((8,), 10.0), atol=0.05, rtol=0)


def test_noise_mix_uses_the_bank(speech_batch):
    mix = NoiseMix(snr_db=(0.0, 0.0), p=1.0)
    tone = torch.sin(torch.arange(4000) * 2 * torch.pi * 1000 / 16000)
    mix.set_noise_bank(tone)
    added = mix(speech_batch) - speech_batch
    spectrum = torch.fft.rfft(added).abs().mean(0)
    peak_hz = int(spectrum.argmax()) * 16000 / speech_batch.shape[1]
    assert peak_hz == pytest.approx(1000, abs=2)
    assert "noise_bank" not in mix.state_dict()
    with pytest.raises(ValueError, match="finite"):
        mix.set_noise_bank(torch.tensor([[float("nan")]]))


def test_colored_noise_spectral_slopes():
    torch.manual_seed(0)
    noise = colored_noise(torch.tensor([0.0, 1.0, 2.0]).repeat_interleave(16), 16000)
    power = torch.fft.rfft(noise).abs().pow(2).reshape(3, 16, -1).mean(1)
    low, high = power[:, 50:500].mean(1), power[:, 5000:8000].mean(1)
    ratio_db = 10 * torch.log10(low / high)
    assert abs(ratio_db[0]) < 1.0  # white: flat
    assert 8 < ratio_db[1] < 16 < ratio_db[2]  # pink ~ -3 dB/octave, brown ~ -6 dB/octave
    torch.testing.assert_close(noise.pow(2).mean(-1), torch.ones(48), atol=1e-4, rtol=0)


def test_noise_mix_probability():
    mix = NoiseMix(p=0.5)
    wave = torch.randn(400, 800)
    torch.manual_seed(0)
    changed = (mix(wave) != wave).any(dim=-1).float().mean()
    assert 0.4 < changed < 0.6


def test_random_gain_scales_by_a_constant_in_range():
    wave = torch.randn(64, 1000) * 0.1
    torch.manual_seed(0)
    out = RandomGain(gain_db=(-6.0, 6.0))(wave)
    gain_db = 20 * torch.log10(out.abs().sum(-1) / wave.abs().sum(-1))
    assert ((gain_db > -6.001) & (gain_db < 6.001)).all()
    assert gain_db.std() > 1.0
    torch.testing.assert_close(out, wave * (out / wave).mean(-1, keepdim=True))


def test_time_shift_moves_with_zero_fill():
    wave = torch.arange(1, 1001, dtype=torch.float32).repeat(32, 1)
    torch.manual_seed(0)
    out = TimeShift(max_shift=0.1)(wave)
    shifts = set()
    for row in out:
        kept = row[row != 0]
        assert kept.numel() >= 900
        assert torch.equal(kept, torch.arange(kept[0], kept[0] + kept.numel()))  # order kept
        assert row[0] == 0 or row[-1] == 0 or kept.numel() == 1000
        shifts.add(int(kept[0]) - 1 if row[0] != 0 else -int((row == 0).sum()))
    assert len(shifts) > 10


def test_band_limit_filters(speech_batch):
    torch.manual_seed(0)
    out = BandLimit(p=1.0, lowpass_hz=(1000.0, 1000.0), highpass_hz=(3000.0, 3000.0), chunks=8)(
        speech_batch
    )
    spec_in = torch.fft.rfft(speech_batch).abs().pow(2)
    spec_out = torch.fft.rfft(out).abs().pow(2)
    low = slice(0, 500)  # 0-500 Hz bins at 1 Hz resolution
    high = slice(5000, 8000)
    kept_low = spec_out[:, low].sum(-1) / spec_in[:, low].sum(-1)
    kept_high = spec_out[:, high].sum(-1) / spec_in[:, high].sum(-1)
    lowpassed, highpassed = kept_high < 0.1, kept_low < 0.1
    assert lowpassed.any() and highpassed.any()
    assert (lowpassed ^ highpassed).all()  # every example got exactly one of the two filters
    with pytest.raises(ValueError, match=r"lowpass_hz must lie in \(0, 8000\) Hz"):
        BandLimit(lowpass_hz=(1000.0, 9000.0))


def test_band_limit_resample_cuts_at_half_the_rate(speech_batch):
    torch.manual_seed(0)
    band = BandLimit(p=1.0, resample_hz=(8000,), mix=(0.0, 0.0, 1.0), chunks=8)
    out = band(speech_batch)
    assert out.shape == speech_batch.shape
    power = torch.fft.rfft(out).abs().pow(2)  # 1 Hz bins
    above = power[:, 4100:].sum(-1) / power.sum(-1)
    before = torch.fft.rfft(speech_batch).abs().pow(2)
    assert (before[:, 4100:].sum(-1) / before.sum(-1)).max() > 0.01  # there was energy to cut
    assert above.max() < 0.005
    with pytest.raises(ValueError, match="mix must be 3 non-negative numbers"):
        BandLimit(mix=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"resample_hz must be rates in \(0, 16000\) Hz"):
        BandLimit(resample_hz=(22050,))


def _tone_burst(batch: int = 8) -> torch.Tensor:
    """0.25 s of a 500 Hz tone in the middle of 1 s of faint noise."""
    torch.manual_seed(5)
    wave = torch.randn(batch, 16000) * 1e-3
    t = torch.arange(4000) / 16000
    wave[:, 6000:10000] += 0.5 * torch.sin(2 * torch.pi * 500 * t)
    return wave


def test_random_trim_keeps_the_word_and_zeros_the_edges():
    wave = _tone_burst(64)
    torch.manual_seed(0)
    out = RandomTrim(p=1.0, min_seconds=0.4)(wave)
    assert torch.equal(out[:, 6000:10000], wave[:, 6000:10000])  # the loud part always stays
    kept = (out != 0).sum(-1)
    assert kept.min() >= 0.4 * 16000 - 160 and kept.max() <= 16000
    assert (kept < 16000 - 1600).float().mean() > 0.5  # most rows lost > 0.1 s of edges
    starts = [(row != 0).nonzero()[0].item() for row in out]
    assert len(set(starts)) > 10  # the window moves
    for row, original in zip(out, wave, strict=True):
        nz = (row != 0).nonzero()[:, 0]
        inside = slice(nz.min().item(), nz.max().item() + 1)
        assert torch.equal(row[inside], original[inside])  # one contiguous window, untouched
    silent = torch.zeros(4, 16000)
    assert torch.equal(RandomTrim(p=1.0)(silent), silent)


@pytest.mark.parametrize("name", WAVE_AUGMENTS)
def test_wave_augments_change_in_train_identity_in_eval_and_are_seeded(name, speech_batch):
    aug = _always(name)
    torch.manual_seed(123)
    first = aug(speech_batch)
    torch.manual_seed(123)
    second = aug(speech_batch)
    assert torch.equal(first, second)
    assert first.shape == speech_batch.shape and torch.isfinite(first).all()
    assert not torch.allclose(first, speech_batch, atol=1e-3)
    torch.manual_seed(124)
    assert not torch.equal(aug(speech_batch), first)
    aug.eval()
    assert torch.equal(aug(speech_batch), speech_batch)


def test_wave_augment_stages_and_noise_bank(speech_batch):
    aug = WaveAugment(
        noise={"p": 1.0, "snr_db": [0.0, 0.0]},
        **{k: {"p": 0.0} for k in ("shift", "speed", "reverb", "band", "phone", "gain")},
    )
    assert tuple(name for name, _ in aug.named_children()) == WAVE_STAGES
    assert aug.params()["noise"]["snr_db"] == [0.0, 0.0]
    aug.set_noise_bank(torch.ones(2, 100))
    added = aug(speech_batch) - speech_batch
    torch.testing.assert_close(added, added[:, :1].expand_as(added))  # constant noise from bank
    with pytest.raises(TypeError):
        WaveAugment(noise={"bogus": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_preprocessors_run_on_the_input_device(speech_batch):
    wave = speech_batch.cuda()
    aug = WaveAugment(**{k: {"p": 1.0} for k in ("shift", "noise", "band", "gain")}).cuda()
    aug.set_noise_bank(torch.randn(2, 4000))
    features = SpecAugment().cuda()(LogMel().cuda()(aug(wave)))
    assert features.device.type == "cuda" and torch.isfinite(features).all()
    aug.set_noise_bank(None)
    assert aug(wave).device.type == "cuda"


def test_wave_augment_overrides_lie_over_the_chain_defaults():
    aug = WaveAugment(band={"p": 0.0}, noise={"snr_db": [10.0, 20.0]})
    params = aug.params()
    assert params["band"]["p"] == 0.0  # the override
    assert list(params["band"]["mix"]) == list(WaveAugment.STAGE_DEFAULTS["band"]["mix"])  # kept
    assert params["noise"]["snr_db"] == [10.0, 20.0]
    assert params["noise"]["p"] == WaveAugment.STAGE_DEFAULTS["noise"]["p"]
    assert params["trim"]["p"] == WaveAugment.STAGE_DEFAULTS["trim"]["p"] > 0  # on by default
    # a mild room on a quarter of the examples (issue 18's "New defaults"); speed, phone off
    assert params["reverb"]["p"] == 0.25 and list(params["reverb"]["rt60"]) == [0.1, 0.5]
    assert params["speed"]["p"] == params["phone"]["p"] == 0.0
    assert WaveAugment(trim={"p": 0}).params()["trim"]["p"] == 0
