"""Reading audio files into mono float32 at the model's sample rate."""
import os
import re
from typing import Optional

import numpy as np
import soundfile as sf
import soxr

from .errors import ASRError

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph", ".mp3", ".opus")


class AudioError(ASRError, ValueError):
    """A file that cannot be used as speech input; the message names the file and the problem."""


def check_audio_path(path: str) -> None:
    """An AudioError unless `path` is a non-empty file (what a stat can tell, without reading it)."""
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")


# libsndfile reads a WAV that was cut short (an interrupted copy or download) without complaint,
# noting only "data : <declared> (should be <present>)" in its log. Streaming writers declare a
# placeholder near 2 or 4 GiB instead of the real size, which is not truncation.
_WAV_DATA_SIZE = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
_STREAMING_PLACEHOLDER = 0x7FFF0000


def audio_info(path: str) -> "sf._SoundFileInfo":
    """Header of an audio file (rate, channels, frames) without reading the samples."""
    check_audio_path(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from None
    except (TypeError, ValueError) as e:  # soundfile's own checks, e.g. a .raw name: headerless samples
        raise AudioError(f"{path}: not a readable audio file (a format without a header? {e})") from None
    sizes = _WAV_DATA_SIZE.search(info.extra_info)
    if sizes:
        declared, present = map(int, sizes.groups())
        if present < declared < _STREAMING_PLACEHOLDER:
            raise AudioError(f"{path}: truncated, holds {present} of its {declared} bytes of audio")
    return info


def audio_duration(path: str) -> float:
    info = audio_info(path)
    return info.frames / info.samplerate


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr 'HQ'); a no-op when the rates already agree."""
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str, sr: int = SAMPLE_RATE, offset: float = 0.0,
               duration: Optional[float] = None) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sr`, optionally a segment [offset, offset+duration) in seconds."""
    info = audio_info(path)
    start = int(round(offset * info.samplerate))
    if start < 0 or (info.frames > 0 and start >= info.frames):
        raise AudioError(f"{path}: offset {offset:.3f}s is outside the file ({info.frames / info.samplerate:.3f}s)")
    stop = None if duration is None else start + int(round(duration * info.samplerate))
    try:
        audio, file_sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if stop is not None and audio.shape[0] < stop - start - 1:  # one sample of rounding is no error
        raise AudioError(f"{path}: segment ends at {offset + duration:.3f}s, past the end of the file")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    resampled = resample(audio, file_sr, sr)
    if resampled.shape[0] == 0:  # e.g. one sample at 44.1 kHz is none at 16 kHz
        raise AudioError(f"{path}: too short: {audio.shape[0]} samples at {file_sr} Hz make none at {sr} Hz")
    return np.ascontiguousarray(resampled, dtype=np.float32)
