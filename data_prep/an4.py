"""CMU AN4 (census-style alphanumeric speech, 16 kHz NIST SPHERE): wav/an4_clstk/<speaker>/*.sph
is the training set and wav/an4test_clstk/<speaker>/*.sph the test set, transcribed in
etc/an4_train.transcription ("<s> TEXT </s> (uttid)") and etc/an4_test.transcription
("TEXT (uttid)"). AN4 has no dev set and none is carved (ESPnet takes 100 training utterances for
one). Only utterances with both audio and a transcript are kept; the others are counted.
--corpus-dir is the an4 folder, a folder above it, or the archive (unpacked into --download-dir)."""
import glob
import os
import re
from typing import Dict

from asr.segments import Segment

from .common import Download, Prep, find_root, read_lines

SPLITS = {"train": ("an4_clstk", "an4_train.transcription"), "test": ("an4test_clstk", "an4_test.transcription")}
_LINE = re.compile(r"(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\((\S+)\)")


def downloads(options):
    return [Download("http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz")]  # CMU publishes no checksum


def read_transcripts(path: str, prep: Prep) -> Dict[str, str]:
    texts = {}
    for number, line in enumerate(read_lines(path), 1):
        match = _LINE.fullmatch(line.strip())
        if match:
            texts[match.group(2)] = match.group(1)
        elif line.strip():
            prep.skip("transcript line not 'TEXT (uttid)'", f"{path}:{number}")
    return texts


def prepare(prep: Prep) -> None:
    root = find_root(prep.corpus_dir, "etc/an4_train.transcription")
    clips, texts = {}, {}
    for split, (wav_folder, transcript) in SPLITS.items():
        texts.update(read_transcripts(os.path.join(root, "etc", transcript), prep))
        for path in sorted(glob.glob(os.path.join(root, "wav", wav_folder, "*", "*.sph"))):
            speaker = os.path.basename(os.path.dirname(path))
            uid = os.path.splitext(os.path.basename(path))[0]
            clips[uid] = (split, Segment(uid, path, speaker=speaker, lang="en"))
    prep.add_transcribed(clips, texts)
