"""Kaldi's yes/no corpus (OpenSLR 1): waves_yesno/*.wav, one speaker saying eight words, each
"yes" or "no", spelled by the file name (0_1_1_0_0_1_1_0.wav is "no yes yes no no yes yes no").

The split is Kaldi's (egs/yesno/s5/local/create_yesno_waves_test_train.pl): of the sorted file
list the first half is train and the second half test, 30 and 30. (lhotse alternates files
instead, so its numbers are not comparable.) There is no dev set, and with 30 training files none
is carved. --corpus-dir is the folder holding waves_yesno/, waves_yesno/ itself, or the archive."""
import glob
import os
import re

from asr.segments import Segment

from .common import Download, Prep, find_root

WORDS = {"0": "no", "1": "yes"}
SPEAKER = "global"  # one speaker, named as in Kaldi's recipe
_NAME = re.compile(r"[01](_[01]){7}")


def downloads(options):
    return [Download("https://www.openslr.org/resources/1/waves_yesno.tar.gz", "md5:962ff6e904d2df1126132ecec6978786")]


def prepare(prep: Prep) -> None:
    folder = os.path.join(find_root(prep.corpus_dir, "waves_yesno"), "waves_yesno")
    names = []
    for path in sorted(glob.glob(os.path.join(folder, "*.wav"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if _NAME.fullmatch(name):
            names.append(name)
        else:
            prep.skip("name is not eight 0/1 words", name)
    for index, name in enumerate(names):
        split = "train" if index < len(names) // 2 else "test"
        text = " ".join(WORDS[word] for word in name.split("_"))
        prep.add(split, Segment(name, os.path.join(folder, name + ".wav"), text=text, speaker=SPEAKER, lang="en"))
