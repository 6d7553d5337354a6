"""A stretch of audio with what is known about it (`Segment`), manifests of them (one JSON object
per line), and the two things every consumer of segments does: group them by length so that
little of a batch is padding, and pad a group into one tensor.

Training, evaluation, transcription and data preparation all use these, so a segment means the
same thing everywhere: [offset, offset + duration) of a file, or of samples held in memory."""
import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from .audio import AudioError, audio_duration, check_audio_path, load_audio
from .errors import ASRError
from .fileio import atomic_output


class ManifestError(ASRError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass
class Segment:
    id: str
    path: str  # the audio file ("" for samples held in memory)
    duration: float = -1.0  # seconds; negative = unknown until `measured()` reads the header
    text: Optional[str] = None  # the reference transcript, where there is one
    speaker: Optional[str] = None
    lang: Optional[str] = None
    offset: Optional[float] = None  # None = the whole file, read to its end whatever the rounding
    info: Dict[str, object] = field(default_factory=dict)  # corpus-specific keys (age, gender, ...)
    samples: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # mono, at the model's rate

    def load(self, sample_rate: int) -> np.ndarray:
        """Mono float32 samples at `sample_rate`: the whole file, or [offset, offset + duration)."""
        start = self.offset or 0.0
        if self.samples is not None:
            first = int(round(start * sample_rate))
            last = None if self.offset is None else first + int(round(self.duration * sample_rate))
            return self.samples[first:last]
        if self.offset is None:
            return load_audio(self.path, sample_rate)
        return load_audio(self.path, sample_rate, start, self.duration if self.duration > 0 else None)

    def measured(self) -> "Segment":
        """This segment with its duration read from the audio header when the manifest lacked it."""
        if self.duration >= 0:
            return self
        return replace(self, duration=audio_duration(self.path) - (self.offset or 0.0))

    def to_json(self) -> str:
        entry = {"id": self.id, "audio": self.path, "duration": self.duration if self.duration >= 0 else None,
                 "text": self.text, "speaker": self.speaker, "lang": self.lang, "offset": self.offset, **self.info}
        return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False)


# Other toolkits' names for our keys (NeMo: audio_filepath/duration/text; WeNet: key/wav/txt).
_ALIASES = {"audio_filepath": "audio", "wav": "audio", "path": "audio", "key": "id", "utt": "id",
            "txt": "text", "spk": "speaker", "language": "lang"}
_KEYS = {"id", "audio", "duration", "text", "speaker", "lang", "offset"}


def parse_manifest_line(line: str, base_dir: str, where: str) -> Segment:
    return _parse_line(line, base_dir, where)[0]


def _parse_line(line: str, base_dir: str, where: str) -> Tuple[Segment, bool]:
    """The line's segment, and whether the line gave its id (rather than it being the audio's name)."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    entry = {_ALIASES.get(k, k): v for k, v in raw.items()}
    if "audio" not in entry:
        raise ManifestError(f"{where}: missing 'audio' (or 'audio_filepath'/'wav')")
    audio = str(entry["audio"])
    if not os.path.isabs(audio):
        audio = os.path.normpath(os.path.join(base_dir, audio))
    duration, offset = (_seconds(entry.get(key), key, where) for key in ("duration", "offset"))
    uid = entry.get("id") or os.path.splitext(os.path.basename(audio))[0]
    text = entry.get("text")  # None: the line has no transcript (transcription needs none; scoring does)
    segment = Segment(id=str(uid), path=audio, duration=-1.0 if duration is None else duration,
                      text=None if text is None else str(text), speaker=entry.get("speaker"), lang=entry.get("lang"),
                      offset=offset, info={k: v for k, v in entry.items() if k not in _KEYS})
    return segment, bool(entry.get("id"))


def _seconds(value, key: str, where: str) -> Optional[float]:
    """A manifest's duration or offset: a finite number of seconds, at least 0, or None if absent."""
    if value is None:
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(f"{where}: '{key}' must be a number of seconds >= 0, not "
                            f"{json.dumps(value, ensure_ascii=False)}")
    return seconds


def read_manifest(path: str) -> Iterator[Segment]:
    """Streams segments; relative audio paths are resolved against the manifest's folder."""
    return (segment for _, segment in numbered_segments(path))


def numbered_segments(path: str) -> Iterator[Tuple[str, Segment]]:
    """Streams ("PATH:LINE", segment) pairs, for messages that name the line. An id given twice is an
    error naming both lines (ids derived from audio file names, as for segments of one recording
    that a manifest lists without ids, may repeat)."""
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest file")
    base_dir = os.path.dirname(os.path.abspath(path))
    ids: Dict[str, int] = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ManifestError(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if line.strip():
                segment, named = _parse_line(line, base_dir, f"{path}:{number}")
                if named:
                    if segment.id in ids:
                        raise ManifestError(f"{path}:{number}: id {segment.id!r} is already used on line "
                                            f"{ids[segment.id]}")
                    ids[segment.id] = number
                yield f"{path}:{number}", segment


def load_manifest(path: str) -> List[Segment]:
    return list(read_manifest(path))


def checked_manifest(path: str, on_error: Optional[Callable[[str], None]] = None,
                     need_text: bool = False) -> List[Segment]:
    """A manifest's segments, each one's audio file there and not empty (a stat, not a read) and its
    duration measured from the header where the line lacks it. A line whose audio is missing or
    unreadable is an error naming the line, or with `on_error` is passed to it and left out. With
    `need_text` (training, scoring), a line without a 'text' is an error naming it."""
    return list(checked_segments(path, on_error, need_text))


def checked_segments(path: str, on_error: Optional[Callable[[str], None]] = None,
                     need_text: bool = False) -> Iterator[Segment]:
    """checked_manifest, streamed: nothing is kept but the ids seen (for the duplicate check)."""
    for where, segment in numbered_segments(path):
        if need_text and segment.text is None:
            raise ManifestError(f"{where}: no 'text' (the reference transcript; \"text\": \"\" if there is none)")
        try:
            check_audio_path(segment.path)
            yield segment.measured()
        except AudioError as e:
            if on_error is None:
                raise ManifestError(f"{where}: {e}") from None
            on_error(f"{where}: {e}")


def windows(items: Iterable, size: int) -> Iterator[List]:
    """Consecutive lists of `size` items (the last may be shorter): a long stream processed a window
    at a time, so memory is bounded by the window, not by the stream."""
    window: List = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def write_manifest(path: str, segments: Iterable[Segment]) -> int:
    count = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for segment in segments:
            f.write(segment.to_json() + "\n")
            count += 1
    return count


def length_buckets(durations: Sequence[float], max_seconds: float, max_size: int,
                   min_size: int = 1) -> List[List[int]]:
    """Indices grouped shortest first so that each group's padded length (size × its longest item)
    stays within max_seconds and its size within max_size. A group holds at least min_size items
    (a lone item longer than max_seconds still gets a group of its own when min_size is 1)."""
    groups, group = [], []
    for i in sorted(range(len(durations)), key=lambda i: durations[i]):
        # sorted ascending, so the newcomer is the group's longest item
        full = len(group) == max_size or (len(group) + 1) * durations[i] > max_seconds
        if len(group) >= min_size and full:
            groups.append(group)
            group = []
        group.append(i)
    if len(group) < min_size and groups:
        groups[-1].extend(group)
    elif group:
        groups.append(group)
    return groups


def pad_waveforms(waveforms: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch [B, S] of 1-D waveforms and their lengths [B]."""
    lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
    return pad_sequence(list(waveforms), batch_first=True), lengths
