"""Manifests (one JSON object per line) and the batches a model trains on."""
import contextlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from .audio import SAMPLE_RATE, audio_duration, load_audio
from .errors import ASRError
from .text import IGNORE_ID, CharTokenizer, normalize_text


class ManifestError(ASRError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float
    text: str
    speaker: Optional[str] = None
    lang: Optional[str] = None
    offset: Optional[float] = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)

    def load_audio(self, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The whole file, or the segment [offset, offset + duration) when an offset is given."""
        if self.offset is None:
            return load_audio(self.audio, sample_rate)
        return load_audio(self.audio, sample_rate, self.offset, self.duration if self.duration > 0 else None)


# Other toolkits' names for our keys (NeMo: audio_filepath/duration/text; WeNet: key/wav/txt).
_ALIASES = {"audio_filepath": "audio", "wav": "audio", "path": "audio", "key": "id", "utt": "id",
            "txt": "text", "spk": "speaker", "language": "lang"}


def parse_manifest_line(line: str, base_dir: str, where: str) -> Utterance:
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
    try:
        duration = float(entry["duration"]) if entry.get("duration") is not None else -1.0
        offset = float(entry["offset"]) if entry.get("offset") is not None else None
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: 'duration' and 'offset' must be numbers") from None
    uid = entry.get("id") or os.path.splitext(os.path.basename(audio))[0]
    return Utterance(id=str(uid), audio=audio, duration=duration, text=str(entry.get("text", "")),
                     speaker=entry.get("speaker"), lang=entry.get("lang"), offset=offset)


def read_manifest(path: str) -> Iterator[Utterance]:
    """Streams utterances; relative audio paths are resolved against the manifest's folder."""
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest file")
    base_dir = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield parse_manifest_line(line, base_dir, f"{path}:{number}")


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` and renames it into place only if the block succeeds:
    an interrupted or failed write never leaves a partial file or harms the previous one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shared outputs unreadable to others
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_manifest(path: str, utterances: Iterable[Utterance]) -> int:
    count = 0
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for utt in utterances:
            f.write(utt.to_json() + "\n")
            count += 1
    return count


def load_manifest(path: str) -> List[Utterance]:
    return list(read_manifest(path))


def filter_utterances(utterances: Iterable[Utterance], min_duration: float = 0.0,
                      max_duration: float = math.inf) -> Tuple[List[Utterance], int]:
    """Keeps utterances lasting min_duration..max_duration seconds and says how many were dropped,
    so training can report it. Missing durations are read from the audio file's header."""
    kept, dropped = [], 0
    for utt in utterances:
        if utt.duration < 0:
            utt = replace(utt, duration=audio_duration(utt.audio) - (utt.offset or 0.0))
        if min_duration <= utt.duration <= max_duration:
            kept.append(utt)
        else:
            dropped += 1
    return kept, dropped


@dataclass
class Example:
    id: str
    waveform: torch.Tensor  # float32 [samples] at the model's sample rate
    tokens: torch.Tensor  # int64 [length]: the normalised transcript, without <sos/eos>


class SpeechDataset(Dataset):
    """Loads one utterance's audio and encodes its transcript. Features are left to the model's
    front end, which computes them a batch at a time on its own device. The utterance list (not the
    audio) stays in memory, which is fine up to about a million utterances."""

    def __init__(self, utterances: Union[str, "os.PathLike[str]", Sequence[Utterance]], tokenizer: CharTokenizer,
                 lang: str = "en", sample_rate: int = SAMPLE_RATE):
        is_path = isinstance(utterances, (str, os.PathLike))
        self.utterances = load_manifest(os.fspath(utterances)) if is_path else list(utterances)
        self.tokenizer, self.lang, self.sample_rate = tokenizer, lang, sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Example:
        utt = self.utterances[index]
        tokens = self.tokenizer.encode(normalize_text(utt.text, self.lang))
        return Example(id=utt.id, waveform=torch.from_numpy(utt.load_audio(self.sample_rate)),
                       tokens=torch.tensor(tokens, dtype=torch.long))


@dataclass
class Batch:
    waveforms: torch.Tensor  # float32 [B, S], zero-padded
    waveform_lengths: torch.Tensor  # int64 [B]
    tokens: torch.Tensor  # int64 [B, L], padded with IGNORE_ID
    token_lengths: torch.Tensor  # int64 [B]
    ids: List[str]


def collate(examples: Sequence[Example]) -> Batch:
    return Batch(
        waveforms=pad_sequence([e.waveform for e in examples], batch_first=True),
        waveform_lengths=torch.tensor([len(e.waveform) for e in examples], dtype=torch.long),
        tokens=pad_sequence([e.tokens for e in examples], batch_first=True, padding_value=IGNORE_ID),
        token_lengths=torch.tensor([len(e.tokens) for e in examples], dtype=torch.long),
        ids=[e.id for e in examples],
    )


class BucketBatchSampler(Sampler[List[int]]):
    """Batches of utterances of similar duration, so that little of a batch is padding, sized by
    padded seconds (batch size x longest duration <= max_seconds) so long utterances come in small
    batches and short ones in large. The batches are fixed; their order is shuffled per (seed, epoch).

    Batches are global: with several processes, rank r takes items r, r + R, ... of every batch
    (as ESPnet does), so R processes step through exactly the batches that one process would, and
    every rank runs the same number of steps. Each batch therefore holds at least R utterances.
    Call set_epoch before each pass, as with DistributedSampler."""

    def __init__(self, durations: Sequence[float], max_seconds: float, max_batch_size: Optional[int] = None,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if max_seconds <= 0 or (max_batch_size is not None and max_batch_size < 1):
            raise ASRError("max_seconds and max_batch_size must be positive")
        if not 0 <= rank < num_replicas:
            raise ASRError(f"rank {rank} is not in [0, {num_replicas})")
        if len(durations) < num_replicas:
            raise ASRError(f"{len(durations)} utterances are too few for {num_replicas} processes")
        self.batches = self._make_batches(durations, max_seconds, max(num_replicas, max_batch_size or len(durations)),
                                          num_replicas)
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        self.position = 0  # batches of this epoch handed out so far
        self._pass_start = 0

    @staticmethod
    def _make_batches(durations: Sequence[float], max_seconds: float, max_batch_size: int,
                      min_batch_size: int) -> List[List[int]]:
        batches, batch = [], []
        for i in sorted(range(len(durations)), key=lambda i: durations[i]):
            # sorted ascending, so the newcomer is the batch's longest utterance
            full = len(batch) == max_batch_size or (len(batch) + 1) * durations[i] > max_seconds
            if len(batch) >= min_batch_size and full:
                batches.append(batch)
                batch = []
            batch.append(i)
        if len(batch) < min_batch_size and batches:
            batches[-1].extend(batch)
        elif batch:
            batches.append(batch)
        return batches

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Starts a new epoch's order; setting the current epoch again keeps a resumed position."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[List[int]]:
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self._pass_start = self.position
        for b in order[self.position:].tolist():
            self.position += 1
            yield self.batches[b][self.rank::self.num_replicas]

    def state_dict(self, batches_done: Optional[int] = None) -> Dict[str, int]:
        """Where to resume. `batches_done` is how many batches of the current pass the caller has
        finished; it defaults to how many were handed out, which runs ahead of training when
        DataLoader workers prefetch, so a trainer with workers should pass its own count."""
        position = self.position if batches_done is None else self._pass_start + batches_done
        return dict(epoch=self.epoch, position=position, batches=len(self))

    def load_state_dict(self, state: Dict[str, int]) -> None:
        finished = state["position"] >= state["batches"]
        if 0 < state["position"] and not finished and state["batches"] != len(self):
            raise ASRError(f"cannot resume mid-epoch: the saved sampler had {state['batches']} batches per process, "
                           f"this one has {len(self)} (data, batch size or process count changed)")
        self.epoch, self.position = state["epoch"], len(self) if finished else state["position"]
