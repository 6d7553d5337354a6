"""What a model trains on: segments with transcripts become examples, examples become padded
batches, and batches are drawn by duration buckets; plus the feature statistics of a training set."""
import math
import os
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from .audio import SAMPLE_RATE
from .augment import Augmenter, AugmentConfig, join_with_pauses
from .cache import AudioCache
from .errors import ASRError
from .features import FeatureStatistics, GlobalCMVN, LogMel
from .segments import Segment, length_buckets, load_manifest, pad_waveforms
from .text import IGNORE_ID, CharTokenizer, normalize_text


def filter_segments(segments: Iterable[Segment], min_duration: float = 0.0,
                    max_duration: float = math.inf) -> Tuple[List[Segment], int]:
    """Keeps segments lasting min_duration..max_duration seconds and says how many were dropped,
    so training can report it. Missing durations are read from the audio file's header."""
    kept, dropped = [], 0
    for segment in map(Segment.measured, segments):
        if min_duration <= segment.duration <= max_duration:
            kept.append(segment)
        else:
            dropped += 1
    return kept, dropped


@torch.no_grad()
def feature_statistics(audio: Iterable[np.ndarray], logmel: LogMel) -> GlobalCMVN:
    """Global CMVN from one streaming pass over the features of utterances' samples (at the
    feature sample rate); see SpeechDataset.all_samples."""
    stats = FeatureStatistics(logmel.config.n_mels)
    for samples in audio:
        samples = torch.from_numpy(samples)
        feats, _ = logmel(samples[None], torch.tensor([samples.shape[0]]))
        stats.add(feats[0])
    if stats.count == 0:
        raise ASRError("no audio to compute feature statistics from")
    return stats.cmvn()


@dataclass
class Example:
    id: str
    waveform: torch.Tensor  # float32 [samples] at the model's sample rate
    tokens: torch.Tensor  # int64 [length]: the normalised transcript, without <sos/eos>


class Draw(NamedTuple):
    """One utterance drawn into a batch: which (`index`), and when (`epoch`, and `slot`, its place
    among the epoch's draws), so the loader can seed each draw's augmentation the same in every run
    and after a resume, and an utterance drawn twice in an epoch is augmented twice differently.
    `joined` are the utterances that follow `index` in the same example (AugmentConfig.concat_prob)."""
    index: int
    epoch: int
    slot: int
    joined: Tuple[int, ...] = ()


class SpeechDataset(Dataset):
    """Loads one utterance's audio and encodes its transcript. Features are left to the model's
    front end, which computes them a batch at a time on its own device. The utterance list (not the
    audio) stays in memory, which is fine up to about a million utterances."""

    def __init__(self, segments: Union[str, "os.PathLike[str]", Sequence[Segment]], tokenizer: CharTokenizer,
                 lang: str = "en", sample_rate: int = SAMPLE_RATE, cache_dir: Optional[str] = None,
                 augment: Optional[AugmentConfig] = None, seed: int = 0, numerals: str = "keep"):
        is_path = isinstance(segments, (str, os.PathLike))
        self.segments = load_manifest(os.fspath(segments)) if is_path else list(segments)
        self.tokenizer, self.lang, self.sample_rate, self.seed = tokenizer, lang, sample_rate, seed
        self.numerals = numerals
        self.cache = AudioCache(cache_dir, sample_rate) if cache_dir else None
        self.pause_seconds = augment.concat_pause if augment else [0.0, 0.0]
        augmenter = Augmenter(augment, sample_rate, self.random_utterance) if augment else None
        self.augmenter = augmenter if augmenter and augmenter.enabled else None

    def __len__(self) -> int:
        return len(self.segments)

    def samples(self, index: int) -> np.ndarray:
        segment = self.segments[index]
        return self.cache.load(segment) if self.cache else segment.load(self.sample_rate)

    def all_samples(self, limit: Optional[int] = None) -> Iterator[np.ndarray]:
        """The first `limit` utterances' samples (all by default), unaugmented, one at a time."""
        return (self.samples(i) for i in range(min(len(self), limit or len(self))))

    def random_utterance(self, rng: np.random.Generator) -> np.ndarray:
        """Another utterance's samples, for babble noise."""
        return self.samples(int(rng.integers(len(self))))

    def __getitem__(self, key: Union[int, Draw]) -> Example:
        """An utterance by index, or a sampler's draw: drawn utterances are augmented (when
        augmentation is on) with a generator seeded by (seed, epoch, slot), and joined to the
        utterances the draw lists after it, each augmented on its own, with pauses between."""
        draw = key if isinstance(key, Draw) else Draw(key, 0, 0)
        pieces = (draw.index, *draw.joined)
        audio = [self.samples(i) for i in pieces]
        if self.augmenter is not None and isinstance(key, Draw):
            seeds = [[self.seed, draw.epoch, draw.slot]] + [[self.seed, draw.epoch, draw.slot, k]
                                                            for k in range(1, len(pieces))]
            audio = [self.augmenter(x, np.random.default_rng(s)) for x, s in zip(audio, seeds)]
        if len(pieces) > 1:
            pauses = np.random.default_rng([self.seed, draw.epoch, draw.slot, len(pieces)])
            audio = [join_with_pauses(audio, self.pause_seconds, self.sample_rate, pauses)]
        segments = [self.segments[i] for i in pieces]
        text = normalize_text(" ".join(s.text or "" for s in segments), self.lang, numerals=self.numerals)
        return Example(id="+".join(s.id for s in segments), waveform=torch.from_numpy(audio[0]),
                       tokens=torch.tensor(self.tokenizer.encode(text), dtype=torch.long))


@dataclass
class Batch:
    waveforms: torch.Tensor  # float32 [B, S], zero-padded
    waveform_lengths: torch.Tensor  # int64 [B]
    tokens: torch.Tensor  # int64 [B, L], padded with IGNORE_ID
    token_lengths: torch.Tensor  # int64 [B]
    ids: List[str]


def collate(examples: Sequence[Example]) -> Batch:
    waveforms, lengths = pad_waveforms([e.waveform for e in examples])
    return Batch(
        waveforms=waveforms,
        waveform_lengths=lengths,
        tokens=pad_sequence([e.tokens for e in examples], batch_first=True, padding_value=IGNORE_ID),
        token_lengths=torch.tensor([len(e.tokens) for e in examples], dtype=torch.long),
        ids=[e.id for e in examples],
    )


def join_draws(draws: Sequence[int], durations: Sequence[float], cfg: AugmentConfig,
               rng: np.random.Generator) -> List[Tuple[int, ...]]:
    """The draws, shuffled, grouped into examples: each one, with chance cfg.concat_prob, starts an
    example that takes the draws after it while it stays within a length drawn uniformly between its
    own and cfg.concat_seconds (counting the longest pause per join), so joined examples cover every
    length up to concat_seconds. The rest stay single."""
    order = [draws[i] for i in rng.permutation(len(draws))]
    examples, position = [], 0
    while position < len(order):
        example, total = [order[position]], durations[order[position]]
        position += 1
        if rng.random() < cfg.concat_prob:
            target = rng.uniform(total, max(total, cfg.concat_seconds))
            while position < len(order) and total + cfg.concat_pause[1] + durations[order[position]] <= target:
                total += cfg.concat_pause[1] + durations[order[position]]
                example.append(order[position])
                position += 1
        examples.append(tuple(example))
    return examples


class BucketBatchSampler(Sampler[List[Draw]]):
    """Batches of utterances of similar duration, so that little of a batch is padding, sized by
    padded seconds (batch size x longest duration <= max_seconds) so long utterances come in small
    batches and short ones in large. Their order is shuffled per (seed, epoch).

    `weights` (one per utterance, default 1) say how often an utterance is drawn per epoch on
    average: 2 twice, 0.5 in about half the epochs (which ones is drawn per epoch). That is how
    corpora are mixed in proportions other than their sizes. With every weight 1 each epoch draws
    each utterance once and the batches stay the same from epoch to epoch.

    Batches are global: with several processes, rank r takes items r, r + R, ... of every batch
    (as ESPnet does), so R processes step through exactly the batches that one process would, and
    every rank runs the same number of steps. Each batch therefore holds at least R utterances.
    `concat` (AugmentConfig's concat_prob, concat_seconds, concat_pause) joins draws into longer
    examples (join_draws) before they are bucketed; each epoch then joins differently.

    Call set_epoch before each pass, as with DistributedSampler."""

    def __init__(self, durations: Sequence[float], max_seconds: float, max_batch_size: Optional[int] = None,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, weights: Optional[Sequence[float]] = None,
                 concat: Optional[AugmentConfig] = None):
        if max_seconds <= 0 or (max_batch_size is not None and max_batch_size < 1):
            raise ASRError("max_seconds and max_batch_size must be positive")
        if not 0 <= rank < num_replicas:
            raise ASRError(f"rank {rank} is not in [0, {num_replicas})")
        if weights is not None and (len(weights) != len(durations) or min(weights, default=0) < 0):
            raise ASRError("sampling weights must be one non-negative number per utterance")
        self.durations, self.weights = list(durations), None if weights is None else np.asarray(weights, float)
        self.max_seconds, self.max_batch_size = max_seconds, max_batch_size
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.concat = concat if concat is not None and concat.concat_prob > 0 else None
        self.epoch = 0
        self.position = 0  # batches of this epoch handed out so far
        self._pass_start = 0
        self._cached: Tuple[Optional[int], List[Tuple[int, ...]], List[List[int]]] = (None, [], [])
        if len(self.draws_and_batches(0)[0]) < num_replicas:
            raise ASRError(f"{len(durations)} utterances are too few for {num_replicas} processes")

    def draws_and_batches(self, epoch: int) -> Tuple[List[Tuple[int, ...]], List[List[int]]]:
        """The examples an epoch draws (slot -> the utterances it joins, usually one) and its batches
        (lists of slots), unshuffled."""
        varies = self.weights is not None or self.concat is not None
        key = epoch if varies else 0  # unweighted and unjoined, every epoch draws the same
        if self._cached[0] != key:
            draws = list(range(len(self.durations)))
            rng = np.random.default_rng([self.seed, epoch])
            if self.weights is not None:
                copies = np.floor(self.weights) + (rng.random(len(self.weights)) < self.weights % 1)
                draws = np.repeat(np.arange(len(self.weights)), copies.astype(int)).tolist()
            examples, pause = [(i,) for i in draws], 0.0
            if self.concat is not None:
                examples, pause = join_draws(draws, self.durations, self.concat, rng), sum(self.concat.concat_pause) / 2
            lengths = [sum(self.durations[i] for i in e) + pause * (len(e) - 1) for e in examples]
            size = max(self.num_replicas, self.max_batch_size or len(examples))
            batches = length_buckets(lengths, self.max_seconds, size, min_size=self.num_replicas)
            self._cached = (key, examples, batches)
        return self._cached[1], self._cached[2]

    def __len__(self) -> int:
        return len(self.draws_and_batches(self.epoch)[1])

    def set_epoch(self, epoch: int) -> None:
        """Starts a new epoch's order; setting the current epoch again keeps a resumed position."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[List[Draw]]:
        draws, batches = self.draws_and_batches(self.epoch)
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self._pass_start = self.position
        for b in order[self.position:].tolist():
            self.position += 1
            yield [Draw(draws[slot][0], self.epoch, slot, draws[slot][1:])
                   for slot in batches[b][self.rank::self.num_replicas]]

    def state_dict(self, batches_done: Optional[int] = None) -> Dict[str, int]:
        """Where to resume. `batches_done` is how many batches of the current pass the caller has
        finished; it defaults to how many were handed out, which runs ahead of training when
        DataLoader workers prefetch, so a trainer with workers should pass its own count."""
        position = self.position if batches_done is None else self._pass_start + batches_done
        return dict(epoch=self.epoch, position=position, batches=len(self))

    def load_state_dict(self, state: Dict[str, int]) -> None:
        finished = state["position"] >= state["batches"]
        batches = len(self.draws_and_batches(state["epoch"])[1])  # weighted or joined epochs differ in length
        if 0 < state["position"] and not finished and state["batches"] != batches:
            raise ASRError(f"cannot resume mid-epoch: the saved sampler had {state['batches']} batches per process, "
                           f"this one has {batches} (data, batch size or process count changed)")
        self.epoch, self.position = state["epoch"], batches if finished else state["position"]
