"""LibriSpeech (read English audiobooks, OpenSLR 12): LibriSpeech/<subset>/<speaker>/<chapter>/
holds <speaker>-<chapter>-<n>.flac and <speaker>-<chapter>.trans.txt ("UTTID TEXT").

--train, --dev and --test name the subsets of each split (comma-separated; by default
train-clean-100, dev-clean and test-clean; add train-clean-360,train-other-500 for the full 960 h,
dev-other and test-other for the "other" conditions). Only the subsets named are read, and only
they are downloaded when --corpus-dir is left out. --corpus-dir is the folder holding
LibriSpeech/, LibriSpeech/ itself, or one subset's archive."""
import glob
import os
from typing import Dict, List

from asr.segments import Segment

from .common import SPLITS, CorpusError, Download, Prep, find_root, read_table

URL = "https://www.openslr.org/resources/12/{}.tar.gz"
MD5 = {  # openslr.org/resources/12/md5sum.txt
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1", "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9", "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522", "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}


def add_args(parser) -> None:
    for split, default in zip(SPLITS, ("train-clean-100", "dev-clean", "test-clean")):
        parser.add_argument(f"--{split}", default=default, metavar="SUBSETS",
                            help=f"comma-separated subsets for {split} (default {default}; '' for none)")


def subsets(options) -> Dict[str, List[str]]:
    return {split: [name for name in getattr(options, split).split(",") if name] for split in SPLITS}


def downloads(options):
    names = [name for names in subsets(options).values() for name in names]
    unknown = sorted(set(names) - MD5.keys())
    if unknown:
        raise CorpusError(f"unknown LibriSpeech subset {', '.join(unknown)} (known: {', '.join(MD5)})")
    return [Download(URL.format(name), "md5:" + MD5[name]) for name in names]


def prepare(prep: Prep) -> None:
    base = os.path.join(find_root(prep.corpus_dir, "LibriSpeech"), "LibriSpeech")
    clips, texts = {}, {}
    for split, names in subsets(prep.options).items():
        for name in names:
            folder = os.path.join(base, name)
            if not os.path.isdir(folder):
                present = sorted(entry.name for entry in os.scandir(base) if entry.is_dir())
                raise CorpusError(f"{base}: has no subset {name} (it has: {', '.join(present) or 'none'})")
            for path in sorted(glob.glob(os.path.join(folder, "*", "*", "*.flac"))):
                uid = os.path.splitext(os.path.basename(path))[0]
                clips[uid] = (split, Segment(uid, path, speaker=uid.split("-")[0], lang="en"))
            for path in sorted(glob.glob(os.path.join(folder, "*", "*", "*.trans.txt"))):
                texts.update(read_table(path))
    prep.add_transcribed(clips, texts)
