"""Connected digits, in the manner of TIDIGITS, composed from real Free Spoken Digit Dataset
recordings: each utterance is one speaker saying 1-10 digits with short pauses, often repeating
one ("one one one four"). FSDD's words are isolated, so a model trained on them alone never hears
one digit run into the next; this corpus teaches and tests exactly that.

Each recording is trimmed of the silence around its word (energy-based, lightly) and scaled to a
common RMS, then placed after a pause of 0-300 ms (none at all in about one gap in six), over a
faint noise floor so that no pause is digital silence. The splits keep FSDD's takes apart, so no
recording is in two of them: train from takes 10-49, dev from 5-9, test from 0-4, and dev_long and
test_long (OUT/{dev,test}_long.jsonl: 20-60 s utterances, for long-form decoding: settings are chosen
on the first) from 5-9 and 0-4. Audio is
written at FSDD's 8 kHz under OUT/audio/<split>/; OUT/<split>.sources.jsonl lists, per utterance,
the recordings it is made of, the sample at which each starts in the output, the samples of the
recording kept [start, end) and the gain applied. Each manifest line also gives every word's true
start and end in seconds, `words: [[word, start, end], ...]`: where its trimmed recording lies in the
output (see `trim`), for measuring word timestamps. The same --seed gives the same files, byte for
byte. --corpus-dir is FSDD's folder (holding recordings/) or its release archive."""
import glob
import os
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from asr.audio import AudioError, load_audio

from asr.segments import Segment

from .common import CorpusError, Prep, find_root, write_wav
from .fsdd import DIGITS, RECORDING_NAME, downloads, split_of  # noqa: F401 (downloads: FSDD's own archive)

EXTRA_SPLITS = ("dev_long", "test_long")
POOLS = {"train": "train", "dev": "dev", "test": "test", "dev_long": "dev", "test_long": "test"}  # split -> the takes it draws on
RATE = 8000  # FSDD's own rate: the output holds the recordings' samples unresampled
DEV_TAKES = 5
LONG_SECONDS = (20.0, 60.0)


@dataclass(frozen=True)
class Style:
    """How utterances are put together; times in seconds."""
    max_digits: int = 10
    repeat: float = 0.3  # chance that a digit repeats the one before it
    no_pause: float = 0.15  # chance that a digit follows the one before it with no pause at all
    max_pause: float = 0.3
    edge: Tuple[float, float] = (0.1, 0.3)  # silence before the first digit and after the last
    level: float = 0.05  # the RMS each trimmed recording is scaled to (-26 dBFS)
    noise: float = 0.001  # RMS of the noise floor (-60 dBFS)
    top_db: float = 40.0  # trimming keeps the frames within this of the loudest one


@dataclass(frozen=True)
class Recording:
    name: str  # {digit}_{speaker}_{take}
    path: str
    digit: int
    speaker: str
    take: int
    audio: np.ndarray  # the kept samples, scaled: float32 at RATE
    trim: Tuple[int, int]  # the samples [start, end) of the file that were kept
    gain: float


Pool = Dict[str, List[List[Recording]]]  # speaker -> digit -> that speaker's recordings of it


def add_args(parser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same corpus (default 0)")
    parser.add_argument("--num-train", type=int, default=1500, help="train utterances (default 1500, about 1.3 h)")
    parser.add_argument("--num-dev", type=int, default=200, help="dev utterances (default 200)")
    parser.add_argument("--num-test", type=int, default=300, help="test utterances (default 300)")
    parser.add_argument("--num-long", type=int, default=20, help="dev_long and test_long utterances of 20-60 s, each (default 20)")


def trim(audio: np.ndarray, top_db: float, frame: int = RATE // 100) -> Tuple[int, int]:
    """The samples from the first to the last 10 ms frame whose energy (mean square) is within top_db
    of the loudest frame's. FSDD's takes have uneven silence around the word, which would blur the
    pauses set here; what is kept is the word, so its place in an utterance is the word's true time."""
    energy = np.square(np.pad(audio, (0, -len(audio) % frame)).reshape(-1, frame)).mean(axis=1)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-top_db / 10))
    return int(loud[0] * frame), int(min(len(audio), (loud[-1] + 1) * frame))


def read_recording(prep: Prep, path: str, style: Style, pools: Tuple[str, ...]) -> Optional[Recording]:
    """The recording trimmed and scaled to style.level (less where that would clip it), or None
    (counted as skipped) when unusable; also None, uncounted, when no wanted split takes it."""
    name = os.path.splitext(os.path.basename(path))[0]
    match = RECORDING_NAME.fullmatch(name)
    if match is None:
        prep.skip("name is not {digit}_{speaker}_{take}", name)
        return None
    digit, speaker, take = match.groups()
    if split_of(int(take), DEV_TAKES) not in pools:
        return None
    try:
        audio = load_audio(path, RATE)
    except AudioError as e:
        prep.skip("unreadable audio", str(e))
        return None
    start, end = trim(audio, style.top_db)
    kept = audio[start:end]
    peak = np.abs(kept).max()
    if peak == 0:
        prep.skip("silent recording", name)
        return None
    gain = float(min(style.level / np.sqrt(np.mean(np.square(kept))), 0.99 / peak))
    return Recording(name, os.path.abspath(path), int(digit), speaker, int(take), kept * np.float32(gain),
                     (start, end), gain)


def read_pools(prep: Prep, style: Style, wanted: Tuple[str, ...]) -> Dict[str, Pool]:
    """The wanted pools (train, dev, test takes) of speakers that have every digit in them."""
    folder = os.path.join(find_root(prep.corpus_dir, "recordings"), "recordings")
    pools: Dict[str, Pool] = {pool: {} for pool in wanted}
    for path in sorted(glob.glob(os.path.join(folder, "*.wav"))):
        recording = read_recording(prep, path, style, wanted)
        if recording is not None:
            digits = pools[split_of(recording.take, DEV_TAKES)].setdefault(recording.speaker, [[] for _ in DIGITS])
            digits[recording.digit].append(recording)
    for pool, speakers in pools.items():
        for speaker in [s for s, digits in speakers.items() if not all(digits)]:
            prep.skip(f"speaker without every digit in the {pool} takes", speaker)
            del speakers[speaker]
        if not speakers:
            raise CorpusError(f"{folder}: no speaker has a recording of every digit in FSDD's {pool} takes")
    return pools


def compose(rng: np.random.Generator, digits: List[List[Recording]], style: Style, count: Optional[int] = None,
            seconds: Optional[float] = None) -> Tuple[np.ndarray, List[Tuple[int, Recording]]]:
    """One utterance of `count` digits, or of as many as fit in `seconds`: its audio, and each
    recording with the sample at which it starts. A repeated digit is another take where there is one."""
    lead, tail = (int(rng.uniform(*style.edge) * RATE) for _ in range(2))
    position, placed, digit = lead, [], None
    while count is None or len(placed) < count:
        if digit is None or rng.random() >= style.repeat:
            digit = int(rng.integers(len(DIGITS)))
        previous = placed[-1][1] if placed else None
        takes = [r for r in digits[digit] if r is not previous] or digits[digit]
        recording = takes[rng.integers(len(takes))]
        pause = 0 if not placed or rng.random() < style.no_pause else int(rng.uniform(0, style.max_pause) * RATE)
        end = position + pause + len(recording.audio)
        if seconds is not None and end + tail > seconds * RATE:
            break
        placed.append((position + pause, recording))
        position = end
    audio = (rng.standard_normal(position + tail) * style.noise).astype(np.float32)
    for start, recording in placed:
        audio[start:start + len(recording.audio)] += recording.audio
    return audio, placed


def build_split(prep: Prep, split: str, count: int, pool: Pool, style: Style) -> None:
    """`count` utterances, each from one speaker, drawn from a generator seeded by (--seed, split)
    so that a split does not change when another one's size does."""
    rng = np.random.default_rng([prep.options.seed, zlib.crc32(split.encode())])
    speakers = sorted(pool)
    longest = max(len(r.audio) for digits in pool.values() for takes in digits for r in takes) / RATE
    for index in range(count):
        speaker = speakers[rng.integers(len(speakers))]
        if split.endswith("_long"):  # the last digit that fits ends at most a pause and a digit short of the target
            target = rng.uniform(LONG_SECONDS[0] + style.max_pause + longest, LONG_SECONDS[1])
            audio, placed = compose(rng, pool[speaker], style, seconds=target)
        else:
            audio, placed = compose(rng, pool[speaker], style, count=int(rng.integers(1, style.max_digits + 1)))
        uid = f"{speaker}_{split}_{index:05d}"
        path = os.path.join(prep.out_dir, "audio", split, f"{uid}.wav")
        write_wav(path, audio, RATE)
        sources = [dict(recording=r.name, path=r.path, offset=start, trim=list(r.trim), gain=r.gain)
                   for start, r in placed]
        words = [[DIGITS[r.digit], start / RATE, (start + len(r.audio)) / RATE] for start, r in placed]
        text = " ".join(word for word, _, _ in words)
        prep.add(split, Segment(uid, path, len(audio) / RATE, text, speaker, "en", info=dict(words=words)), sources)


def prepare(prep: Prep) -> None:
    options = prep.options
    counts = dict(train=options.num_train, dev=options.num_dev, test=options.num_test, dev_long=options.num_long,
                  test_long=options.num_long)
    if min(counts.values()) < 0 or options.seed < 0:
        raise CorpusError("--seed and the --num-* counts must be 0 or more")
    style = Style()
    pools = read_pools(prep, style, tuple(sorted({POOLS[split] for split, count in counts.items() if count})))
    for split, count in counts.items():
        if count:
            build_split(prep, split, count, pools[POOLS[split]], style)
