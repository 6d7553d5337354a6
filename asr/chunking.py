"""Cutting long recordings at their quietest moments into pieces an attention decoder can follow:
it loses its place in audio much longer than anything it saw in training."""
from dataclasses import replace
from typing import List

import numpy as np

from .segments import Segment


def quietest_cut(audio: np.ndarray, sample_rate: int, search_from: int) -> int:
    """The sample at the centre of the quietest 100 ms window (10 ms steps) at or after `search_from`."""
    hop, width = sample_rate // 100, sample_rate // 10
    tail = audio[search_from:]
    steps = max(1, (len(tail) - width) // hop + 1)
    if len(tail) < width:
        return search_from + len(tail) // 2
    power = np.square(tail, dtype=np.float64).cumsum()
    energy = power[width - 1 + hop * np.arange(steps)] - np.concatenate([[0.0], power[hop * np.arange(1, steps) - 1]])
    return search_from + int(np.argmin(energy)) * hop + width // 2


def split_long(segment: Segment, sample_rate: int, chunk_seconds: float) -> List[Segment]:
    """Pieces of at most chunk_seconds, each cut at the quietest moment of its last third, so a cut
    rarely falls inside a word. Reads one piece at a time."""
    start = segment.offset or 0.0
    end = start + segment.duration
    pieces = []
    while end - start > chunk_seconds:
        audio = replace(segment, offset=start, duration=chunk_seconds).load(sample_rate)
        cut = quietest_cut(audio, sample_rate, len(audio) * 2 // 3) / sample_rate
        pieces.append(replace(segment, offset=start, duration=cut))
        start += cut
    return pieces + [replace(segment, offset=start, duration=end - start)] if pieces else [segment]
