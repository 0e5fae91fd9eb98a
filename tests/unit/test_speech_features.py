"""Speech features: the mel filterbank against a direct NumPy formula (HTK mel scale), log-mel frames and
normalisation, SpecAugment from a seeded generator, and reading audio files (bad ones included)."""

import math

import numpy as np
import pytest
import soundfile
import torch

from dnn.data.audio import FeatureConfig, log_mel, mel_filterbank, read_audio, resample, spec_augment
from dnn.errors import ConfigError, DataError


def htk_filterbank(n_fft: int, n_mels: int, sr: int, f_min: float, f_max: float) -> np.ndarray:
    """The HTK Book's triangular filters (Young et al., §7.2), written out per filter and per bin in plain NumPy:
    centres equally spaced on Mel(f) = 1127 ln(1 + f/700), each triangle from its left to its right neighbour."""

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (math.exp(m / 1127.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    centres = [hz(lo + j * (hi - lo) / (n_mels + 1)) for j in range(n_mels + 2)]
    out = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        left, centre, right = centres[m], centres[m + 1], centres[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left <= f <= centre:
                out[k, m] = (f - left) / (centre - left)
            elif centre < f <= right:
                out[k, m] = (right - f) / (right - centre)
    return out


@pytest.mark.parametrize("n_fft,n_mels,sr,f_min,f_max", [(512, 80, 16000, 0.0, 8000.0), (400, 40, 8000, 100.0, 3800.0)])
def test_mel_filterbank_matches_the_htk_formula(n_fft, n_mels, sr, f_min, f_max):
    ours = mel_filterbank(n_fft, n_mels, sr, f_min, f_max).double().numpy()
    np.testing.assert_allclose(ours, htk_filterbank(n_fft, n_mels, sr, f_min, f_max), atol=1e-5)
    assert (ours.max(axis=0) > 0).all(), "every band has at least one FFT bin"


def tone(freq: float, seconds: float = 0.5, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_log_mel_frames_every_10_ms_and_a_tone_peaks_in_its_band():
    config = FeatureConfig()
    wave = tone(1000.0)  # 8,000 samples
    raw = log_mel(wave, config, normalize=False)
    assert raw.shape == (1 + 8000 // 160, 80) == (config.num_frames(8000), 80)
    filters = mel_filterbank(512, 80, 16000)
    expected_band = int(filters[round(1000 * 512 / 16000)].argmax())  # the band that weighs the 1 kHz bin most
    assert int(raw[10:-10].mean(dim=0).argmax()) == expected_band


def test_log_mel_is_normalised_per_band_over_the_utterance():
    wave = tone(440.0) + 0.01 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    feats = log_mel(wave)
    torch.testing.assert_close(feats.mean(dim=0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(dim=0, unbiased=False), torch.ones(80), atol=1e-3, rtol=0)


def test_feature_config_rejects_a_window_longer_than_the_fft():
    with pytest.raises(ConfigError, match="window .* must fit in n_fft=256"):
        FeatureConfig(n_fft=256)


def test_spec_augment_is_a_function_of_the_generator_seed_and_masks_with_zeros():
    x = torch.randn(200, 80) + 5.0  # no zeros of its own
    original = x.clone()
    a = spec_augment(x, torch.Generator().manual_seed(7), freq_masks=2, freq_width=15, time_masks=2, time_width=25)
    b = spec_augment(x, torch.Generator().manual_seed(7), freq_masks=2, freq_width=15, time_masks=2, time_width=25)
    c = spec_augment(x, torch.Generator().manual_seed(8), freq_masks=2, freq_width=15, time_masks=2, time_width=25)
    assert torch.equal(a, b) and not torch.equal(a, c)
    masked = a == 0
    kept = ~masked
    assert torch.equal(a[kept], x[kept]) and x.min() > 0  # everything not masked is untouched
    full_bands = masked.all(dim=0).sum()  # a frequency mask zeroes whole bands
    full_frames = masked.all(dim=1).sum()  # a time mask zeroes whole frames
    assert full_bands <= 30 and full_frames <= 2 * min(25, 200 // 5)
    assert full_bands > 0 and masked.any(dim=1).all()  # (seed 7 draws a band mask) it covers every frame
    assert torch.equal(x, original)  # the input itself is not changed


def test_spec_augment_time_masks_stay_within_the_real_frames():
    x = torch.ones(100, 10)
    for seed in range(20):
        out = spec_augment(x, torch.Generator().manual_seed(seed), freq_masks=0, time_masks=3, time_width=50, length=40)
        assert (out[:, 0] == 0).sum() <= 3 * (40 // 5)
        assert (out[40:] == 1).all()


# ---------------------------------------------------------------------------------------------------- reading


def write(path, samples, sr, **kw):
    soundfile.write(str(path), samples, sr, **kw)
    return path


def test_read_audio_reads_wav_and_flac_and_averages_channels(tmp_path):
    mono = (0.25 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    wav = read_audio(write(tmp_path / "a.wav", mono, 16000, subtype="FLOAT"))
    torch.testing.assert_close(wav, torch.from_numpy(mono))
    flac = read_audio(write(tmp_path / "a.flac", mono, 16000))  # 16-bit: within one quantisation step
    assert torch.allclose(flac, torch.from_numpy(mono), atol=1 / 32768 + 1e-6)
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)
    torch.testing.assert_close(read_audio(write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")),
                               torch.from_numpy(mono / 2))  # fmt: skip


def test_read_audio_at_another_rate_needs_resample_and_then_converts_it(tmp_path):
    path = write(tmp_path / "a.wav", tone(300.0, 1.0, 22050).numpy(), 22050)
    with pytest.raises(DataError, match=r"a\.wav: sample rate 22050 Hz, expected 16000 Hz .*data\.resample=true"):
        read_audio(path, 16000)
    wave = read_audio(path, 16000, resample_to_rate=True)
    assert wave.shape == (16000,)
    # a 300 Hz tone stays a 300 Hz tone: its spectrum peaks at 300 Hz (1 Hz bins over one second)
    assert int(torch.fft.rfft(wave).abs().argmax()) == 300


def test_resample_22050_to_16000_keeps_the_length_ratio():
    out = resample(np.zeros(22050, dtype=np.float32), 22050, 16000)
    assert out.shape == (16000,)


def test_read_audio_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(DataError, match=r"^x\.tsv:3: bad\.wav: unreadable audio \(.*\); expected WAV, FLAC or OGG$"):
        read_audio(bad, where="x.tsv:3: bad.wav")
    empty = write(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(DataError, match=r"empty\.wav: empty audio \(0 samples\)"):
        read_audio(empty)
    with pytest.raises(DataError, match="missing.wav: no such audio file"):
        read_audio(tmp_path / "missing.wav")
