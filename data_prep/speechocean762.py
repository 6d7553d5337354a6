"""speechocean762 (OpenSLR 101): English sentences read by 250 Mandarin-speaking children and
adults, 16 kHz. The corpus is a pair of Kaldi data directories, train/ and test/ (wav.scp, text,
utt2spk, spk2age, spk2gender), whose wav.scp paths (WAVE/SPEAKERxxxx/*.WAV, or .opus in a
transcoded copy) start from the corpus folder.

--corpus-dir is that folder, a folder above it, or the release archive (speechocean762.tar.gz).
The official train and test splits are kept; dev is carved from train by speaker: --dev-speakers
speakers drawn from the sorted train speakers by a generator seeded with --seed, so no speaker is
in two splits and every run draws the same ones. Each utterance keeps its speaker, and the
speaker's age and gender (from spk2age, spk2gender) as "age", "age_group" (child under 18, else adult)
and "gender" in the manifest.
Transcripts are kept as the corpus writes them (uppercase words)."""
import os
import random
from dataclasses import replace
from typing import Dict, List

from .common import CorpusError, Download, Prep, find_root, read_table
from .kaldi import data_dir_segments


def add_args(parser) -> None:
    parser.add_argument("--dev-speakers", type=int, default=10,
                        help="how many train speakers (and all their utterances) form dev (default 10; 0: no dev)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draw of the dev speakers (default 0)")


def downloads(options):
    # OpenSLR publishes no md5 for resource 101, and neither does the corpus' own page or README;
    # Kaldi's gop_speechocean762 recipe checks only the archive's size (520,810,923 bytes).
    return [Download("https://www.openslr.org/resources/101/speechocean762.tar.gz")]


def dev_speakers(speakers: List[str], count: int, seed: int) -> List[str]:
    """`count` of the speakers, the same ones for the same speakers, count and seed."""
    if not 0 <= count < len(speakers):
        raise CorpusError(f"--dev-speakers must be from 0 to {len(speakers) - 1} "
                          f"(train has {len(speakers)} speakers), not {count}")
    return sorted(random.Random(seed).sample(sorted(speakers), count))


def speaker_info(folder: str) -> Dict[str, Dict[str, object]]:
    """Speaker -> {"age": years, "gender": "m" or "f"}, from whichever of the two tables exist."""
    info: Dict[str, Dict[str, object]] = {}
    for key, name in (("age", "spk2age"), ("gender", "spk2gender")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            for speaker, value in read_table(path).items():
                info.setdefault(speaker, {})[key] = int(value) if value.isdigit() else value
    for values in info.values():
        if isinstance(values.get("age"), int):  # the corpus' children are 5-15, its adults 19 and over
            values["age_group"] = "child" if values["age"] < 18 else "adult"
    return info


def prepare(prep: Prep) -> None:
    root = find_root(prep.corpus_dir, "train/spk2age")
    train = data_dir_segments(prep, os.path.join(root, "train"), "train", root, "en")
    speakers = sorted({segment.speaker for _, segment in train.values() if segment.speaker})
    dev = set(dev_speakers(speakers, prep.options.dev_speakers, prep.options.seed))
    for split in ("train", "test"):
        folder = os.path.join(root, split)
        segments = train if split == "train" else data_dir_segments(prep, folder, split, root, "en")
        info = speaker_info(folder)
        for uid, (_, segment) in segments.items():
            segments[uid] = ("dev" if split == "train" and segment.speaker in dev else split,
                             replace(segment, info=dict(info.get(segment.speaker, {}))))
        prep.add_transcribed(segments, read_table(os.path.join(folder, "text")))
