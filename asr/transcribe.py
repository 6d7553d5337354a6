"""From audio to text: what `asr transcribe`, `asr evaluate` and the Python API
(`asr.load_model(path).transcribe(...)`) share.

Inputs become segments (asr/inputs.py); long recordings are cut at their quietest moments into
pieces the model can attend over (asr/chunking.py); pieces are batched by length so padding stays
small, and only one batch of audio is in memory at a time."""
import os
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from .audio import AudioError
from .checkpoint import load_checkpoint, load_model_file, numerals_of
from .chunking import split_long
from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .decode import DecodingOptions, DecodingResult, attention_map, decode_memory
from .errors import ASRError
from .inputs import AudioInput, iter_segments
from .lm import CharLM, check_vocabulary, lm_from_file
from .segments import Segment, length_buckets, pad_waveforms, windows
from .text import SPACE, CharTokenizer, word_separator
from .timestamps import Span, Speech, Word, find_speech, snap_words, token_spans, words_with_times


STREAM_WINDOW = 10_000  # segments read and decoded at a time by stream(): memory holds one window of them

Edges = Optional[Speech]  # a piece's loudness and where its speech starts and stops, for snapping
Decoded = Tuple[DecodingResult, List[Span], Edges]  # a piece's best hypothesis, its tokens' frames, its edges


@dataclass
class Transcript:
    name: str
    text: str
    score: float
    nbest: List[Tuple[str, float]]  # best first
    tokens: List[Tuple[str, float]]  # each token with the time (s) its cross-attention peaked
    words: List[Tuple[str, float, float]]  # each word with its start and end (s), by DecodingOptions.timestamps
    duration: float  # seconds of audio
    loop_guard_fired: int  # steps at which the loop guard diverted the decoder (DecodingOptions.loop_guard)

    def to_dict(self) -> dict:
        return dict(audio=self.name, text=self.text, score=self.score, duration=round(self.duration, 3),
                    nbest=[dict(text=t, score=s) for t, s in self.nbest],
                    tokens=[dict(token=t, time=round(s, 3)) for t, s in self.tokens],
                    words=[dict(word=w, start=round(s, 3), end=round(e, 3)) for w, s, e in self.words])


@dataclass
class Timing:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0  # features, encoder and search: what the real-time factor counts
    load_seconds: float = 0.0  # reading and resampling files

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def add(self, other: "Timing") -> None:
        self.audio_seconds += other.audio_seconds
        self.compute_seconds += other.compute_seconds
        self.load_seconds += other.load_seconds


class Transcripts(list):
    """The transcripts of one call, in input order, with the time it took."""

    def __init__(self, transcripts: Iterable[Transcript], timing: Timing):
        super().__init__(transcripts)
        self.timing = timing


@dataclass
class Recognizer:
    """A loaded model file, ready to transcribe. `info` is what training recorded in it: the
    longest training utterance and the decoding options the recipe measured (`info["decoding"]`).
    `lm`, a character language model on the same vocabulary, is fused into beam search."""
    model: torch.nn.Module
    tokenizer: CharTokenizer
    lang: str
    info: dict = field(default_factory=dict)
    lm: Optional[CharLM] = None

    @classmethod
    def load(cls, path: str, device: str = "cpu", lm_path: Optional[str] = None) -> "Recognizer":
        loaded = load_model_file(path, device)
        lm = None
        if lm_path:
            lm, lm_tokens, _ = lm_from_file(load_checkpoint(lm_path), lm_path)
            check_vocabulary(lm_tokens, loaded.tokenizer.tokens, lm_path)
            lm = lm.to(device)
        return cls(loaded.model, loaded.tokenizer, loaded.lang, loaded.info, lm)

    @property
    def numerals(self) -> str:
        """How training wrote Arabic numbers in Chinese transcripts (TrainConfig.numerals): references
        are normalised the same way when scored."""
        return numerals_of(self.info)

    @property
    def default_chunk_seconds(self) -> float:
        """The longest utterance the model was trained on (30 s when unknown): an attention decoder
        loses its place in audio much longer than anything it saw, so longer recordings are cut."""
        return float(self.info.get("longest_train_utterance", 30.0))

    def chunk_limit(self, options: DecodingOptions) -> Optional[float]:
        """How long a piece may be under `options` (None: every recording whole)."""
        if options.chunk_seconds is None:
            return self.default_chunk_seconds
        return options.chunk_seconds or None

    def pieces(self, segment: Segment, options: DecodingOptions) -> List[Segment]:
        """The segment whole, or, longer than the chunk limit, cut at pauses into pieces of at most
        options.piece_seconds (by default half the limit)."""
        limit = self.chunk_limit(options)
        if not limit:
            return [segment]
        return split_long(segment, self.sample_rate, limit, options.piece_seconds or limit / 2)

    def encoder_window(self, options: DecodingOptions) -> Optional[int]:
        """The encoder frames beyond which the encoder reads in windows (None: always whole)."""
        seconds = self.default_chunk_seconds if options.encoder_window_seconds is None else options.encoder_window_seconds
        return self.model.encoder_frames(seconds)

    def long_form(self, seconds: float) -> bool:
        """Longer than any training utterance: decoded with decoder restarts (decode_arrays)."""
        return seconds > self.default_chunk_seconds

    def options(self, **overrides) -> DecodingOptions:
        """The decoding options recommended in the model file (what its recipe measured), with
        `overrides` of DecodingOptions fields on top."""
        known = {f.name for f in fields(DecodingOptions)}
        chosen: Dict = {k: v for k, v in self.info.get("decoding", {}).items() if k in known}
        chosen.update(overrides)
        try:
            return DecodingOptions(**chosen)
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad decoding option: {e}") from None

    @property
    def sample_rate(self) -> int:
        return self.model.cfg.features.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transcribe(self, inputs: Union[AudioInput, Iterable[AudioInput]], options: Optional[DecodingOptions] = None,
                   batch_seconds: float = BATCH_SECONDS, max_batch_size: int = MAX_BATCH_SIZE,
                   progress: bool = False, on_error: Optional[Callable[[str], None]] = None) -> Transcripts:
        """Transcripts in the order of the inputs (a folder's files sorted, a manifest's lines in order).
        Options default to the model file's recommended ones."""
        timing = Timing()
        return Transcripts(self.stream(inputs, options, batch_seconds, max_batch_size, progress, on_error, timing),
                           timing)

    def stream(self, inputs: Union[AudioInput, Iterable[AudioInput]], options: Optional[DecodingOptions] = None,
               batch_seconds: float = BATCH_SECONDS, max_batch_size: int = MAX_BATCH_SIZE, progress: bool = False,
               on_error: Optional[Callable[[str], None]] = None, timing: Optional[Timing] = None,
               window: int = STREAM_WINDOW) -> Iterator[Transcript]:
        """transcribe's transcripts one at a time: inputs are read and decoded `window` segments at a
        time, so a million-line manifest needs the memory of one window. The time taken is added to
        `timing`."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
            inputs = [inputs]
        options = options or self.options()
        for segments in windows(iter_segments(inputs, self.sample_rate, on_error), window):
            done = self.transcribe_segments(segments, options, batch_seconds, max_batch_size, progress, on_error)
            if timing is not None:
                timing.add(done.timing)
            yield from done

    def transcribe_segments(self, segments: List[Segment], options: Optional[DecodingOptions] = None,
                            batch_seconds: float = BATCH_SECONDS, max_batch_size: int = MAX_BATCH_SIZE,
                            progress: bool = False, on_error: Optional[Callable[[str], None]] = None) -> Transcripts:
        """Segments decoded whole, or those longer than the options' chunk limit (chunk_limit) cut at
        pauses into pieces (`pieces`), decoded, and joined. A recording whose samples cannot be used (NaN or
        infinite values, found only when it is read) fails the call, or with `on_error` is reported
        there and left out."""
        options = options or self.options()
        failed = set()

        def unusable(i: int, error: AudioError) -> None:
            if on_error is None:
                raise error
            failed.add(i)
            on_error(str(error))

        pieces = []
        for i, segment in enumerate(segments):
            try:  # finding the pauses to cut a long recording at reads it
                pieces += [(i, piece) for piece in self.pieces(segment, options)]
            except AudioError as e:
                unusable(i, e)
        results: List[Optional[Decoded]] = [None] * len(pieces)
        timing = Timing()
        # long-form pieces (decode_arrays) are batched apart from the others, so that no result depends on
        # its batch; longest first: a batch that does not fit in memory fails at once, not at the end
        durations = [p.duration for _, p in pieces]
        kinds = [[i for i, d in enumerate(durations) if self.long_form(d) == long] for long in (False, True)]
        batches = [[kind[j] for j in bucket] for kind in kinds
                   for bucket in length_buckets([durations[i] for i in kind], batch_seconds, max_batch_size)][::-1]
        with tqdm(total=len(pieces), disable=None if progress else True, unit="file", dynamic_ncols=True) as bar:
            for batch in batches:
                start = time.perf_counter()
                audio, loaded = [], []
                for i in (i for i in batch if pieces[i][0] not in failed):
                    try:
                        audio.append(pieces[i][1].load(self.sample_rate))
                        loaded.append(i)
                    except AudioError as e:
                        unusable(pieces[i][0], e)
                timing.load_seconds += time.perf_counter() - start
                for i, result in zip(loaded, self.decode_arrays(audio, options, timing) if audio else []):
                    results[i] = result
                bar.update(len(batch))
        kept = {old: new for new, old in enumerate(k for k in range(len(segments)) if k not in failed)}
        pieces_kept = [(kept[i], piece) for i, piece in pieces if i in kept]
        results_kept = [r for (i, _), r in zip(pieces, results) if i in kept]
        return Transcripts(self.join_pieces([segments[k] for k in kept], pieces_kept, results_kept, options.snap_seconds),
                           timing)

    def decode_arrays(self, audio: List[np.ndarray], options: DecodingOptions,
                      timing: Optional[Timing] = None) -> List[Decoded]:
        """One batch of mono samples at the model's rate: each result with the encoder frames its tokens
        hold (asr/timestamps.py) and, when word times snap to speech, where speech starts and stops in
        it. The time it took is added to `timing`. A batch of recordings all longer than the longest
        training utterance is long-form: its decoder restarts past options.decoder_context; any other
        batch's decoder reads its whole transcript."""
        start = time.perf_counter()
        if not all(self.long_form(len(a) / self.sample_rate) for a in audio):
            options = replace(options, decoder_context=None)
        waves, lengths = pad_waveforms([torch.from_numpy(a) for a in audio])
        with torch.inference_mode():
            memory, memory_lengths = self.model.encode(waves.to(self.device), lengths.to(self.device),
                                                       window=self.encoder_window(options))
            results = list(decode_memory(self.model, memory, memory_lengths, options, self.lm))
            spans = list(token_spans(self.model, memory, memory_lengths, results, options.timestamps))
        for k, a in enumerate(audio):  # digital silence holds no speech: whatever the decoder guessed is dropped
            if not np.any(a):
                results[k], spans[k] = DecodingResult([], 0.0, [], [([], 0.0)], 0), []
        edges = [find_speech(a, self.sample_rate, options.snap_db) if options.snap_seconds else None for a in audio]
        if timing is not None:
            timing.compute_seconds += time.perf_counter() - start
            timing.audio_seconds += float(lengths.sum()) / self.sample_rate
        return list(zip(results, spans, edges))

    def text(self, tokens: List[int]) -> str:
        return self.tokenizer.decode(tokens).strip()

    def join_pieces(self, segments: List[Segment], pieces: List[Tuple[int, Segment]],
                    results: List[Decoded], snap_seconds: float = 0.0) -> List[Transcript]:
        """One transcript per segment; a recording decoded in pieces gets the pieces' best texts joined
        (with a space, except in Chinese) and no n-best."""
        per_segment: List[List[Tuple[Segment, DecodingResult, List[Span], Edges]]] = [[] for _ in segments]
        for (i, piece), decoded in zip(pieces, results):
            per_segment[i].append((piece, *decoded))
        joiner = word_separator(self.lang)
        seconds = self.model.seconds_per_frame
        transcripts = []
        for segment, parts in zip(segments, per_segment):
            text = joiner.join(t for t in (self.text(r.tokens) for _, r, _, _ in parts) if t)
            start = segment.offset or 0.0
            tokens = [(self.token_text(t), (piece.offset or 0.0) - start + f * seconds)
                      for piece, r, _, _ in parts for t, f in zip(r.tokens, r.frames)]
            words = [w for piece, r, spans, edges in parts
                     for w in self.words(piece, r.tokens, spans, start, edges, snap_seconds)]
            nbest = ([(self.text(t), s) for t, s in parts[0][1].nbest] if len(parts) == 1
                     else [(text, sum(r.score for _, r, _, _ in parts))])
            transcripts.append(Transcript(segment.id, text, nbest[0][1], nbest, tokens, words, segment.duration,
                                          sum(r.loop_guard_fired for _, r, _, _ in parts)))
        return transcripts

    def token_text(self, token: int) -> str:
        return self.tokenizer.tokens[token].replace(SPACE, " ")

    def words(self, piece: Segment, tokens: List[int], spans: List[Span], start: float,
              edges: Edges = None, snap_seconds: float = 0.0) -> List[Word]:
        """The words of a piece's tokens, timed in seconds from `start` in its recording; a token holding
        frames [first, last] lasts from the start of the first to the end of the last (within the piece).
        With the piece's `edges` (Speech), neighbouring words meet at their quietest moment and each word's
        start and end moves to the nearest
        one within snap_seconds."""
        seconds, offset = self.model.seconds_per_frame, (piece.offset or 0.0) - start
        starts = [first * seconds for first, _ in spans]
        ends = [min((last + 1) * seconds, piece.duration) for _, last in spans]
        words = words_with_times([self.token_text(t) for t in tokens], starts, ends, self.lang)
        if edges is not None and snap_seconds:
            words = snap_words(words, edges, snap_seconds)
        return [(w, offset + s, offset + e) for w, s, e in words]

    def attention(self, samples: np.ndarray, tokens: List[int], options: Optional[DecodingOptions] = None) -> torch.Tensor:
        """Cross-attention [tokens + 1, frames] of the decoder fed `tokens`, under the options' window."""
        with torch.inference_mode():
            waves = torch.from_numpy(samples)[None].to(self.device)
            options = options or self.options()
            memory, memory_lengths = self.model.encode(waves, torch.tensor([len(samples)], device=self.device),
                                                       window=self.encoder_window(options))
            return attention_map(self.model, memory, memory_lengths, tokens, options).cpu()
