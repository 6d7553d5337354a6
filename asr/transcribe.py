"""From audio files, folders, manifests or arrays to text: what `asr transcribe`, `asr evaluate` and the
Python API (`asr.load_model(path).transcribe(...)`) share.

Inputs become `Source`s (a file, a segment of one, or samples); long recordings are cut at their
quietest moments into pieces the model can attend over; pieces are batched by length so padding
stays small, and only one batch of audio is in memory at a time."""
import glob
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from .audio import AUDIO_EXTENSIONS, AudioError, audio_duration, load_audio
from .checkpoint import load_model_file
from .data import read_manifest
from .decode import DecodingOptions, DecodingResult, attention_map, decode
from .errors import ASRError
from .text import SPACE, CharTokenizer

MANIFEST_EXTENSIONS = (".jsonl", ".json")
AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


@dataclass
class Source:
    """Something to transcribe: samples, or [offset, offset + duration) of a file. `name` is the path
    or id shown to the user."""
    name: str
    duration: float
    path: Optional[str] = None
    offset: float = 0.0
    samples: Optional[np.ndarray] = None
    text: Optional[str] = None  # the reference, for sources read from a manifest
    to_end: bool = True  # runs to the end of the file or array: read all of it, whatever the rounding

    def load(self, sample_rate: int) -> np.ndarray:
        if self.samples is not None:
            start = int(round(self.offset * sample_rate))
            stop = None if self.to_end else start + int(round(self.duration * sample_rate))
            return self.samples[start:stop]
        return load_audio(self.path, sample_rate, self.offset, None if self.to_end else self.duration)


@dataclass
class Transcript:
    name: str
    text: str
    score: float
    nbest: List[Tuple[str, float]]  # best first
    tokens: List[Tuple[str, float]]  # each token with the time (s) its cross-attention peaked
    duration: float  # seconds of audio

    def to_dict(self) -> dict:
        return dict(audio=self.name, text=self.text, score=self.score, duration=round(self.duration, 3),
                    nbest=[dict(text=t, score=s) for t, s in self.nbest],
                    tokens=[dict(token=t, time=round(s, 3)) for t, s in self.tokens])


def collect_sources(inputs: Iterable[AudioInput], sample_rate: int,
                    on_error: Optional[Callable[[str], None]] = None) -> List[Source]:
    """Files, folders (searched recursively for audio by extension), manifests (.jsonl) and arrays
    (mono samples at the model's rate). A file that cannot be read is passed to `on_error` (and left
    out), or raises when there is none."""
    sources = []

    def add_file(path: str) -> None:
        try:
            sources.append(Source(path, audio_duration(path), path))
        except AudioError as e:
            if on_error is None:
                raise
            on_error(str(e))

    for i, item in enumerate(inputs):
        if isinstance(item, (np.ndarray, torch.Tensor)):
            samples = np.asarray(item.detach().cpu() if isinstance(item, torch.Tensor) else item, dtype=np.float32)
            if samples.ndim != 1 or samples.size == 0:
                raise ASRError(f"array input {i}: expected non-empty mono samples [S], got shape {samples.shape}")
            sources.append(Source(f"array{i}", samples.size / sample_rate, samples=samples))
            continue
        path = os.fspath(item)
        if os.path.isdir(path):
            files = sorted(p for p in glob.glob(os.path.join(glob.escape(path), "**", "*"), recursive=True)
                           if p.lower().endswith(AUDIO_EXTENSIONS) and os.path.isfile(p))
            if not files:
                raise ASRError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            for file in files:
                add_file(file)
        elif path.lower().endswith(MANIFEST_EXTENSIONS):
            sources.extend(manifest_sources(path))
        else:
            add_file(path)
    return sources


def manifest_sources(path: str) -> List[Source]:
    """A manifest's utterances, each with its reference text, whatever the file is called."""
    sources = []
    for utt in read_manifest(path):
        duration = utt.duration if utt.duration > 0 else audio_duration(utt.audio) - (utt.offset or 0.0)
        sources.append(Source(utt.id, duration, utt.audio, utt.offset or 0.0, text=utt.text,
                              to_end=utt.offset is None))
    return sources


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


def split_long(source: Source, sample_rate: int, chunk_seconds: float) -> List[Source]:
    """Pieces of at most chunk_seconds, each cut at the quietest moment of its last third, so a cut
    rarely falls inside a word. Reads one piece at a time."""
    pieces, start, end = [], source.offset, source.offset + source.duration
    while end - start > chunk_seconds:
        audio = replace(source, offset=start, duration=chunk_seconds, to_end=False).load(sample_rate)
        cut = quietest_cut(audio, sample_rate, len(audio) * 2 // 3) / sample_rate
        pieces.append(replace(source, offset=start, duration=cut, to_end=False))
        start += cut
    return pieces + [replace(source, offset=start, duration=end - start)]


def length_batches(durations: Sequence[float], batch_seconds: float, max_batch_size: int) -> List[List[int]]:
    """Indices grouped longest first so that each batch's padded audio stays under batch_seconds."""
    order = sorted(range(len(durations)), key=lambda i: -durations[i])
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * durations[current[0]] > batch_seconds or len(current) == max_batch_size:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


@dataclass
class Timing:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0  # features, encoder and search: what the real-time factor counts
    load_seconds: float = 0.0  # reading and resampling files

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


@dataclass
class Recognizer:
    """A loaded model file, ready to transcribe."""
    model: torch.nn.Module
    tokenizer: CharTokenizer
    lang: str
    info: dict = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "Recognizer":
        loaded = load_model_file(path, device)
        return cls(loaded.model, loaded.tokenizer, loaded.lang, loaded.info)

    @property
    def default_chunk_seconds(self) -> float:
        """The longest utterance the model was trained on (30 s when unknown): an attention decoder
        loses its place in audio much longer than anything it saw, so longer recordings are cut."""
        return float(self.info.get("longest_train_utterance", 30.0))

    @property
    def sample_rate(self) -> int:
        return self.model.cfg.features.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transcribe(self, inputs: Union[AudioInput, Iterable[AudioInput]], options: DecodingOptions = DecodingOptions(),
                   batch_seconds: float = 120.0, max_batch_size: int = 32, chunk_seconds: Optional[float] = None,
                   progress: bool = False, on_error: Optional[Callable[[str], None]] = None) -> List[Transcript]:
        """Transcripts in the order of the inputs (a folder's files sorted, a manifest's lines in order).
        Recordings longer than chunk_seconds (default: default_chunk_seconds) are cut at pauses,
        decoded in pieces and joined."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
            inputs = [inputs]
        sources = collect_sources(inputs, self.sample_rate, on_error)
        return self.transcribe_sources(sources, options, batch_seconds, max_batch_size,
                                       chunk_seconds or self.default_chunk_seconds, progress)

    def transcribe_sources(self, sources: List[Source], options: DecodingOptions = DecodingOptions(),
                           batch_seconds: float = 120.0, max_batch_size: int = 32,
                           chunk_seconds: Optional[float] = None, progress: bool = False) -> List[Transcript]:
        """Sources decoded whole, or cut into pieces of at most chunk_seconds."""
        pieces = [(i, piece) for i, source in enumerate(sources)
                  for piece in (split_long(source, self.sample_rate, chunk_seconds) if chunk_seconds else [source])]
        results: List[Optional[DecodingResult]] = [None] * len(pieces)
        batches = length_batches([p.duration for _, p in pieces], batch_seconds, max_batch_size)
        with tqdm(total=len(pieces), disable=None if progress else True, unit="file", dynamic_ncols=True) as bar:
            for batch in batches:
                audio = self._load([pieces[i][1] for i in batch])
                for i, result in zip(batch, self.decode_arrays(audio, options)):
                    results[i] = result
                bar.update(len(batch))
        return self._join(sources, pieces, results)

    def _load(self, pieces: List[Source]) -> List[np.ndarray]:
        start = time.perf_counter()
        audio = [piece.load(self.sample_rate) for piece in pieces]
        self.timing.load_seconds += time.perf_counter() - start
        return audio

    def decode_arrays(self, audio: List[np.ndarray], options: DecodingOptions) -> List[DecodingResult]:
        """One batch of mono samples at the model's rate."""
        start = time.perf_counter()
        lengths = torch.tensor([len(a) for a in audio])
        waves = torch.zeros(len(audio), int(lengths.max()))
        for row, samples in zip(waves, audio):
            row[: len(samples)] = torch.from_numpy(samples)
        results = decode(self.model, waves.to(self.device), lengths.to(self.device), options)
        self.timing.compute_seconds += time.perf_counter() - start
        self.timing.audio_seconds += float(lengths.sum()) / self.sample_rate
        return results

    def text(self, tokens: List[int]) -> str:
        return self.tokenizer.decode(tokens).strip()

    def _join(self, sources: List[Source], pieces: List[Tuple[int, Source]],
              results: List[DecodingResult]) -> List[Transcript]:
        """One transcript per source; a recording decoded in pieces gets the pieces' best texts joined
        (with a space, except in Chinese) and no n-best."""
        per_source: List[List[Tuple[Source, DecodingResult]]] = [[] for _ in sources]
        for (i, piece), result in zip(pieces, results):
            per_source[i].append((piece, result))
        joiner = "" if self.lang.startswith("zh") else " "
        transcripts = []
        for source, parts in zip(sources, per_source):
            texts = [self.text(r.tokens) for _, r in parts]
            text = joiner.join(t for t in texts if t)
            seconds = self.model.seconds_per_frame
            tokens = [(self.tokenizer.tokens[t].replace(SPACE, " "), piece.offset - source.offset + f * seconds)
                      for piece, r in parts for t, f in zip(r.tokens, r.frames)]
            nbest = ([(self.text(t), s) for t, s in parts[0][1].nbest] if len(parts) == 1
                     else [(text, sum(r.score for _, r in parts))])
            transcripts.append(Transcript(source.name, text, nbest[0][1], nbest, tokens, source.duration))
        return transcripts

    def attention(self, samples: np.ndarray, tokens: List[int], options: DecodingOptions = DecodingOptions()) -> torch.Tensor:
        """Cross-attention [tokens + 1, frames] of the decoder fed `tokens`, under the options' window."""
        with torch.inference_mode():
            waves = torch.from_numpy(samples)[None].to(self.device)
            memory, memory_lengths = self.model.encode(waves, torch.tensor([len(samples)], device=self.device))
            return attention_map(self.model, memory, memory_lengths, tokens, options).cpu()
