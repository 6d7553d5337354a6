"""The synthetic Mandarin corpus: gcin-voice's recorded syllables and espeak-ng's pinyin voice."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from asr.segments import load_manifest
from data_prep import mandarin
from data_prep.common import CorpusError, prepare_corpus

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and os.path.isdir(mandarin.GCIN_DIR)),
                                reason="espeak-ng or gcin-voice is not installed")


def build(out, *options):
    prepare_corpus("mandarin", ["--out", str(out), "--num-train", "24", "--num-dev", "4", "--num-test", "6"]
                   + [str(o) for o in options])
    splits = {split: load_manifest(str(out / f"{split}.jsonl")) for split in ("train", "dev", "test")
              if (out / f"{split}.jsonl").exists()}
    sources = {split: [json.loads(line) for line in open(out / f"{split}.sources.jsonl", encoding="utf-8")]
               for split in splits}
    return splits, sources


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("mandarin")
    return out, *build(out)


def digest(folder):
    return {p: hashlib.sha256(open(os.path.join(folder, p), "rb").read()).hexdigest()
            for p in sorted(os.listdir(folder))}


def test_same_seed_gives_the_same_files_and_another_seed_other_ones(corpus, tmp_path):
    out, splits, _ = corpus
    again, _ = build(tmp_path / "again")
    assert [s.text for s in again["train"]] == [s.text for s in splits["train"]]
    assert digest(tmp_path / "again" / "audio" / "train") == digest(out / "audio" / "train")
    other, _ = build(tmp_path / "other", "--seed", 1)
    assert [s.text for s in other["train"]] != [s.text for s in splits["train"]]


def test_transcripts_are_chinese_characters_and_no_sentence_is_in_two_splits(corpus):
    _, splits, _ = corpus
    texts = {split: {s.text for s in segments} for split, segments in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    for segments in splits.values():
        for s in segments:
            assert s.lang == "zh" and s.text and all("\u4e00" <= ch <= "\u9fff" for ch in s.text), s.text
            audio, rate = sf.read(s.path)
            assert rate == 16000 and audio.ndim == 1 and abs(len(audio) / rate - s.duration) < 1e-3
            assert 0.01 < np.sqrt(np.mean(audio ** 2)) < 0.2  # -40 to -14 dBFS: levelled, never clipped
            assert np.abs(audio).max() < 1.0


def test_what_is_said_is_the_transcript(corpus):
    """gcin takes are the recordings of the transcript's syllables in order, one voice throughout; espeak-ng
    takes are given exactly the transcript's pinyin, and its test split uses variants train never does."""
    _, splits, sources = corpus
    voices = {split: {s.speaker for s in segments} for split, segments in splits.items()}
    assert {"gcin:3", "gcin:5"} <= voices["train"] and any(v.startswith("espeak-ng:") for v in voices["train"])
    espeak = {split: {v for v in vs if v.startswith("espeak-ng:")} for split, vs in voices.items()}
    assert not espeak["test"] & (espeak["train"] | espeak["dev"])
    for split, segments in splits.items():
        for segment, source in zip(segments, sources[split]):
            assert source["id"] == segment.id
            spoken = source["sources"]
            assert spoken["pinyin"] == " ".join(mandarin.pinyin([segment.text]))
            if segment.speaker.startswith("gcin:"):
                voice = segment.speaker.split(":")[1]
                names = [mandarin.gcin_names(b) for b in mandarin.bopomofo([segment.text])]
                recordings = [r["recording"] for r in spoken["syllables"]]
                assert len(recordings) == len(segment.text)
                assert all(r.split("/")[0] in n and r.endswith(f"/{voice}.ogg") for r, n in zip(recordings, names))
                starts = [r["start"] for r in spoken["syllables"]]
                assert starts == sorted(starts) and starts[-1] < segment.duration * 16000
            else:
                assert spoken["command"][-1] == spoken["pinyin"]
                assert spoken["command"][2] == segment.speaker.split(":")[1]


def test_tone_sandhi_and_gcin_names():
    assert mandarin.pinyin(["你好", "一个"]) == ["ni2", "hao3", "yi2", "ge4"]
    assert mandarin.gcin_names("ㄏㄠˇ") == ["ㄏㄠ3"]
    assert mandarin.gcin_names("ㄊㄧㄢ") == ["ㄊㄧㄢ"]  # first tone: no digit
    assert mandarin.gcin_names("ㄇㄣ˙")[:2] == ["ㄇㄣ1", "ㄇㄣ"]  # neutral: 1, else the syllable's other tones


def test_sentences_file_spells_numbers_and_skips_what_is_not_chinese(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("我 有 3 个 苹果\n我 有 3 个 苹果\nhello world\n今天 天气 很 好\n明天 见\n", encoding="utf-8")
    splits, _ = build(tmp_path / "out", "--sentences", sentences, "--num-train", 2, "--num-dev", 0, "--num-test", 1)
    texts = sorted(s.text for segments in splits.values() for s in segments)
    assert texts == sorted(["我有三个苹果", "今天天气很好", "明天见"])


def test_bad_counts_fail_with_one_line(tmp_path):
    with pytest.raises(CorpusError, match="all 0"):
        prepare_corpus("mandarin", ["--out", str(tmp_path), "--num-train", "0", "--num-dev", "0", "--num-test", "0"])
