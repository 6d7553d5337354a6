"""Cutting long recordings at their quietest moments into pieces an attention decoder can follow:
it loses its place in audio much longer than anything it saw in training."""
from dataclasses import replace
from typing import List, Optional

import numpy as np

from .segments import Segment


def window_energy(audio: np.ndarray, hop: int, width: int) -> np.ndarray:
    """The energy of each `width`-sample window starting every `hop` samples (at least one window)."""
    steps = max(1, (len(audio) - width) // hop + 1)
    power = np.concatenate([[0.0], np.square(audio, dtype=np.float64).cumsum()])
    starts = hop * np.arange(steps)
    return power[np.minimum(starts + width, len(audio))] - power[starts]


def quietest_cut(audio: np.ndarray, sample_rate: int, search_from: int) -> int:
    """The sample at the centre of the quietest 100 ms window (10 ms steps) at or after `search_from`."""
    hop, width = sample_rate // 100, sample_rate // 10
    tail = audio[search_from:]
    if len(tail) < width:
        return search_from + len(tail) // 2
    return search_from + int(np.argmin(window_energy(tail, hop, width))) * hop + width // 2


def split_long(segment: Segment, sample_rate: int, chunk_seconds: float,
               piece_seconds: Optional[float] = None) -> List[Segment]:
    """A segment longer than chunk_seconds in pieces of at most piece_seconds (default: chunk_seconds),
    each cut at the quietest moment of its last third, so a cut rarely falls inside a word. Reads one
    piece at a time."""
    start = segment.offset or 0.0
    end = start + segment.duration
    if segment.duration <= chunk_seconds:
        return [segment]
    piece_seconds = min(piece_seconds or chunk_seconds, chunk_seconds)
    pieces = []
    while end - start > piece_seconds:
        audio = replace(segment, offset=start, duration=piece_seconds).load(sample_rate)
        cut = quietest_cut(audio, sample_rate, len(audio) * 2 // 3) / sample_rate
        pieces.append(replace(segment, offset=start, duration=cut))
        start += cut
    return pieces + [replace(segment, offset=start, duration=end - start)]
