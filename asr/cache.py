"""Decoded training audio kept on disk, so that compressed corpora (Opus, MP3, FLAC) and resampled
ones are decoded once rather than every epoch (ESPnet's dump stage, lhotse's cache do the same).

Samples are stored exactly as decoded (float32 .npy), so training reads the same numbers with or
without the cache. An entry is keyed by the file's path, size and modification time, the segment's
offset and duration, and the sample rate: a changed file or rate is decoded afresh."""
import hashlib
import json
import os

import numpy as np

from .fileio import atomic_output
from .segments import Segment


class AudioCache:
    def __init__(self, folder: str, sample_rate: int):
        self.folder, self.sample_rate = folder, sample_rate

    def key(self, segment: Segment) -> str:
        stat = os.stat(segment.path)
        identity = [os.path.abspath(segment.path), stat.st_size, stat.st_mtime_ns, segment.offset,
                    segment.duration if segment.offset is not None else None, self.sample_rate]
        return hashlib.sha1(json.dumps(identity).encode()).hexdigest()

    def load(self, segment: Segment) -> np.ndarray:
        """The segment's samples at the cache's rate, decoded now only if no entry matches."""
        if segment.samples is not None:
            return segment.load(self.sample_rate)
        key = self.key(segment)
        path = os.path.join(self.folder, key[:2], key + ".npy")
        try:
            return np.load(path)
        except (FileNotFoundError, ValueError, OSError):  # absent, or damaged by a crash elsewhere
            pass
        samples = segment.load(self.sample_rate)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.save(f, samples)
        return samples
