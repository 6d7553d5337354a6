"""Log-mel features, global mean/variance normalisation and SpecAugment, all as torch modules so
that they run batched on the model's device and travel with its checkpoint."""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import librosa
import numpy as np
import torch
from torch import Tensor, nn



@dataclass
class FeatureConfig:
    sample_rate: int = 16000  # the rate asr.audio resamples every input to
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 80
    fmin: float = 0.0
    fmax: Optional[float] = None  # None = sample_rate / 2
    log_floor: float = 1e-10

    def __post_init__(self):
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length and n_mels must be positive")
        if not 0 <= self.fmin < (self.fmax or self.sample_rate / 2) <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}")

    def num_frames(self, num_samples):
        """Frames of a centred STFT, as librosa counts them; works on ints and integer tensors."""
        return 1 + num_samples // self.hop_length


class LogMel(nn.Module):
    """Waveforms [B, S] -> log mel power spectra [B, T, n_mels], equal to librosa's melspectrogram
    (Slaney mel filters, periodic Hann window, centred frames with zero padding) followed by log.

    Samples past each item's length are zeroed before the STFT, which is exactly the zero padding a
    lone item gets, so an item's frames do not depend on what it is batched with; frames past its
    length are set to 0."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        mel = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                  fmin=config.fmin, fmax=config.fmax)
        # derived from the config, so not saved in checkpoints
        self.register_buffer("mel_basis", torch.from_numpy(mel.T.copy()), persistent=False)  # [F, n_mels]
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        cfg = self.config
        device, dtype = self.window.device, self.window.dtype
        lengths = lengths.to(device)
        # power spectra reach ~1e5 and their logs need full precision: keep AMP out
        with torch.autocast(device_type=device.type, enabled=False):
            samples = torch.arange(waveforms.shape[1], device=device)
            waveforms = waveforms.to(device, dtype).masked_fill(samples >= lengths[:, None], 0.0)
            spec = torch.stft(waveforms, cfg.n_fft, cfg.hop_length, cfg.win_length, self.window,
                              center=True, pad_mode="constant", return_complex=True)
            power = spec.real.square() + spec.imag.square()  # [B, F, T]
            feats = (power.transpose(1, 2) @ self.mel_basis).clamp_(min=cfg.log_floor).log_()
        frames = cfg.num_frames(lengths)
        padding = torch.arange(feats.shape[1], device=device) >= frames[:, None]
        return feats.masked_fill_(padding[:, :, None], 0.0), frames


def log_mel(audio: Union[np.ndarray, Tensor], config: FeatureConfig = FeatureConfig()) -> Tensor:
    """Log mel features [T, n_mels] of one mono signal, for scripts and notebooks."""
    audio = torch.as_tensor(audio, dtype=torch.float32)
    feats, _ = LogMel(config)(audio[None], torch.tensor([audio.shape[0]]))
    return feats[0]


class GlobalCMVN(nn.Module):
    """Per-mel-bin mean and standard deviation of the training set. They are buffers, so they are
    part of the model's state_dict; `count` (frames seen) is 0 until statistics are computed."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, feats: Tensor) -> Tensor:
        return (feats - self.mean) / self.std

    def copy_(self, other: "GlobalCMVN") -> "GlobalCMVN":
        """Takes another instance's statistics in place (keeping this one's device)."""
        self.load_state_dict(other.state_dict())
        return self

    def to_dict(self) -> dict:
        """Plain lists, for JSON files and weights_only checkpoints."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": int(self.count)}

    @classmethod
    def from_dict(cls, d: dict) -> "GlobalCMVN":
        cmvn = cls(len(d["mean"]))
        cmvn.mean.copy_(torch.tensor(d["mean"]))
        cmvn.std.copy_(torch.tensor(d["std"]))
        cmvn.count.fill_(int(d.get("count", 0)))
        return cmvn


def utterance_mean_normalize(feats: Tensor, lengths: Tensor) -> Tensor:
    """Subtracts each utterance's own mean per mel bin over its frames (cepstral mean normalisation):
    a fixed microphone or channel colouring is a constant offset in log-mel, so this removes it, and
    with it much of what sets one recording setup apart from another. Padding stays 0."""
    valid = (torch.arange(feats.shape[1], device=feats.device)[None] < lengths[:, None].to(feats.device))[..., None]
    mean = (feats * valid).sum(dim=1, keepdim=True) / lengths.to(feats.device).clamp(min=1)[:, None, None]
    return (feats - mean).masked_fill(~valid, 0.0)


class FeatureStatistics:
    """Streaming float64 sums of features and their squares, so the statistics of a whole
    training set never need all of its features at once."""

    def __init__(self, n_mels: int):
        self.total = torch.zeros(n_mels, dtype=torch.float64)
        self.total_sq = torch.zeros(n_mels, dtype=torch.float64)
        self.count = 0

    def add(self, feats: Tensor) -> None:
        """feats [T, n_mels] of one utterance, without padding."""
        feats = feats.double().cpu()
        self.total += feats.sum(0)
        self.total_sq += feats.square().sum(0)
        self.count += feats.shape[0]

    def cmvn(self) -> GlobalCMVN:
        """The normaliser these statistics give: the identity, with count 0, when nothing was added."""
        cmvn = GlobalCMVN(len(self.total))
        if self.count:
            mean = self.total / self.count
            cmvn.mean.copy_(mean)
            # the floor keeps bins that never rise above log_floor (band-limited audio) finite
            cmvn.std.copy_((self.total_sq / self.count - mean.square()).clamp(min=1e-10).sqrt())
            cmvn.count.fill_(self.count)
        return cmvn


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 27  # widest frequency mask, in mel bins
    time_masks: int = 2
    time_width: int = 40  # widest time mask, in frames ...
    time_width_ratio: float = 0.05  # ... and at most this fraction of the utterance
    time_warp: int = 0  # largest shift of the warp point, in frames (0 = no warping)


class SpecAugment(nn.Module):
    """Time warping, frequency masks and time masks (Park et al., 2019) on [B, T, n_mels] features,
    drawn independently per utterance; frames past an utterance's length are left as they are.
    Masks set values to 0, the mean of globally normalised features. Identity in eval mode."""

    def __init__(self, config: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.config = config

    def forward(self, feats: Tensor, lengths: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        if not self.training:
            return feats
        cfg = self.config
        batch, frames, n_mels = feats.shape
        lengths = lengths.to(feats.device)
        if cfg.time_warp > 0:
            feats = self._time_warp(feats, lengths, uniform_draws(generator, feats.device, batch, 2))
        freq_width = torch.full((batch,), min(cfg.freq_width, n_mels), device=feats.device)
        freq_mask = _band_mask(uniform_draws(generator, feats.device, batch, cfg.freq_masks, 2), freq_width,
                               torch.full_like(freq_width, n_mels), n_mels)
        time_width = torch.clamp((lengths * cfg.time_width_ratio).long(), max=cfg.time_width)
        time_mask = _band_mask(uniform_draws(generator, feats.device, batch, cfg.time_masks, 2), time_width, lengths,
                               frames)
        valid = torch.arange(frames, device=feats.device) < lengths[:, None]
        masked = (freq_mask[:, None, :] | time_mask[:, :, None]) & valid[:, :, None]
        return feats.masked_fill(masked, 0.0)

    def _time_warp(self, feats: Tensor, lengths: Tensor, draws: Tensor) -> Tensor:
        """Moves a point c of each utterance to w = c ± W and stretches both sides linearly to fit
        (the interpolation of ESPnet and the SpecAugment paper, done with one gather for the batch)."""
        window = self.config.time_warp
        lengths = lengths[:, None]
        # c in [W + 1, L - W - 2] keeps w off both ends, which stay fixed
        warped = lengths >= 2 * window + 3  # shorter utterances are left alone
        centre = window + 1 + (draws[:, :1] * (lengths - 2 * window - 2).clamp(min=1)).long()
        target = centre + (draws[:, 1:] * (2 * window + 1)).long() - window
        t = torch.arange(feats.shape[1], device=feats.device, dtype=torch.float64)[None]
        last = (lengths - 1).double()
        source = torch.where(t < target, t * centre / target.clamp(min=1),
                             centre + (t - target) * (last - centre) / (last - target).clamp(min=1))
        source = torch.where(warped & (t < lengths), source, t)  # padding and short items stay put
        below = source.floor().long()
        above = torch.minimum(below + 1, torch.maximum(lengths - 1, below))
        frac = (source - below).to(feats.dtype)[:, :, None]
        shape = (-1, -1, feats.shape[2])
        return (feats.gather(1, below[:, :, None].expand(shape)) * (1 - frac)
                + feats.gather(1, above[:, :, None].expand(shape)) * frac)


def uniform_draws(generator: Optional[torch.Generator], device: torch.device, *shape: int) -> Tensor:
    """Draws in [0, 1) made where the generator lives, so a CPU generator also seeds GPU batches."""
    where = generator.device if generator is not None else device
    return torch.rand(*shape, generator=generator, device=where, dtype=torch.float64).to(device)


def _band_mask(draws: Tensor, max_width: Tensor, extent: Tensor, size: int) -> Tensor:
    """[B, size] mask that is the union of bands [start, start + width) with width uniform in
    [0, max_width] and the band inside [0, extent), one pair of draws in [0, 1) per band."""
    width = (draws[..., 0] * (max_width[:, None] + 1)).long()
    start = (draws[..., 1] * (extent[:, None] - width + 1).clamp(min=1)).long()
    position = torch.arange(size, device=draws.device)[None, None]
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])
    return inside.any(dim=1)
