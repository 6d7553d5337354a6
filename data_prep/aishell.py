"""AISHELL-1 (Mandarin read speech, OpenSLR 33): data_aishell/wav/{train,dev,test}/<speaker>/*.wav
and data_aishell/transcript/aishell_transcript_v0.8.txt ("BAC009S0002W0122 而 对 楼市 ..."; the
word-segmenting spaces are removed). The official train/dev/test split is kept; recordings without
a transcript (the corpus has some) are left out and counted.

As distributed, data_aishell/wav/ holds one .tar.gz per speaker: these are unpacked into
--download-dir/aishell_wav/, never into the corpus folder. --corpus-dir is the folder holding
data_aishell/, data_aishell/ itself, or data_aishell.tgz."""
import glob
import os
from typing import List

from asr.segments import Segment

from .common import SPLITS, Download, Prep, extract, find_root, read_table

TRANSCRIPT = os.path.join("transcript", "aishell_transcript_v0.8.txt")


def downloads(options):
    return [Download("https://www.openslr.org/resources/33/data_aishell.tgz", "md5:2f494334227864a8a8fec932999db9d8")]


def wav_folders(prep: Prep, base: str) -> List[str]:
    """data_aishell/wav, and the folder its per-speaker archives are unpacked into if it has any."""
    archives = sorted(glob.glob(os.path.join(base, "wav", "*.tar.gz")))
    unpacked = os.path.join(prep.download_dir, "aishell_wav")
    for archive in archives:
        extract(archive, unpacked)
    return [os.path.join(base, "wav")] + ([unpacked] if archives else [])


def prepare(prep: Prep) -> None:
    base = os.path.join(find_root(prep.corpus_dir, "data_aishell/transcript"), "data_aishell")
    texts = {uid: "".join(text.split()) for uid, text in read_table(os.path.join(base, TRANSCRIPT)).items()}
    clips = {}
    for folder in wav_folders(prep, base):
        for split in SPLITS:
            for path in sorted(glob.glob(os.path.join(folder, split, "*", "*.wav"))):
                speaker = os.path.basename(os.path.dirname(path))
                uid = os.path.splitext(os.path.basename(path))[0]
                clips[uid] = (split, Segment(uid, path, speaker=speaker, lang="zh"))
    prep.add_transcribed(clips, texts)
