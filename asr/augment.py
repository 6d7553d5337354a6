"""Waveform augmentation for training, applied per utterance in the data loader: speed
perturbation, reverberation, additive noise, a narrow-band channel and gain, and utterances joined into
longer ones. Every draw comes from the caller's numpy Generator, so a seeded loader augments
identically on every run (and on resume)."""
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import soxr

from .audio import AUDIO_EXTENSIONS, load_audio
from .errors import ASRError

_TINY = 1e-20  # floor for RMS divisions, so silence never becomes NaN
_CACHE_SIZE = 64  # noise / RIR files kept in memory per Augmenter (per loader worker)
# the floor of a quiet room, so that no pause between joined utterances is digital silence
_PAUSE_RMS = 1e-4


class AugmentError(ASRError, ValueError):
    """A bad augmentation setting or folder; the message names it."""


@dataclass
class AugmentConfig:
    """Everything is off by default, so a config without augmentation trains exactly as before."""
    speed_factors: List[float] = field(default_factory=list)  # one drawn uniformly per utterance, e.g. [0.9, 1.0, 1.1]; [] = off
    volume_db: List[float] = field(default_factory=list)  # [low, high] gain in dB, drawn uniformly; [] = off
    noise_prob: float = 0.0  # chance that an utterance gets additive noise
    noise_snr_db: List[float] = field(default_factory=lambda: [5.0, 20.0])  # [low, high] SNR in dB, uniform
    noise_dir: Optional[str] = None  # folder of noise recordings (MUSAN-style); None = coloured noise or babble
    babble_speakers: List[int] = field(default_factory=lambda: [3, 6])  # [low, high] other utterances summed into babble
    reverb_prob: float = 0.0  # chance that an utterance is convolved with a room impulse response
    rir_dir: Optional[str] = None  # folder of room impulse responses; None = simulated ones
    rt60: List[float] = field(default_factory=lambda: [0.2, 0.8])  # [low, high] seconds for simulated RIRs to fall 60 dB
    # chance that an utterance passes through a channel sampled at narrowband_rate (nothing above half
    # of it survives), so wide-band corpora also teach a model for 8 kHz recordings (telephone, FSDD)
    narrowband_prob: float = 0.0
    narrowband_rate: int = 8000
    # chance that a drawn utterance starts a longer example, joined with the next draws (with pauses)
    # up to a length drawn uniformly to concat_seconds: an attention decoder trained on short utterances
    # loses its place in longer recordings, so this teaches it every length up to concat_seconds
    concat_prob: float = 0.0
    concat_seconds: float = 30.0
    concat_pause: List[float] = field(default_factory=lambda: [0.0, 0.5])  # [low, high] seconds between joined utterances

    def __post_init__(self):
        if any(not f > 0 for f in self.speed_factors):
            raise AugmentError(f"speed_factors must all be positive, got {self.speed_factors}")
        for name in ("noise_prob", "reverb_prob", "narrowband_prob", "concat_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AugmentError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("volume_db", "noise_snr_db", "babble_speakers", "rt60", "concat_pause"):
            value = list(getattr(self, name))
            if (value or name != "volume_db") and (len(value) != 2 or not value[0] <= value[1]):
                raise AugmentError(f"{name} must be [low, high] with low <= high, got {value}")
        if self.babble_speakers[0] < 1 or any(int(k) != k for k in self.babble_speakers):
            raise AugmentError(f"babble_speakers must be whole numbers >= 1, got {self.babble_speakers}")
        if not self.rt60[0] > 0:
            raise AugmentError(f"rt60 must be positive, got {self.rt60}")
        if self.narrowband_rate <= 0:
            raise AugmentError(f"narrowband_rate must be a positive sample rate in Hz, got {self.narrowband_rate}")
        if self.concat_pause[0] < 0 or not self.concat_seconds > 0:
            raise AugmentError(f"concat_pause must be >= 0 and concat_seconds positive, got {self.concat_pause} "
                               f"and {self.concat_seconds}")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def speed_perturb(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Plays the utterance `factor` times faster, as sox's `speed` (Kaldi, ESPnet): it lasts
    duration/factor and every frequency is multiplied by factor. The samples are read as if taken
    at sample_rate*factor and band-limited resampled back to sample_rate."""
    samples = np.asarray(samples, dtype=np.float32)
    if factor == 1.0 or samples.size == 0:
        return samples
    return soxr.resample(samples, round(sample_rate * factor), sample_rate, quality="HQ").astype(np.float32)


def narrowband(samples: np.ndarray, sample_rate: int, channel_rate: int) -> np.ndarray:
    """The utterance as recorded through a channel sampled at channel_rate: band-limited resampled down
    and back up, so nothing above channel_rate / 2 remains; same length. A no-op when channel_rate is
    not below sample_rate."""
    samples = np.asarray(samples, dtype=np.float32)
    if channel_rate >= sample_rate or samples.size == 0:
        return samples
    down = soxr.resample(samples, sample_rate, channel_rate, quality="HQ")
    up = soxr.resample(down, channel_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.pad(up, (0, max(samples.size - up.size, 0)))[:samples.size]


def join_with_pauses(pieces: List[np.ndarray], pause_seconds: List[float], sample_rate: int,
                     rng: np.random.Generator) -> np.ndarray:
    """The pieces one after the other, each gap a pause of faint noise lasting a uniform draw from
    [low, high] seconds."""
    out = [np.asarray(pieces[0], dtype=np.float32)]
    for piece in pieces[1:]:
        pause = rng.standard_normal(int(rng.uniform(*pause_seconds) * sample_rate)) * _PAUSE_RMS
        out += [pause.astype(np.float32), np.asarray(piece, dtype=np.float32)]
    return np.concatenate(out)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) == snr_db (P = mean square).
    Silent speech or silent noise leaves the speech unchanged."""
    speech, noise = np.asarray(speech, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    if speech.shape != noise.shape:
        raise ValueError(f"speech and noise differ in shape: {speech.shape} vs {noise.shape}")
    p_speech, p_noise = _rms(speech) ** 2, _rms(noise) ** 2
    if p_speech == 0 or p_noise == 0:
        return speech.astype(np.float32)
    return (speech + noise * np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))).astype(np.float32)


def coloured_noise(num_samples: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum 1/f^beta (0 white, 1 pink, 2 brown), shaped in the
    frequency domain; DC is removed so brown noise does not drift."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    gain = np.zeros_like(freqs)
    gain[1:] = freqs[1:] ** (-beta / 2.0)
    noise = np.fft.irfft(spectrum * gain, num_samples)
    return noise / max(_rms(noise), _TINY)


def simulated_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response rt60 seconds long: a direct-path impulse at t=0, then Gaussian
    reflections whose energy falls 60 dB over rt60 (amplitude 10^(-3 t / rt60)). The direct path
    is as strong as the strongest reflection."""
    t = np.arange(max(int(rt60 * sample_rate), 1)) / sample_rate
    rir = rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60)
    rir[0] = 0.0
    rir /= max(np.abs(rir).max(), _TINY)
    rir[0] = 1.0
    return rir


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """samples convolved with rir (FFT), cut to the original length and scaled back to the dry
    RMS, so reverberation changes neither the duration nor the loudness."""
    samples = np.asarray(samples, dtype=np.float32)
    size = 1 << (samples.size + rir.size - 2).bit_length()  # power of two >= full convolution length
    wet = np.fft.irfft(np.fft.rfft(samples, size) * np.fft.rfft(rir, size), size)[:samples.size]
    return (wet * (_rms(samples) / max(_rms(wet), _TINY))).astype(np.float32)


def _excerpt(signal: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of num_samples, looping the signal when it is shorter."""
    if signal.size == 0:
        return np.zeros(num_samples)
    if signal.size >= num_samples:
        start = rng.integers(signal.size - num_samples + 1)
    else:
        start = rng.integers(signal.size)
    return signal[(start + np.arange(num_samples)) % signal.size]


def _list_audio(folder: str, name: str) -> List[str]:
    if not os.path.isdir(folder):
        raise AugmentError(f"{name} {folder!r} is not a folder")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(folder)
                   for f in names if f.lower().endswith(AUDIO_EXTENSIONS))
    if not files:
        raise AugmentError(f"{name} {folder!r} holds no audio files ({' '.join(AUDIO_EXTENSIONS)})")
    return files


class Augmenter:
    """Applies an AugmentConfig to one utterance: speed, reverb, noise, channel, volume, in the order
    of a recording chain (a faster talker, in a room, with noise around, through a narrow-band channel
    and a gain stage).

    other_utterance(rng) returns the float32 samples of a random training utterance at
    sample_rate; it makes babble noise possible (without it, generated noise is coloured only)."""

    def __init__(self, config: AugmentConfig, sample_rate: int,
                 other_utterance: Optional[Callable[[np.random.Generator], np.ndarray]] = None):
        self.config = config
        self.sample_rate = sample_rate
        self.other_utterance = other_utterance
        # listed once, so a bad folder fails before training starts; read on first use
        self.noise_files = _list_audio(config.noise_dir, "noise_dir") if config.noise_dir else []
        self.rir_files = _list_audio(config.rir_dir, "rir_dir") if config.rir_dir else []
        self._cache: Dict[str, np.ndarray] = {}

    @property
    def enabled(self) -> bool:
        """False when every step is off: the loader can then skip the Augmenter altogether."""
        cfg = self.config
        return bool(any(f != 1.0 for f in cfg.speed_factors) or cfg.volume_db
                    or cfg.noise_prob > 0 or cfg.reverb_prob > 0 or cfg.narrowband_prob > 0)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32)
        cfg = self.config
        if not self.enabled or x.size == 0:
            return x
        if cfg.speed_factors:
            x = speed_perturb(x, self.sample_rate, cfg.speed_factors[rng.integers(len(cfg.speed_factors))])
        if cfg.reverb_prob > 0 and rng.random() < cfg.reverb_prob:
            x = reverberate(x, self._rir(rng))
        if cfg.noise_prob > 0 and rng.random() < cfg.noise_prob:
            x = mix_at_snr(x, self._noise(x.size, rng), rng.uniform(*cfg.noise_snr_db))
        if cfg.narrowband_prob > 0 and rng.random() < cfg.narrowband_prob:
            x = narrowband(x, self.sample_rate, cfg.narrowband_rate)
        if cfg.volume_db:
            x = x * np.float32(10.0 ** (rng.uniform(*cfg.volume_db) / 20.0))
        return x.astype(np.float32, copy=False)

    def _rir(self, rng: np.random.Generator) -> np.ndarray:
        if not self.rir_files:
            return simulated_rir(rng.uniform(*self.config.rt60), self.sample_rate, rng)
        rir = self._load(self.rir_files[rng.integers(len(self.rir_files))])
        return rir[np.argmax(np.abs(rir)):]  # start at the direct path, so the speech is not delayed

    def _noise(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        if self.noise_files:
            return _excerpt(self._load(self.noise_files[rng.integers(len(self.noise_files))]), num_samples, rng)
        if self.other_utterance is not None and rng.random() < 0.5:
            return self._babble(num_samples, rng)
        return coloured_noise(num_samples, int(rng.integers(3)), rng)

    def _babble(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """The sum of several other utterances, each at unit RMS so that no talker dominates."""
        low, high = self.config.babble_speakers
        talkers = [np.asarray(self.other_utterance(rng), dtype=np.float64)
                   for _ in range(int(rng.integers(low, high + 1)))]
        return sum(_excerpt(t, num_samples, rng) / max(_rms(t), _TINY) for t in talkers)

    def _load(self, path: str) -> np.ndarray:
        if path not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))  # the oldest
            self._cache[path] = load_audio(path, self.sample_rate)
        return self._cache[path]
