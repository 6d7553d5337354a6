"""Synthetic English sentences, spoken by espeak-ng and flite: a corpus for machines with no
speech data of their own, and a check that a model follows words rather than one voice. Nothing
is read or downloaded (no --corpus-dir); espeak-ng and flite must be installed (apt-get install
espeak-ng flite).

Sentences come from --sentences FILE (one per line) or from a small built-in grammar over a few
hundred common words ("the seven red trains left at nine twenty"). Either way the text is first
normalised to what is spoken: lowercase letters, apostrophes inside words and single spaces, with
numbers spelled out ("3.5" -> "three point five"). That exact text goes to the synthesiser and
into the manifest, and no sentence is in two splits. Each utterance gets a voice (espeak-ng
accents with its voice variants, or a flite voice), a speaking rate, a pitch and a level of its
own. The test split is spoken only by voices that train and dev never use (other espeak-ng
accents and variants, flite's slt); dev shares train's voices. The manifest's speaker is the
voice ("flite:slt", "espeak-ng:en-us+m3"), and OUT/<split>.sources.jsonl holds each utterance's
synthesiser command and the gain applied. Audio is 16 kHz mono WAV under OUT/audio/<split>/.
The same --seed gives the same files, byte for byte, on the same espeak-ng and flite."""
import io
import os
import re
import shutil
import subprocess
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, resample
from asr.segments import Segment

from .common import CorpusError, Prep, read_lines, write_wav

NEEDS_CORPUS = False
ENGINES = ("espeak-ng", "flite")


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng" or "flite"
    name: str  # espeak-ng's "-v accent+variant" or flite's "-voice"
    f0: float = 0.0  # flite: the voice's own mean pitch in Hz, which the pitch factor scales

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


def espeak_voices(accents: str, variants: str) -> Tuple[Voice, ...]:
    return tuple(Voice("espeak-ng", f"{accent}+{variant}") for accent in accents.split()
                 for variant in variants.split())


# Test voices share neither accent nor variant with train's, and slt is flite's only female voice.
VOICES = {
    "train": {"espeak-ng": espeak_voices("en-us en-gb en-gb-x-rp en-gb-scotland en-gb-x-gbclan en-gb-x-gbcwmd",
                                         "m1 m2 m3 m4 m5 f1 f2 f3"),
              "flite": (Voice("flite", "kal", 90.0), Voice("flite", "kal16", 90.0), Voice("flite", "awb", 125.0),
                        Voice("flite", "rms", 105.0))},
    "test": {"espeak-ng": espeak_voices("en-029 en-us-nyc", "m6 m7 f4 f5"), "flite": (Voice("flite", "slt", 170.0),)},
}
VOICE_POOL = {"train": "train", "dev": "train", "test": "test"}


@dataclass(frozen=True)
class Style:
    """How utterances vary. Rate and pitch are factors of the voice's own; an engine is picked
    first, then one of its voices, so that espeak-ng's many variants do not crowd out flite."""
    rate: Tuple[float, float] = (0.8, 1.2)
    pitch: Tuple[float, float] = (0.8, 1.25)
    level_db: Tuple[float, float] = (-32.0, -16.0)  # RMS of the output, dBFS
    words: Tuple[int, int] = (5, 11)  # generated sentences' length: 2-4 s at these rates


@dataclass(frozen=True)
class Take:
    """One sentence as one voice speaks it."""
    uid: str
    split: str
    text: str
    voice: Voice
    rate: float
    pitch: float
    level_db: float

    def command(self) -> List[str]:
        """The synthesiser's command line; it writes a WAV to stdout."""
        if self.voice.engine == "espeak-ng":
            return ["espeak-ng", "-v", self.voice.name, "-s", str(round(175 * self.rate)),
                    "-p", str(round(50 * self.pitch)), "--stdout", self.text]
        return ["flite", "-voice", self.voice.name, "--setf", f"duration_stretch={1 / self.rate:.3f}",
                "--setf", f"int_f0_target_mean={self.voice.f0 * self.pitch:.1f}", "-t", self.text, "-o", "/dev/stdout"]


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """A cardinal in words, British style ("three hundred and five")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + (f" {ONES[n % 10]}" if n % 10 else "")
    for size, name in ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            high, low = divmod(n, size)
            rest = "" if low == 0 else (" and " if low < 100 else " ") + number_words(low)
            return f"{number_words(high)} {name}{rest}"


def year_words(year: int) -> str:
    """A year as it is said: "nineteen oh five", "nineteen eighty four", "two thousand and nine", "twenty twelve"."""
    if 2000 <= year < 2010:
        return number_words(year)
    high, low = divmod(year, 100)
    return f"{number_words(high)} " + ("hundred" if low == 0 else f"oh {ONES[low]}" if low < 10 else number_words(low))


def digit_words(digits: str) -> str:
    return " ".join(ONES[int(d)] for d in digits)


def spell_number(digits: str) -> str:
    """Digits as words: a cardinal, or digit by digit where that is how they are read (007, or over 12 digits)."""
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > 12:
        return digit_words(digits)
    return number_words(int(digits))


_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_NUMBER = re.compile(r"\d+")
_NOT_SPOKEN = re.compile(r"[^a-z' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def normalize(text: str) -> str:
    """What is given to the synthesiser and kept as the transcript: lowercase ASCII letters,
    apostrophes inside words and single spaces, numbers spelled out. Accents are dropped (é -> e)."""
    text = unicodedata.normalize("NFKD", text.translate({0x2018: "'", 0x2019: "'"}))
    text = text.encode("ascii", "ignore").decode().lower()
    text = _THOUSANDS_COMMA.sub("", text)
    text = _DECIMAL.sub(lambda m: f" {spell_number(m[1])} point {digit_words(m[2])} ", text)
    text = _NUMBER.sub(lambda m: f" {spell_number(m[0])} ", text)
    text = _STRAY_APOSTROPHE.sub(" ", _NOT_SPOKEN.sub(" ", text))
    return " ".join(text.split())


def _nouns(pairs: str) -> Tuple[List[str], List[str]]:
    singular, plural = zip(*(pair.split("/") for pair in pairs.split()))
    return list(singular), list(plural)


NOUN, NOUNS = _nouns(
    "train/trains car/cars book/books house/houses dog/dogs cat/cats bird/birds letter/letters window/windows "
    "door/doors table/tables chair/chairs boat/boats bus/buses box/boxes phone/phones bag/bags key/keys "
    "bridge/bridges apple/apples cup/cups shirt/shirts ticket/tickets plane/planes horse/horses tree/trees "
    "flower/flowers computer/computers camera/cameras song/songs story/stories picture/pictures ship/ships "
    "shop/shops lamp/lamps bottle/bottles coat/coats hat/hats desk/desks bike/bikes clock/clocks map/maps "
    "glass/glasses plate/plates knife/knives cake/cakes egg/eggs truck/trucks room/rooms garden/gardens "
    "road/roads river/rivers village/villages city/cities machine/machines candle/candles blanket/blankets "
    "pencil/pencils kitchen/kitchens station/stations market/markets office/offices school/schools park/parks "
    "library/libraries church/churches beach/beaches forest/forests island/islands farm/farms wall/walls "
    "basket/baskets bed/beds shoe/shoes watch/watches radio/radios newspaper/newspapers envelope/envelopes")
RELATIVES = "brother sister mother father uncle aunt cousin son daughter grandmother grandfather".split()
# UPPERCASE symbols expand to one of their alternatives, picked uniformly; other words are spoken as they are.
GRAMMAR: Dict[str, List[str]] = {
    "S": ["NP VT OBJ WHEN", "the COUNT ADJ NOUNS VI WHEN", "NAME VT COUNT ADJ NOUNS PLACE",
          "please VB the ADJ NOUN PLACE", "BE going to VB the NOUN WHEN", "i NEG think the NOUN will VIB WHEN",
          "where did you VB the ADJ NOUN WHEN", "NAME said the NOUN was ADJ WHEN", "there were COUNT ADJ NOUNS PLACE",
          "can you VB COUNT NOUNS for me WHEN", "NP MODAL VB the NOUN PLACE", "my RELATIVES NOUN was ADJ WHEN",
          "the ADJ NOUN costs COUNT pounds", "we met PLACE at TIME on DAY", "the NOUN leaves at TIME every DAY",
          "it was COUNT degrees PLACE WHEN", "NAME was born in MONTH YEAR", "my phone number is DIGITS",
          "how many NOUNS did NAME VB WHEN", "NAME and NAME VT the ADJ NOUN", "NAME can't VB the NOUNS PLACE",
          "let's VB the ADJ NOUNS WHEN", "the NOUNS weren't ADJ WHEN", "NP VT the NOUN on the ORDINAL of MONTH",
          "the meeting is at TIME on DAY", "NP VI PLACE WHEN", "NAME won't VB the NOUN until DAY",
          "why did NP VB the ADJ NOUN"],
    "NP": ["NAME", "the PERSON", "the ADJ PERSON", "my RELATIVE", "our PERSON", "their PERSON", "your RELATIVE"],
    "OBJ": ["DET NOUN", "DET ADJ NOUN", "the COUNT NOUNS", "some ADJ NOUNS", "DETS NOUNS"],
    "PLACE": ["PREP the NOUN", "PREP the ADJ NOUN", "PREP DET NOUN"],
    "WHEN": ["at TIME", "on DAY", "in MONTH", "last night", "this morning", "every day", "before noon", "after lunch",
             "yesterday", "today", "tomorrow", "last week", "next year", "on DAY morning", "at TIME on DAY",
             "in the evening", "on the ORDINAL of MONTH", "in YEAR"],
    "TIME": ["HOUR o'clock", "HOUR MINUTE", "half past HOUR", "quarter to HOUR", "quarter past HOUR"],
    "HOUR": ONES[1:13],
    "MINUTE": [f"oh {ONES[n]}" for n in range(1, 10)] + [number_words(n) for n in range(10, 60)],
    "COUNT": [number_words(n) for n in range(2, 100)] + [number_words(n) for n in (100, 150, 200, 250, 300, 500, 1000)],
    "DIGITS": ["DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT", "DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT"],
    "DIGIT": ONES[:10] + ["oh"],
    "YEAR": [year_words(year) for year in range(1900, 2031)],
    "ORDINAL": ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
                "fifteenth twentieth thirtieth").split() + ["twenty first", "twenty second", "twenty third"],
    "DAY": "monday tuesday wednesday thursday friday saturday sunday".split(),
    "MONTH": "january february march april may june july august september october november december".split(),
    "NAME": ("john mary sarah david peter anna tom lucy james emma michael laura robert helen alice george paul kate "
             "daniel sophie").split(),
    "PERSON": ("man woman boy girl teacher doctor driver farmer student nurse baker pilot sailor singer neighbour "
               "child friend manager waiter captain").split(),
    "RELATIVE": RELATIVES,
    "RELATIVES": [f"{relative}'s" for relative in RELATIVES],
    "DET": "the my our your their his her this that".split(),
    "DETS": "the my our your their his her these those".split(),
    "ADJ": ("red blue green yellow black white brown grey old new big small little long short quiet loud dark "
            "bright cold warm heavy light empty full clean dirty broken strange famous cheap expensive wooden round "
            "tall narrow wide soft hard fresh lovely simple busy").split(),
    "NOUN": NOUN,
    "NOUNS": NOUNS,
    "VT": ("found lost bought sold painted opened closed cleaned carried washed fixed moved watched saw liked wanted "
           "needed took brought kept showed sent built drew cooked visited followed called counted checked dropped "
           "borrowed ordered packed pushed pulled").split(),
    "VB": ("find lose buy sell paint open close clean carry wash fix move watch see take bring keep show send build "
           "draw cook visit follow call count check drop borrow order pack push pull").split(),
    "VI": "left arrived stopped waited slept stayed returned started finished worked turned disappeared".split(),
    "VIB": "leave arrive stop wait stay return start finish work turn".split(),
    "PREP": "in on near behind under beside inside outside by from to into across above below".split(),
    "BE": "i'm we're they're she's he's you're".split(),
    "NEG": "don't didn't".split(),
    "MODAL": "can could will would should must might".split(),
}


def expand(symbol: str, rng: np.random.Generator) -> str:
    alternatives = GRAMMAR[symbol]
    chosen = alternatives[rng.integers(len(alternatives))]
    return " ".join(expand(token, rng) if token in GRAMMAR else token for token in chosen.split())


def generated_sentences(count: int, rng: np.random.Generator, words: Tuple[int, int]) -> List[str]:
    """`count` distinct sentences of the grammar with words[0]-words[1] words."""
    sentences: Dict[str, None] = {}  # a set that keeps the order they came in
    for _ in range(50 * count):
        if len(sentences) == count:
            break
        sentence = expand("S", rng)
        if words[0] <= len(sentence.split()) <= words[1]:
            sentences[sentence] = None
    if len(sentences) < count:
        raise CorpusError(f"the built-in grammar gave only {len(sentences):,} distinct sentences of the {count:,} "
                          "asked for: pass --sentences FILE")
    return list(sentences)


def file_sentences(prep: Prep, path: str, rng: np.random.Generator) -> List[str]:
    """The file's distinct normalised sentences, shuffled so that every split draws from all of it."""
    sentences: Dict[str, None] = {}
    for line in filter(str.strip, read_lines(path)):
        sentence = normalize(line)
        if not sentence:
            prep.skip("sentence with no words to speak", line)
        elif sentence in sentences:
            prep.skip("repeated sentence", sentence)
        else:
            sentences[sentence] = None
    ordered = list(sentences)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def share(sentences: List[str], counts: Dict[str, int], source: str) -> Dict[str, List[str]]:
    """Disjoint runs of the sentences, sized in proportion to the splits, so that none is in two splits."""
    bounds = np.round(np.cumsum([0] + list(counts.values())) * len(sentences) / sum(counts.values())).astype(int)
    shares = {split: sentences[start:end] for split, start, end in zip(counts, bounds, bounds[1:])}
    if not all(shares[split] for split, count in counts.items() if count):
        raise CorpusError(f"{source}: {len(sentences):,} distinct sentences are too few to give every split its own")
    return shares


def plan_split(split: str, count: int, sentences: List[str], seed: int, style: Style) -> List[Take]:
    """The split's takes: its sentences in turn, each with a voice, rate, pitch and level drawn
    from a generator seeded by (seed, split)."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    voices = VOICES[VOICE_POOL[split]]
    plan = []
    for index in range(count):
        engine_voices = voices[ENGINES[rng.integers(len(ENGINES))]]
        voice = engine_voices[rng.integers(len(engine_voices))]
        plan.append(Take(f"{split}_{index:05d}", split, sentences[index % len(sentences)], voice,
                         float(rng.uniform(*style.rate)), float(rng.uniform(*style.pitch)),
                         float(rng.uniform(*style.level_db))))
    return plan


def run(command: List[str]) -> bytes:
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0 or not result.stdout:
        error = result.stderr.decode(errors="replace").strip().splitlines()
        raise CorpusError(f"{command[0]} failed on {command!r}: {error[-1] if error else f'exit {result.returncode}'}")
    return result.stdout


def espeak_column(option: str, column: int) -> List[str]:
    """A column of espeak-ng's table of voices (`espeak-ng --voices=...`), its header left out."""
    return [line.split()[column] for line in run(["espeak-ng", option]).decode().splitlines()[1:]]


def installed_voices() -> Set[str]:
    """The speaker names of every voice the two synthesisers have here."""
    flite = run(["flite", "-lv"]).decode().partition(":")[2].split()
    variants = [file.removeprefix("!v/") for file in espeak_column("--voices=variant", 4)]
    return ({f"flite:{name}" for name in flite}
            | {f"espeak-ng:{accent}+{variant}" for accent in espeak_column("--voices=en", 1) for variant in variants})


def check_installed(voices: Set[Voice]) -> None:
    """Both synthesisers and every voice used. Neither synthesiser complains about an unknown
    voice: both fall back to their default one, which could then speak both train and test."""
    missing = [engine for engine in ENGINES if shutil.which(engine) is None]
    if missing:
        raise CorpusError(f"synth needs {' and '.join(missing)}, which is not installed: "
                          "apt-get install espeak-ng flite")
    absent = sorted({voice.speaker for voice in voices} - installed_voices())
    if absent:
        raise CorpusError(f"voices not installed here: {', '.join(absent)}")


def synthesiser_audio(command: List[str]) -> np.ndarray:
    """The WAV a synthesiser's command writes to stdout, mono at 16 kHz."""
    try:
        audio, rate = sf.read(io.BytesIO(run(command)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise CorpusError(f"{command[0]} wrote no readable WAV for {command!r} ({e})") from None
    return resample(audio.mean(axis=1), rate, SAMPLE_RATE)


def write_at_level(path: str, audio: np.ndarray, level_db: float, what: str) -> float:
    """Writes a 16 kHz WAV scaled to an RMS of level_db dBFS (lower where that would clip); returns
    the gain applied. `what` names the audio in the error for silence."""
    peak = float(np.abs(audio).max())
    if peak == 0:
        raise CorpusError(f"only silence from {what}")
    gain = float(min(10 ** (level_db / 20) / np.sqrt(np.mean(np.square(audio))), 0.99 / peak))
    write_wav(path, audio * gain, SAMPLE_RATE)
    return gain


def synthesise(take: Take, path: str) -> Tuple[float, float]:
    """Speaks the take into a 16 kHz WAV at its level; returns its duration in seconds and the gain applied."""
    audio = synthesiser_audio(take.command())
    return len(audio) / SAMPLE_RATE, write_at_level(path, audio, take.level_db, repr(take.command()))


def add_corpus_args(parser, num_train: int, num_dev: int, num_test: int, sentences: str) -> None:
    """The options of a corpus made here: its seed, the size of each split, its sentences, parallel jobs."""
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same corpus (default 0)")
    for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        parser.add_argument(f"--num-{split}", type=int, default=count, help=f"{split} utterances (default {count})")
    parser.add_argument("--sentences", help=f"a UTF-8 text file, {sentences} (default: the built-in grammar)")
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=2, help="processes at once (default 2)")


def split_counts(options) -> Dict[str, int]:
    """The utterances asked of each split, checked."""
    counts = dict(train=options.num_train, dev=options.num_dev, test=options.num_test)
    if min(counts.values()) < 0 or options.seed < 0:
        raise CorpusError("--seed and the --num-* counts must be 0 or more")
    if not sum(counts.values()):
        raise CorpusError("--num-train, --num-dev and --num-test are all 0: nothing to make")
    return counts


def add_args(parser) -> None:
    add_corpus_args(parser, 1500, 150, 200, "one sentence per line")


def prepare(prep: Prep) -> None:
    options, style = prep.options, Style()
    counts = split_counts(options)
    check_installed({voice for pool in VOICES.values() for voices in pool.values() for voice in voices})
    rng = np.random.default_rng([options.seed, zlib.crc32(b"sentences")])
    if options.sentences:
        sentences, source = file_sentences(prep, options.sentences, rng), options.sentences
    else:
        sentences, source = generated_sentences(sum(counts.values()), rng, style.words), "the built-in grammar"
    shares = share(sentences, counts, source)
    plan = [take for split, count in counts.items() if count
            for take in plan_split(split, count, shares[split], options.seed, style)]
    paths = [os.path.join(prep.out_dir, "audio", take.split, f"{take.uid}.wav") for take in plan]
    with ThreadPoolExecutor(options.jobs) as pool:  # the synthesisers are processes: threads suffice to run two
        results = list(pool.map(synthesise, plan, paths))
    for take, path, (duration, gain) in zip(plan, paths, results):
        prep.add(take.split, Segment(take.uid, path, duration, take.text, take.voice.speaker, "en"),
                 dict(command=take.command(), gain=gain))
