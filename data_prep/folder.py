"""Any folder tree of audio files (.wav .flac .ogg .sph .mp3 .opus), each with a transcript of the
same name ending in .txt or .lab. The id is the file's path below --corpus-dir without its
extension; the speaker is the name of the folder holding the file (none for files at the top).

Splits are drawn by a hash of the id, so they are the same on every run and machine and adding
files never moves old ones: --dev-fraction and --test-fraction of the files (0.1 each by default)
go to dev and test, the rest to train; or --split puts every file in one split."""
import hashlib
import os

from asr.audio import AUDIO_EXTENSIONS

from asr.segments import Segment

from .common import SPLITS, CorpusError, Prep, read_lines

TRANSCRIPT_EXTENSIONS = (".txt", ".lab")


def add_args(parser) -> None:
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="share of files for dev (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of files for test (default 0.1)")
    parser.add_argument("--split", choices=SPLITS, help="put every file in this split instead")
    parser.add_argument("--lang", help="language code stored with each utterance, e.g. en or zh")


def split_of(uid: str, dev_fraction: float, test_fraction: float) -> str:
    position = int(hashlib.sha256(uid.encode("utf-8")).hexdigest()[:12], 16) / 16 ** 12  # uniform in [0, 1)
    if position < test_fraction:
        return "test"
    return "dev" if position < test_fraction + dev_fraction else "train"


def transcript_of(stem_path: str) -> str:
    for extension in TRANSCRIPT_EXTENSIONS:
        if os.path.isfile(stem_path + extension):
            return " ".join(read_lines(stem_path + extension))
    return ""


def prepare(prep: Prep) -> None:
    options = prep.options
    if not (0 <= options.dev_fraction and 0 <= options.test_fraction and options.dev_fraction + options.test_fraction <= 1):
        raise CorpusError("--dev-fraction and --test-fraction must be 0 or more and add up to at most 1")
    top = os.path.abspath(prep.corpus_dir)
    for folder, subfolders, names in os.walk(top):
        subfolders.sort()
        for name in sorted(names):
            stem, extension = os.path.splitext(name)
            if extension.lower() not in AUDIO_EXTENSIONS:
                continue
            uid = os.path.relpath(os.path.join(folder, stem), top).replace(os.sep, "/")
            text = transcript_of(os.path.join(folder, stem))
            if not text:
                prep.skip("no transcript", uid)
                continue
            split = options.split or split_of(uid, options.dev_fraction, options.test_fraction)
            speaker = os.path.basename(folder) if folder != top else None
            prep.add(split, Segment(uid, os.path.join(folder, name), text=text, speaker=speaker, lang=options.lang))
