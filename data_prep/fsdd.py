"""Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{take}.wav, English digits at 8 kHz.

Split by take, as the dataset's README prescribes: takes 0-4 are the test set, the rest train.
Dev is the next --dev-takes takes (5-9 by default), carved from train by take rather than at
random, so it has every speaker and digit and is the same on every run. --corpus-dir is the
dataset's folder (holding recordings/) or its release archive. The transcript is the digit
spelled out ("seven")."""
import glob
import os
import re

from asr.segments import Segment

from .common import CorpusError, Download, Prep, find_root

TEST_TAKES = 5
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RECORDING_NAME = re.compile(r"(\d)_([^_]+)_(\d+)")


def add_args(parser) -> None:
    parser.add_argument("--dev-takes", type=int, default=5,
                        help="how many takes after the test ones form dev (default 5: takes 5-9; 0: no dev)")


def downloads(options):
    # GitHub builds tag archives on request and does not promise stable bytes: no checksum to pin.
    return [Download("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz")]


def split_of(take: int, dev_takes: int) -> str:
    if take < TEST_TAKES:
        return "test"
    return "dev" if take < TEST_TAKES + dev_takes else "train"


def prepare(prep: Prep) -> None:
    if prep.options.dev_takes < 0:
        raise CorpusError(f"--dev-takes must be 0 or more, not {prep.options.dev_takes}")
    folder = os.path.join(find_root(prep.corpus_dir, "recordings"), "recordings")
    for path in sorted(glob.glob(os.path.join(folder, "*.wav"))):
        name = os.path.splitext(os.path.basename(path))[0]
        match = RECORDING_NAME.fullmatch(name)
        if match is None:
            prep.skip("name is not {digit}_{speaker}_{take}", name)
            continue
        digit, speaker, take = match.groups()
        prep.add(split_of(int(take), prep.options.dev_takes),
                 Segment(name, path, text=DIGITS[int(digit)], speaker=speaker, lang="en"))
