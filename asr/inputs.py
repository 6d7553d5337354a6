"""What a user may hand to `asr transcribe` or `Recognizer.transcribe`, turned into segments:
audio files, folders (searched recursively by extension), manifests, and arrays of samples."""
import glob
import os
from typing import Callable, Iterable, Iterator, List, Optional, Union

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, AudioError, audio_duration
from .errors import ASRError
from .segments import Segment, checked_manifest, checked_segments

MANIFEST_EXTENSIONS = (".jsonl", ".json")
AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


def collect_segments(inputs: Iterable[AudioInput], sample_rate: int,
                     on_error: Optional[Callable[[str], None]] = None) -> List[Segment]:
    """One segment per file, manifest line or array (mono samples at `sample_rate`), in the order
    given (a folder's files sorted). A file that cannot be read (or a folder with no audio files)
    is passed to `on_error` and left out, or raises when there is no `on_error`. A segment's id is
    the name shown to the user: the path, the manifest's id, or "array<i>"."""
    return list(iter_segments(inputs, sample_rate, on_error))


def iter_segments(inputs: Iterable[AudioInput], sample_rate: int,
                  on_error: Optional[Callable[[str], None]] = None) -> Iterator[Segment]:
    """collect_segments, streamed: a manifest is read line by line as the segments are consumed."""
    def skip(error: ASRError) -> None:
        if on_error is None:
            raise error
        on_error(str(error))

    def file_segment(path: str) -> Iterator[Segment]:
        try:
            yield Segment(path, path, audio_duration(path))
        except AudioError as e:
            skip(e)

    for i, item in enumerate(inputs):
        if isinstance(item, (np.ndarray, torch.Tensor)):
            yield array_segment(f"array{i}", item, sample_rate)
            continue
        path = os.fspath(item)
        if os.path.isdir(path):
            try:
                files = audio_files(path)
            except ASRError as e:
                skip(e)
                continue
            for file in files:
                yield from file_segment(file)
        elif path.lower().endswith(MANIFEST_EXTENSIONS):
            yield from checked_segments(path, on_error)
        else:
            yield from file_segment(path)


def array_segment(name: str, samples: Union[np.ndarray, torch.Tensor], sample_rate: int) -> Segment:
    samples = np.asarray(samples.detach().cpu() if isinstance(samples, torch.Tensor) else samples, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ASRError(f"{name}: expected non-empty mono samples [S], got shape {samples.shape}")
    return Segment(name, "", samples.size / sample_rate, samples=samples)


def audio_files(folder: str) -> List[str]:
    files = sorted(p for p in glob.glob(os.path.join(glob.escape(folder), "**", "*"), recursive=True)
                   if p.lower().endswith(AUDIO_EXTENSIONS) and os.path.isfile(p))
    if not files:
        raise ASRError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
    return files


def manifest_segments(path: str, on_error: Optional[Callable[[str], None]] = None,
                      need_text: bool = False) -> List[Segment]:
    """A manifest's segments with their reference texts and measured durations, whatever the file
    is called; a line whose audio is missing or unreadable raises, or is passed to `on_error` and
    left out; with `need_text`, a line without a text raises (segments.checked_manifest)."""
    return checked_manifest(path, on_error, need_text)
