import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_cli import main
from asr.data import load_manifest
from data_prep.common import CorpusError, Download, download, extract
from data_prep.folder import split_of

ROOT = Path(__file__).resolve().parents[1]
LIBRI_TEXT = ("IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS NOR OF THE CIRCUMSTANCES "
              "WHICH LED ME TO LEAVE MY NATIVE COUNTRY THE NARRATIVE WOULD BE TEDIOUS TO HIM AND PAINFUL TO MYSELF")


def prep(corpus, corpus_dir, out, *options):
    argv = ["prep", corpus, "--out", str(out)] + (["--corpus-dir", str(corpus_dir)] if corpus_dir else [])
    return main(argv + [str(o) for o in options])


def manifests(out):
    return {split: load_manifest(str(out / f"{split}.jsonl"))
            for split in ("train", "dev", "test") if (out / f"{split}.jsonl").exists()}


def copy(source, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return shutil.copy(source, path)


def tone(path, seconds=0.5, sr=16000, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, **kwargs)
    return path


@pytest.fixture(scope="module")
def fsdd(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdd")
    assert prep("fsdd", shared_data / "fsdd", out) == 0
    return manifests(out)


def test_fsdd_official_split_by_take(fsdd):
    assert (len(fsdd["train"]), len(fsdd["dev"]), len(fsdd["test"])) == (2000, 250, 250)
    takes = {split: {int(u.id.rsplit("_", 1)[1]) for u in utts} for split, utts in fsdd.items()}
    assert takes["test"] == set(range(5)) and takes["dev"] == set(range(5, 10))
    assert takes["train"] == set(range(10, 50))
    assert {u.speaker for u in fsdd["test"]} == {"george", "jackson", "lucas", "nicolas", "yweweler"}


def test_fsdd_text_speaker_and_header_duration(fsdd, shared_data):
    utt = next(u for u in fsdd["train"] if u.id == "7_jackson_32")
    assert (utt.text, utt.speaker, utt.lang) == ("seven", "jackson", "en")
    assert utt.duration == pytest.approx(sf.info(str(shared_data / "fsdd/recordings/7_jackson_32.wav")).duration, abs=1e-4)
    assert {u.text for u in fsdd["test"]} == {"zero", "one", "two", "three", "four", "five", "six", "seven",
                                              "eight", "nine"}


def test_yesno_kaldi_split_first_half_train(shared_data, tmp_path):
    assert prep("yesno", shared_data / "yesno", tmp_path) == 0
    splits = manifests(tmp_path)
    assert set(splits) == {"train", "test"}
    names = sorted(p.stem for p in (shared_data / "yesno/waves_yesno").glob("*.wav"))
    assert [u.id for u in splits["train"]] == names[:30]
    assert [u.id for u in splits["test"]] == names[30:]
    first = splits["train"][0]
    assert (first.id, first.text) == ("0_0_0_0_1_1_1_1", "no no no no yes yes yes yes")


def test_yesno_accepts_the_waves_folder_itself_and_rerun_is_identical(shared_data, tmp_path):
    assert prep("yesno", shared_data / "yesno/waves_yesno", tmp_path) == 0
    before = (tmp_path / "test.jsonl").read_bytes()
    assert prep("yesno", shared_data / "yesno", tmp_path) == 0
    assert (tmp_path / "test.jsonl").read_bytes() == before
    assert not list(tmp_path.glob(".tmp-*"))


def test_an4_from_archive(shared_data, tmp_path, capsys):
    assert prep("an4", shared_data / "mini_an4/downloads.tar.gz", tmp_path / "out") == 0
    assert "skipped 1 (no transcript): cen7-fash-b" in capsys.readouterr().out
    splits = manifests(tmp_path / "out")
    assert (len(splits["train"]), len(splits["test"])) == (5, 2) and "dev" not in splits
    test = {u.id: u for u in splits["test"]}
    assert test["cen8-fcaw-b"].text == "ELEVEN TWENTY SEVEN FIFTY SEVEN"
    assert test["cen8-fcaw-b"].speaker == "fcaw"
    assert test["cen8-fcaw-b"].duration == pytest.approx(2.9)
    assert {u.text for u in splits["train"]} >= {"YES", "GO", "MARCH THIRD NINETEEN TWENTY EIGHT"}
    assert all(u.path.startswith(str(tmp_path / "out" / "downloads")) for u in splits["train"])


def librispeech_tree(shared_data, root):
    chapter = root / "LibriSpeech/train-clean-100/2412/153948"
    copy(shared_data / "clips/en/lhotse_2412-153948-0000.flac", chapter / "2412-153948-0000.flac")
    (chapter / "2412-153948.trans.txt").write_text(
        f"2412-153948-0000 {LIBRI_TEXT}\n2412-153948-0001 A LINE WITHOUT AUDIO\n")
    for subset, speaker in (("dev-clean", "84"), ("test-clean", "1089")):
        folder = root / f"LibriSpeech/{subset}/{speaker}/121123"
        for n in range(2):
            tone(folder / f"{speaker}-121123-000{n}.flac", seconds=0.5 + n, format="FLAC")
        (folder / f"{speaker}-121123.trans.txt").write_text(
            f"{speaker}-121123-0000 GO DO YOU HEAR\n{speaker}-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    return root


def test_librispeech_subsets_map_to_splits(shared_data, tmp_path, capsys):
    corpus = librispeech_tree(shared_data, tmp_path / "corpus")
    assert prep("librispeech", corpus, tmp_path / "out") == 0
    assert "skipped 1 (no audio): 2412-153948-0001" in capsys.readouterr().out
    splits = manifests(tmp_path / "out")
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [1, 2, 2]
    train = splits["train"][0]
    assert (train.id, train.speaker, train.text) == ("2412-153948-0000", "2412", LIBRI_TEXT)
    assert train.duration == pytest.approx(11.66, abs=1e-3)
    assert [u.duration for u in splits["dev"]] == [0.5, 1.5]


def test_librispeech_missing_subset_is_an_error(shared_data, tmp_path, capsys):
    corpus = librispeech_tree(shared_data, tmp_path / "corpus")
    assert prep("librispeech", corpus / "LibriSpeech", tmp_path / "out", "--dev", "dev-clean,dev-other") == 1
    assert "has no subset dev-other (it has: dev-clean, test-clean, train-clean-100)" in capsys.readouterr().err


def test_aishell_with_per_speaker_archives(shared_data, tmp_path, capsys):
    base = tmp_path / "corpus/data_aishell"
    copy(shared_data / "clips/zh/wenet_aishell-BAC009S0724W0121.wav", base / "wav/train/S0724/BAC009S0724W0121.wav")
    tone(base / "wav/train/S0724/BAC009S0724W0999.wav")  # no transcript, as some AISHELL files
    tone(base / "wav/dev/S0724/BAC009S0724W0122.wav", seconds=0.75)
    speaker_audio = copy(shared_data / "clips/zh/fireredasr_BAC009S0764W0121.wav", tmp_path / "a.wav")
    with tarfile.open(base / "wav/S0764.tar.gz", "w:gz") as tar:
        tar.add(speaker_audio, "test/S0764/BAC009S0764W0121.wav")
    (base / "transcript").mkdir()
    (base / "transcript/aishell_transcript_v0.8.txt").write_text(
        "BAC009S0724W0121 广州市 房地产 中介 协会 分析\nBAC009S0724W0122 而 对 楼市 成交 抑制 作用 最 大\n"
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n", encoding="utf-8")
    before = sorted(p.name for p in base.rglob("*"))
    assert prep("aishell", tmp_path / "corpus", tmp_path / "out") == 0
    assert "skipped 1 (no transcript): BAC009S0724W0999" in capsys.readouterr().out
    assert sorted(p.name for p in base.rglob("*")) == before  # nothing unpacked into the corpus
    splits = manifests(tmp_path / "out")
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [1, 1, 1]
    assert (splits["train"][0].text, splits["train"][0].lang) == ("广州市房地产中介协会分析", "zh")
    test = splits["test"][0]
    assert (test.text, test.speaker) == ("甚至出现交易几乎停滞的情况", "S0764")
    assert test.path == str(tmp_path / "out/downloads/aishell_wav/test/S0764/BAC009S0764W0121.wav")
    assert test.duration == pytest.approx(4.2039, abs=1e-3)


def test_commonvoice_tsv_splits_and_client_speakers(tmp_path):
    lang_dir = tmp_path / "cv-corpus-17.0/en"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\n"
    rows = {"train": [("aa11", "common_voice_en_1.mp3", "Hello there."), ("bb22", "common_voice_en_2.mp3", "Good day")],
            "dev": [("cc33", "common_voice_en_3.mp3", "Dev sentence")],
            "test": [("dd44", "common_voice_en_4.mp3", "")]}  # an empty sentence is left out
    for split, entries in rows.items():
        for _, name, _ in entries:
            tone(lang_dir / "clips" / name, seconds=1.0, format="MP3")
        lines = "".join(f"{c}\t{p}\t{s}\t2\t0\n" for c, p, s in entries)
        (lang_dir / f"{split}.tsv").write_text(header + lines)
    assert prep("commonvoice", tmp_path / "cv-corpus-17.0", tmp_path / "out", "--lang", "en") == 0
    splits = manifests(tmp_path / "out")
    assert {s: len(u) for s, u in splits.items()} == {"train": 2, "dev": 1}
    first = splits["train"][0]
    assert (first.id, first.speaker, first.text, first.lang) == ("common_voice_en_1", "aa11", "Hello there.", "en")
    assert first.duration == pytest.approx(1.0, abs=0.06)


def test_commonvoice_is_never_downloaded(tmp_path, capsys):
    assert prep("commonvoice", None, tmp_path, "--lang", "en") == 1
    assert "needs a login" in capsys.readouterr().err


def kaldi_dir(folder, wav, pipe=None):
    folder.mkdir(parents=True)
    scp = f"rec1 {wav}\n" + (f"rec2 {pipe} |\n" if pipe else "")
    (folder / "wav.scp").write_text(scp)
    (folder / "segments").write_text("utt1 rec1 0.00 0.40\nutt2 rec1 0.40 -1\nutt3 rec1 5.0 6.0\n"
                                     + ("utt4 rec2 0 -1\n" if pipe else ""))
    (folder / "text").write_text("utt1 HELLO\nutt2 WORLD\nutt3 PAST THE END\nutt4 PIPED\n")
    (folder / "utt2spk").write_text("utt1 spk1\nutt2 spk1\nutt3 spk1\nutt4 spk2\n")
    return folder


def test_kaldi_segments_and_rejected_pipe(tmp_path, capsys):
    wav = tone(tmp_path / "rec1.wav", seconds=1.0)
    data = kaldi_dir(tmp_path / "data/train", wav, pipe=f"cat {tone(tmp_path / 'rec2.wav', seconds=0.3)}")
    assert prep("kaldi", data, tmp_path / "out") == 1
    error = capsys.readouterr().err.strip()
    assert "recording rec2 is a command" in error and "--allow-pipes" in error and "\n" not in error

    assert prep("kaldi", tmp_path / "data", tmp_path / "out", "--allow-pipes") == 0
    assert "skipped 1 (segment outside its recording): utt3" in capsys.readouterr().out
    train = {u.id: u for u in manifests(tmp_path / "out")["train"]}
    assert (train["utt1"].offset, train["utt1"].duration, train["utt1"].speaker) == (0.0, 0.4, "spk1")
    assert (train["utt2"].offset, train["utt2"].duration, train["utt2"].text) == (0.4, 0.6, "WORLD")
    assert train["utt2"].load(16000).shape == (9600,)
    assert train["utt4"].path == str(tmp_path / "out/audio/train/rec2.wav")
    assert (train["utt4"].duration, train["utt4"].speaker) == (0.3, "spk2")


def test_kaldi_single_dir_goes_to_the_named_split(tmp_path):
    data = kaldi_dir(tmp_path / "dev_set", tone(tmp_path / "rec1.wav", seconds=1.0))
    assert prep("kaldi", data, tmp_path / "out", "--split", "dev") == 0
    assert [u.id for u in manifests(tmp_path / "out")["dev"]] == ["utt1", "utt2"]


def test_kaldi_root_resolves_relative_wav_scp_paths(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    tone(corpus / "audio/rec1.wav", seconds=1.0)
    data = kaldi_dir(corpus / "data", "audio/rec1.wav")
    assert prep("kaldi", data, tmp_path / "out", "--root", corpus) == 0
    assert {u.path for u in manifests(tmp_path / "out")["train"]} == {str(corpus / "audio/rec1.wav")}
    monkeypatch.chdir(corpus)  # without --root, from the current directory as in Kaldi
    assert prep("kaldi", data, tmp_path / "cwd") == 0
    assert [u.duration for u in manifests(tmp_path / "cwd")["train"]] == [0.4, 0.6]


def test_folder_transcripts_speakers_and_corrupt_files(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    tone(corpus / "alice/a1.wav", seconds=0.5)
    (corpus / "alice/a1.txt").write_text("hello\nworld\n")
    tone(corpus / "bob/b1.flac", seconds=0.25, format="FLAC")
    (corpus / "bob/b1.lab").write_text("good morning")
    tone(corpus / "top.wav")
    (corpus / "bob/broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    (corpus / "bob/broken.txt").write_text("never read")
    assert prep("folder", corpus, tmp_path / "out", "--split", "train") == 0
    printed = capsys.readouterr().out
    assert "skipped 1 (no transcript): top" in printed
    assert re.search(r"skipped 1 \(unreadable audio\): .*broken\.wav", printed)
    train = manifests(tmp_path / "out")["train"]
    assert [(u.id, u.speaker, u.text, u.duration) for u in train] == [
        ("alice/a1", "alice", "hello world", 0.5), ("bob/b1", "bob", "good morning", 0.25)]


def test_folder_hash_split_is_stable_and_proportional():
    ids = [f"speaker{i % 7}/utt{i}" for i in range(2000)]
    splits = [split_of(uid, 0.1, 0.2) for uid in ids]
    assert splits == [split_of(uid, 0.1, 0.2) for uid in ids]
    assert splits.count("dev") == pytest.approx(200, abs=45) and splits.count("test") == pytest.approx(400, abs=60)
    assert split_of("speaker0/utt0", 0.0, 0.0) == "train"


def crafted_tar(path, name, kind=tarfile.REGTYPE, linkname=""):
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("corpus/ok.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        evil = tarfile.TarInfo(name)
        evil.type, evil.linkname = kind, linkname
        evil.size = 4 if kind == tarfile.REGTYPE else 0
        tar.addfile(evil, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("name,kind,linkname", [
    ("../escaped.txt", tarfile.REGTYPE, ""),
    ("corpus/../../escaped.txt", tarfile.REGTYPE, ""),
    ("/tmp/escaped-absolute.txt", tarfile.REGTYPE, ""),
    ("corpus/link", tarfile.SYMTYPE, "/etc/passwd"),
    ("corpus/link", tarfile.SYMTYPE, "../../escaped.txt"),
    ("corpus/hard", tarfile.LNKTYPE, "../escaped.txt"),
    ("corpus/fifo", tarfile.FIFOTYPE, ""),
])
def test_extract_refuses_members_escaping_the_folder(tmp_path, name, kind, linkname):
    archive = crafted_tar(tmp_path / "evil.tar", name, kind, linkname)
    target = tmp_path / "nested/target"
    with pytest.raises(CorpusError, match=r"evil\.tar: member .* refusing to unpack it"):
        extract(str(archive), str(target))
    assert not target.exists()  # refused before anything was written
    assert not (tmp_path / "nested/escaped.txt").exists() and not Path("/tmp/escaped-absolute.txt").exists()


def test_extract_keeps_links_inside_and_runs_once(tmp_path):
    archive = crafted_tar(tmp_path / "fine.tar", "corpus/alias.txt", tarfile.SYMTYPE, "ok.txt")
    extract(str(archive), str(tmp_path / "out"))
    assert (tmp_path / "out/corpus/alias.txt").read_text() == "ok"
    (tmp_path / "out/corpus/ok.txt").write_text("changed")
    extract(str(archive), str(tmp_path / "out"))  # already done: not unpacked again
    assert (tmp_path / "out/corpus/ok.txt").read_text() == "changed"


def test_download_verifies_checksum(tmp_path, capsys):
    source = tmp_path / "corpus.tar.gz"
    source.write_bytes(b"pretend archive bytes")
    url = source.as_uri()
    wrong = Download(url, "md5:" + "0" * 32)
    with pytest.raises(CorpusError, match="does not match its published md5"):
        download(wrong, str(tmp_path / "dl"))
    assert os.listdir(tmp_path / "dl") == []  # neither the file nor a .part is left
    right = Download(url, "sha256:" + hashlib.sha256(b"pretend archive bytes").hexdigest())
    assert download(right, str(tmp_path / "dl")) == str(tmp_path / "dl/corpus.tar.gz")
    assert (tmp_path / "dl/corpus.tar.gz").read_bytes() == b"pretend archive bytes"
    unpinned = download(Download(url), str(tmp_path / "dl2"))
    assert "no published checksum" in capsys.readouterr().err and os.path.exists(unpinned)


def test_download_unpack_and_prepare_when_no_corpus_dir(shared_data, tmp_path, monkeypatch):
    names = ["0_0_0_0_1_1_1_1", "0_0_0_1_0_0_0_1", "1_1_1_0_1_0_1_0", "1_1_1_1_1_1_1_1"]
    archive = tmp_path / "waves_yesno.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in names[:3]:
            tar.add(shared_data / f"yesno/waves_yesno/{name}.wav", f"waves_yesno/{name}.wav")
        tar.add(tone(tmp_path / "ones.wav", seconds=0.5, sr=8000), f"waves_yesno/{names[3]}.wav")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr("data_prep.yesno.downloads", lambda options: [Download(archive.as_uri(), "md5:" + md5)])
    assert prep("yesno", None, tmp_path / "out") == 0
    splits = manifests(tmp_path / "out")
    assert [u.id for u in splits["train"]] == names[:2] and [u.id for u in splits["test"]] == names[2:]
    assert splits["test"][1].text == "yes yes yes yes yes yes yes yes" and splits["test"][1].duration == 0.5
    assert (tmp_path / "out/downloads/waves_yesno.tar.gz").exists()
    assert splits["train"][0].path == str(tmp_path / "out/downloads/waves_yesno/0_0_0_0_1_1_1_1.wav")


def test_not_a_tar_archive(shared_data, tmp_path, capsys):
    assert prep("fsdd", shared_data / "README.md", tmp_path / "out") == 1
    assert capsys.readouterr().err == f"asr prep: error: {shared_data / 'README.md'}: not a tar archive, or a damaged one\n"


def test_missing_corpus_dir_is_one_line_error(tmp_path, capsys):
    assert prep("fsdd", tmp_path / "nowhere", tmp_path / "out") == 1
    assert capsys.readouterr().err == f"asr prep: error: {tmp_path / 'nowhere'}: no such file or directory\n"
    assert prep("fsdd", tmp_path, tmp_path / "out") == 1  # a folder without recordings/
    assert "no recordings in it or below it" in capsys.readouterr().err
    assert prep("kaldi", None, tmp_path / "out") == 1
    assert "kaldi cannot be downloaded: pass --corpus-dir" in capsys.readouterr().err


def test_cli_subprocess_bad_corpus_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "asr_cli", "prep", "an4", "--corpus-dir", str(tmp_path / "none"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"asr prep: error: {tmp_path / 'none'}: no such file or directory"]
    assert not (tmp_path / "out").exists()


def test_clips_table_becomes_a_test_split_per_language(shared_data, tmp_path):
    assert prep("clips", shared_data / "clips", tmp_path / "all") == 0
    everything = manifests(tmp_path / "all")
    assert list(everything) == ["test"] and len(everything["test"]) == 20
    assert prep("clips", shared_data / "clips", tmp_path / "en", "--lang", "en") == 0
    english = manifests(tmp_path / "en")["test"]
    assert len(english) == 13 and {s.lang for s in english} == {"en"}
    jfk = next(s for s in english if s.id.endswith("jfk"))
    assert jfk.text.lower().startswith("and so my fellow americans") and 10 < jfk.duration < 12


def _cv_release(top, languages, locale_column=True):
    """A Common Voice release folder: one clip and a train.tsv per language."""
    for lang in languages:
        tone(top / lang / "clips" / f"common_voice_{lang}_1.mp3", seconds=1.0, format="MP3")
        header, row = "client_id\tpath\tsentence", f"aa11\tcommon_voice_{lang}_1.mp3\tHello there."
        if locale_column:
            header, row = header + "\tlocale", row + f"\t{lang}"
        (top / lang / "train.tsv").write_text(f"{header}\n{row}\n")
    return top


@pytest.mark.parametrize("languages, locale_column, corpus_dir, expected", [
    (["en"], False, "cv-corpus-17.0-2024-03-15", "en"),  # from the folder's name
    (["zh-CN"], False, "cv-corpus-17.0-2024-03-15/zh-CN", "zh-CN"),
    (["en", "fr"], True, "cv-corpus-17.0-2024-03-15/fr", "fr"),  # the language folder given: the others do not matter
])
def test_commonvoice_language_is_read_from_the_corpus(tmp_path, languages, locale_column, corpus_dir, expected):
    _cv_release(tmp_path / "cv-corpus-17.0-2024-03-15", languages, locale_column)
    assert prep("commonvoice", tmp_path / corpus_dir, tmp_path / "out") == 0
    [utterance] = manifests(tmp_path / "out")["train"]
    assert utterance.lang == expected and utterance.id == f"common_voice_{expected}_1"


def test_commonvoice_locale_column_names_the_language_of_a_folder_named_otherwise(tmp_path):
    release = _cv_release(tmp_path / "release", ["de"])
    os.rename(release / "de", release / "my copy")
    assert prep("commonvoice", release, tmp_path / "out") == 0
    assert manifests(tmp_path / "out")["train"][0].lang == "de"
    assert prep("commonvoice", release, tmp_path / "out2", "--lang", "de-DE") == 0  # --lang has the last word
    assert manifests(tmp_path / "out2")["train"][0].lang == "de-DE"


@pytest.mark.parametrize("languages, locale_column, rename, message", [
    (["en", "fr"], True, None, "holds 2 languages (en, fr): pass --lang"),
    (["en"], False, "my copy", "no locale column, and my copy/ is not named after a language: pass --lang"),
])
def test_commonvoice_language_that_cannot_be_told_is_one_line(tmp_path, capsys, languages, locale_column, rename,
                                                              message):
    release = _cv_release(tmp_path / "release", languages, locale_column)
    if rename:
        os.rename(release / languages[0], release / rename)
    assert prep("commonvoice", release, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


NEEDS_CORPUS = ("aishell", "an4", "clips", "commonvoice", "folder", "fsdd", "fsdd_connected", "kaldi", "librispeech",
                "speechocean762", "yesno")


@pytest.fixture(scope="module")
def not_corpora(shared_data, tmp_path_factory):
    """What a user may hand to `asr prep` by mistake: an empty folder, another corpus (a few FSDD
    recordings; yesno's for the FSDD recipes), and an archive cut short by an interrupted download."""
    top = tmp_path_factory.mktemp("not_corpora")
    (top / "empty").mkdir()
    for name in ("1_george_10", "2_jackson_11", "3_lucas_12"):
        copy(shared_data / "fsdd" / "recordings" / f"{name}.wav", top / "fsdd" / "recordings" / f"{name}.wav")
    for name in sorted(os.listdir(shared_data / "yesno" / "waves_yesno"))[:3]:
        copy(shared_data / "yesno" / "waves_yesno" / name, top / "yesno" / "waves_yesno" / name)
    with tarfile.open(top / "whole.tar.gz", "w:gz") as tar:
        tar.add(top / "fsdd", arcname="fsdd")
    whole = (top / "whole.tar.gz").read_bytes()
    (top / "truncated.tar.gz").write_bytes(whole[:len(whole) // 2])
    return top


@pytest.mark.parametrize("given", ["empty", "other_corpus", "truncated.tar.gz"])
@pytest.mark.parametrize("corpus", NEEDS_CORPUS)
def test_prep_of_what_is_not_the_corpus_is_one_line_and_exit_1(corpus, given, not_corpora, tmp_path, capsys):
    import importlib

    from data_prep import CORPORA
    from data_prep.common import needs_corpus

    assert {c for c in CORPORA if needs_corpus(importlib.import_module(f"data_prep.{c}"))} == set(NEEDS_CORPUS)
    if given == "other_corpus":
        given = "yesno" if corpus.startswith("fsdd") else "fsdd"
    before = sorted(str(p.relative_to(not_corpora)) for p in not_corpora.rglob("*"))
    assert prep(corpus, not_corpora / given, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.startswith("asr prep: error: ") and err.count("\n") == 1, err
    assert str(not_corpora / given) in err, err  # the folder or archive named
    assert sorted(str(p.relative_to(not_corpora)) for p in not_corpora.rglob("*")) == before
    assert not any(p.is_file() and p.suffix == ".jsonl" for p in (tmp_path / "out").rglob("*"))


def test_an_interrupted_download_is_resumed_and_never_used_half_written(tmp_path):
    """A local HTTP server that honours Range and cuts the first transfer off half-way."""
    import http.server
    import threading

    payload = os.urandom(300_000)
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
            requests.append(start)
            body = payload[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if len(requests) == 1 else body)  # the first is cut short

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        item = Download(f"http://127.0.0.1:{server.server_port}/corpus.tar.gz",
                        "sha256:" + hashlib.sha256(payload).hexdigest())
        with pytest.raises(CorpusError, match="run again to resume"):
            download(item, str(tmp_path / "dl"))
        assert os.listdir(tmp_path / "dl") == ["corpus.tar.gz.part"]  # no file under the final name
        assert download(item, str(tmp_path / "dl")) == str(tmp_path / "dl/corpus.tar.gz")
        assert requests == [0, len(payload) // 2]  # resumed where the first transfer stopped
        assert (tmp_path / "dl/corpus.tar.gz").read_bytes() == payload and os.listdir(tmp_path / "dl") == ["corpus.tar.gz"]
    finally:
        server.shutdown()
