"""Audio in, features out: reading WAV/FLAC/OGG, resampling, log-mel filterbanks and SpecAugment.

    wave = read_audio("a.wav", sample_rate=16000)          # (N,) float32 in [-1, 1], mono
    features = log_mel(wave, FeatureConfig())              # (T, F): 80 log-mel bands, 100 frames a second

The features, computed with torch (``torch.stft`` and a mel matrix)::

    X_t(k)  = Σ_n w(n) x(t·hop + n − n_fft/2) e^{−2πi kn/n_fft}    Hann window of 25 ms (400 samples at 16 kHz),
                                                                   hop 10 ms (160), n_fft 512, zero-padded ends
    P_t(k)  = |X_t(k)|²                                            power spectrum, k = 0 … n_fft/2
    M_t(m)  = Σ_k H_m(k) P_t(k)                                    H: triangular filters on the HTK mel scale
    L_t(m)  = max(log(M_t(m) + 1e-10), max_{t,m} L − 8 ln 10)      at most 80 dB below the loudest (as Whisper):
                                                                   synthetic silence is exactly 0, and its
                                                                   log(1e-10) = −23 would swamp the statistics
    Z_t(m)  = (L_t(m) − μ_m) / (σ_m + 1e-5)                        per-utterance mean and std of each band

The mel scale is HTK's, ``mel(f) = 2595 log10(1 + f/700)``; filter m rises linearly from the centre frequency of
filter m−1 to its own and falls to that of filter m+1 (centres equally spaced in mel from ``f_min`` to ``f_max``),
peak 1, no area normalisation — ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``.

SpecAugment (Park et al. 2019), training only: ``freq_masks`` bands of up to ``freq_width`` mel channels and
``time_masks`` stretches of up to ``time_width`` frames (at most a fifth of the utterance each) are set to 0, the
mean of the normalised features. Every draw comes from the ``torch.Generator`` passed in, so a batch's masks are
a function of that generator's seed alone.

Shapes: N samples, T frames, F mel bands.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dnn.checks import positive_int
from dnn.errors import ConfigError, DataError

TOP_DB = 80.0  # the log-mel floor: this many dB below the utterance's loudest band

__all__ = ["FeatureConfig", "log_mel", "mel_filterbank", "read_audio", "resample", "spec_augment"]


@dataclass(frozen=True)
class FeatureConfig:
    """The log-mel front end: 80 bands, 25 ms windows every 10 ms at 16 kHz by default."""

    sample_rate: int = 16000
    n_mels: int = 80
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 0.0
    f_max: float | None = None  # None: the Nyquist frequency

    def __post_init__(self):
        for name in ("sample_rate", "n_mels", "n_fft"):
            positive_int(f"features: {name}", getattr(self, name))
        if self.win_length > self.n_fft:
            raise ConfigError(f"features: the window ({self.win_length} samples) must fit in n_fft={self.n_fft}")
        if self.hop_length < 1:
            raise ConfigError(f"features: hop_ms={self.hop_ms} is less than one sample")
        f_max = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= self.sample_rate / 2:
            raise ConfigError(
                f"features: need 0 ≤ f_min < f_max ≤ {self.sample_rate / 2:g} Hz, got {self.f_min}, {f_max}"
            )

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames of an utterance of ``num_samples`` samples (one every hop, both ends padded by n_fft/2)."""
        return 1 + num_samples // self.hop_length


# ------------------------------------------------------------------------------------------------ reading


def read_audio(path: str | os.PathLike, sample_rate: int = 16000, resample_to_rate: bool = False,
               where: str | None = None) -> Tensor:  # fmt: skip
    """The samples of an audio file (anything libsndfile reads: WAV, FLAC, OGG) as mono float32 ``(N,)``.

    Channels are averaged. A file at another rate is a DataError unless ``resample_to_rate``; an unreadable or
    empty file is a DataError. Messages start with ``where`` (e.g. ``train.tsv:3: a.wav``), else the path.
    """
    import soundfile

    where = where or str(path)
    if not Path(path).is_file():
        raise DataError(f"{where}: no such audio file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as err:
        reason = " ".join(str(err).split())[:160]
        raise DataError(f"{where}: unreadable audio ({reason}); expected WAV, FLAC or OGG") from None
    if data.shape[0] == 0:
        raise DataError(f"{where}: empty audio (0 samples)")
    wave = data.mean(axis=1)  # (N,)
    if rate != sample_rate:
        if not resample_to_rate:
            raise DataError(
                f"{where}: sample rate {rate} Hz, expected {sample_rate} Hz (data.sample_rate); "
                f"set data.resample=true to convert it"
            )
        wave = resample(wave, rate, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, a Kaiser-windowed FIR low-pass): ``(N,) → (N')``.

    22,050 → 16,000 Hz is up 320, down 441 (the rates divided by their gcd, 50).
    """
    from scipy.signal import resample_poly

    if orig_rate == new_rate:
        return wave
    g = math.gcd(int(orig_rate), int(new_rate))
    return resample_poly(wave, new_rate // g, orig_rate // g).astype(np.float32)


# ----------------------------------------------------------------------------------------------- features


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:  # fmt: skip
    """Triangular HTK-mel filters ``H (n_fft/2 + 1, F)``: ``M = P @ H`` maps a power spectrum to mel bands.

    f_k   = k · sample_rate / n_fft                         the frequency of FFT bin k
    c_j   = mel⁻¹(mel(f_min) + j · (mel(f_max) − mel(f_min)) / (F + 1)),   j = 0 … F + 1
    H_km  = max(0, min((f_k − c_m) / (c_{m+1} − c_m), (c_{m+2} − f_k) / (c_{m+2} − c_{m+1})))
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (K,)
    mels = torch.linspace(float(_hz_to_mel(torch.tensor(f_min))), float(_hz_to_mel(torch.tensor(f_max))), n_mels + 2)
    centres = _mel_to_hz(mels.double())  # (F + 2,)
    widths = centres.diff()  # (F + 1,)
    offsets = centres.unsqueeze(0) - freqs.unsqueeze(1)  # (K, F + 2): c_j − f_k
    rising = -offsets[:, :-2] / widths[:-1]  # (K, F): (f_k − c_m) / (c_{m+1} − c_m)
    falling = offsets[:, 2:] / widths[1:]  # (K, F): (c_{m+2} − f_k) / (c_{m+2} − c_{m+1})
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()  # (K, F)


def log_mel(wave: Tensor, config: FeatureConfig = FeatureConfig(), normalize: bool = True) -> Tensor:
    """``wave (N,)`` → log-mel features ``(T, F)``, normalised per band over the utterance (see the module)."""
    if wave.dim() != 1 or wave.numel() == 0:
        raise ConfigError(f"wave must be a non-empty 1-D tensor of samples, got shape {tuple(wave.shape)}")
    c = config
    window = torch.hann_window(c.win_length, dtype=wave.dtype)
    spec = torch.stft(
        wave, c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=window, center=True,
        pad_mode="constant", return_complex=True,
    )  # fmt: skip  # (K, T)
    power = spec.real.square() + spec.imag.square()  # (K, T)
    filters = mel_filterbank(c.n_fft, c.n_mels, c.sample_rate, c.f_min, c.f_max).to(wave.dtype)  # (K, F)
    logmel = torch.log(power.transpose(0, 1) @ filters + 1e-10)  # (T, F)
    logmel = torch.maximum(logmel, logmel.max() - TOP_DB * math.log(10) / 10)
    if not normalize:
        return logmel
    mean = logmel.mean(dim=0, keepdim=True)  # (1, F)
    std = logmel.std(dim=0, unbiased=False, keepdim=True)  # (1, F)
    return (logmel - mean) / (std + 1e-5)


def spec_augment(features: Tensor, generator: torch.Generator, freq_masks: int = 2, freq_width: int = 15,
                 time_masks: int = 2, time_width: int = 25, length: int | None = None) -> Tensor:  # fmt: skip
    """A copy of ``features (T, F)`` with random frequency and time masks set to 0 (the normalised mean).

    For each frequency mask: w ~ U{0 … freq_width}, f₀ ~ U{0 … F − w}, bands f₀ … f₀+w−1 ← 0; for each time mask:
    w ~ U{0 … min(time_width, T/5)}, t₀ ~ U{0 … T − w}, frames t₀ … t₀+w−1 ← 0. ``length`` (≤ T) limits the time
    masks to the real frames of a padded utterance.
    """
    out = features.clone()
    T, F = features.shape
    T = T if length is None else int(length)

    def draw(high: int) -> int:  # uniform on 0 … high
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    for _ in range(freq_masks):
        w = draw(min(freq_width, F))
        f0 = draw(F - w)
        out[:, f0 : f0 + w] = 0.0
    for _ in range(time_masks):
        w = draw(min(time_width, T // 5))
        t0 = draw(T - w)
        out[t0 : t0 + w, :] = 0.0
    return out
