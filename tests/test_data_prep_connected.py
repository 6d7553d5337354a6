"""The composed and synthesised corpora: fsdd_connected (connected digits from real FSDD takes)
and synth (espeak-ng and flite sentences)."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from asr_cli import main
from asr.data import load_manifest
from data_prep.fsdd import DIGITS
from data_prep.fsdd_connected import trim
from data_prep.synth import VOICES, normalize

CONNECTED_COUNTS = ("--num-train", 40, "--num-dev", 10, "--num-test", 20, "--num-long", 2)
SYNTH_COUNTS = ("--num-train", 16, "--num-dev", 4, "--num-test", 8)
HAVE_SYNTHESISERS = all(shutil.which(tool) for tool in ("espeak-ng", "flite"))
needs_synthesisers = pytest.mark.skipif(not HAVE_SYNTHESISERS, reason="espeak-ng or flite is not installed")


def prep(corpus, out, *options):
    return main(["prep", corpus, "--out", str(out)] + [str(o) for o in options])


def read_corpus(out):
    """split -> (utterances, id -> sources) for every manifest in out."""
    corpus = {}
    for manifest in sorted(out.glob("*.jsonl")):
        if not manifest.name.endswith(".sources.jsonl"):
            lines = (out / f"{manifest.stem}.sources.jsonl").read_text().splitlines()
            sources = {entry["id"]: entry["sources"] for entry in map(json.loads, lines)}
            corpus[manifest.stem] = (load_manifest(str(manifest)), sources)
    return corpus


def snapshot(out):
    """Every file's bytes by relative path, the output folder's own name taken out of the manifests."""
    return {str(path.relative_to(out)): path.read_bytes().replace(str(out).encode(), b"OUT")
            for path in sorted(out.rglob("*")) if path.is_file()}


def correlation(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def connected(shared_data, tmp_path_factory):
    """Two builds with seed 0 (into different folders) and one with seed 1."""
    outs = [tmp_path_factory.mktemp(name) for name in ("connected_a", "connected_b", "connected_seed1")]
    for out, seed in zip(outs, (0, 0, 1)):
        assert prep("fsdd_connected", out, "--corpus-dir", shared_data / "fsdd", "--seed", seed, *CONNECTED_COUNTS) == 0
    return outs


def test_connected_splits_sizes_and_no_recording_in_two_splits(connected):
    corpus = read_corpus(connected[0])
    assert {split: len(utts) for split, (utts, _) in corpus.items()} == {"train": 40, "dev": 10, "test": 20,
                                                                       "dev_long": 2, "test_long": 2}
    recordings = {split: {s["recording"] for entry in sources.values() for s in entry}
                  for split, (_, sources) in corpus.items()}
    takes = {split: {int(name.rsplit("_", 1)[1]) for name in names} for split, names in recordings.items()}
    assert min(takes["train"]) >= 10 and takes["dev"] | takes["dev_long"] <= set(range(5, 10))
    assert takes["test"] | takes["test_long"] <= set(range(5))
    assert not (recordings["train"] | recordings["dev"] | recordings["dev_long"]) & (recordings["test"] |
                                                                                   recordings["test_long"])
    assert not recordings["train"] & recordings["dev"]


def test_connected_transcript_is_what_the_audio_says(connected):
    """Each source's digit is the transcript's word at its place, and the output audio at the
    recorded offset is that recording, trimmed and scaled, with only the faint noise floor added."""
    for split, (utterances, sources) in read_corpus(connected[0]).items():
        for utt in utterances:
            audio, rate = sf.read(utt.path, dtype="float32")
            assert rate == 8000 and utt.duration == pytest.approx(len(audio) / rate, abs=1e-4)
            placed = sources[utt.id]
            assert utt.text.split() == [DIGITS[int(s["recording"].split("_")[0])] for s in placed]
            assert {s["recording"].split("_")[1] for s in placed} == {utt.speaker}
            offsets = [s["offset"] for s in placed]
            ends = [s["offset"] + s["trim"][1] - s["trim"][0] for s in placed]
            assert all(0 <= start - end <= 0.3 * rate for start, end in zip(offsets[1:], ends))  # pauses
            for source in placed:
                start, end = source["trim"]
                original, source_rate = sf.read(source["path"], dtype="float32")
                assert source_rate == rate
                expected = original[start:end] * source["gain"]
                segment = audio[source["offset"]:source["offset"] + end - start]
                assert correlation(segment, expected) > 0.99
                assert np.sqrt(np.mean(expected ** 2)) == pytest.approx(0.05, rel=0.02) or np.abs(expected).max() > 0.98


def test_connected_words_are_timed_where_their_speech_is(connected):
    """Each word's recorded span is where its recording, trimmed by the stated rule (re-derived here
    from the source file), was placed: re-synthesised, it is the output audio there; its first and last
    10 ms are within 40 dB of its loudest; outside every span there is only the noise floor."""
    for split, (utterances, sources) in read_corpus(connected[0]).items():
        for utt in utterances:
            audio, rate = sf.read(utt.path, dtype="float32")
            words = utt.info["words"]
            assert [word for word, _, _ in words] == utt.text.split()
            outside = np.ones(len(audio), dtype=bool)
            for (word, start, end), source in zip(words, sources[utt.id]):
                first, last = round(start * rate), round(end * rate)
                assert (start, end) == (first / rate, last / rate) and first == source["offset"]
                original, _ = sf.read(source["path"], dtype="float32")
                assert list(trim(original, 40.0)) == source["trim"]
                speech = original[slice(*source["trim"])] * source["gain"]
                assert last - first == len(speech) and correlation(audio[first:last], speech) > 0.99
                energy = np.square(np.pad(speech, (0, -len(speech) % 80)).reshape(-1, 80)).mean(axis=1)
                assert min(energy[0], energy[-1]) >= 1e-4 * energy.max()
                outside[first:last] = False
            assert np.sqrt(np.mean(np.square(audio[outside]))) < 0.0015  # the noise floor is 0.001


def test_connected_digit_counts_repeats_and_long_form(connected):
    corpus = read_corpus(connected[0])
    lengths = [len(u.text.split()) for split in ("train", "dev", "test") for u in corpus[split][0]]
    assert min(lengths) >= 1 and max(lengths) <= 10 and len(set(lengths)) >= 5
    words = [u.text.split() for split in ("train", "dev", "test") for u in corpus[split][0]]
    assert sum(any(a == b for a, b in zip(w, w[1:])) for w in words) >= 5  # "one one four"
    for utt in corpus["dev_long"][0] + corpus["test_long"][0]:
        assert 20 <= utt.duration <= 60 and len(utt.text.split()) >= 20
        assert utt.duration == pytest.approx(sf.info(utt.path).duration, abs=1e-4)


def test_connected_is_reproducible_from_its_seed(connected):
    same, again, other = map(snapshot, connected)
    assert same == again
    assert same["train.jsonl"] != other["train.jsonl"]
    assert sum(same[name] != other.get(name) for name in same) > len(same) // 2


def test_connected_bad_count_is_one_line_error(shared_data, tmp_path, capsys):
    assert prep("fsdd_connected", tmp_path, "--corpus-dir", shared_data / "fsdd", "--num-dev", -1) == 1
    assert capsys.readouterr().err == "asr prep: error: --seed and the --num-* counts must be 0 or more\n"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two builds with seed 0 (two processes, then one) and one with seed 1; every synthesiser
    command run is recorded."""
    commands, real_run = [], subprocess.run

    def spy(command, *args, **kwargs):
        commands.append(list(command))
        return real_run(command, *args, **kwargs)

    outs = [tmp_path_factory.mktemp(name) for name in ("synth_a", "synth_b", "synth_seed1")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "run", spy)
        for out, seed, jobs in zip(outs, (0, 0, 1), (2, 1, 2)):
            assert prep("synth", out, "--seed", seed, "--jobs", jobs, *SYNTH_COUNTS) == 0
    return outs, commands


@needs_synthesisers
def test_synth_test_voices_and_sentences_are_its_own(synth):
    corpus = read_corpus(synth[0][0])
    assert {split: len(utts) for split, (utts, _) in corpus.items()} == {"train": 16, "dev": 4, "test": 8}
    speakers = {split: {u.speaker for u in utts} for split, (utts, _) in corpus.items()}
    assert not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert speakers["test"] <= {voice.speaker for voices in VOICES["test"].values() for voice in voices}
    assert {s.split(":")[0] for s in speakers["train"]} == {"espeak-ng", "flite"}
    texts = {split: {u.text for u in utts} for split, (utts, _) in corpus.items()}
    assert not texts["train"] & texts["dev"] and not (texts["train"] | texts["dev"]) & texts["test"]


@needs_synthesisers
def test_synth_transcript_is_the_text_spoken(synth):
    outs, commands = synth
    for split, (utterances, sources) in read_corpus(outs[0]).items():
        for utt in utterances:
            command = sources[utt.id]["command"]
            assert command in commands  # the command recorded is one that ran
            spoken = command[-1] if command[0] == "espeak-ng" else command[command.index("-t") + 1]
            assert spoken == utt.text == normalize(utt.text) and re.fullmatch(r"[a-z' ]+", spoken)
            voice_option = "-v" if command[0] == "espeak-ng" else "-voice"
            assert utt.speaker == f"{command[0]}:{command[command.index(voice_option) + 1]}"


@needs_synthesisers
def test_synth_audio_is_speech_of_plausible_length(synth):
    for split, (utterances, _) in read_corpus(synth[0][0]).items():
        for utt in utterances:
            audio, rate = sf.read(utt.path, dtype="float32")
            assert rate == 16000 and audio.ndim == 1 and utt.duration == pytest.approx(len(audio) / rate, abs=1e-4)
            assert 10 ** (-33 / 20) < np.sqrt(np.mean(audio ** 2)) < 10 ** (-15 / 20) and np.abs(audio).max() < 1
            assert 0.15 < utt.duration / len(utt.text.split()) < 0.8


@needs_synthesisers
def test_synth_is_reproducible_from_its_seed(synth):
    same, again, other = map(snapshot, synth[0])
    assert same == again  # also with one synthesiser process instead of two
    assert same["train.jsonl"] != other["train.jsonl"]
    assert sum(same[name] != other.get(name) for name in same) > len(same) // 2


@needs_synthesisers
def test_synth_sentences_file_is_normalised_and_shared_out(tmp_path):
    lines = ["Dr. Smith paid 3.50 for 1,000 apples!", "It’s 007, café time.", "---", "Hello world", "hello, WORLD",
             "the train left at 9 20", "We're late again"]
    (tmp_path / "sentences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert prep("synth", tmp_path / "out", "--sentences", tmp_path / "sentences.txt", "--num-train", 6, "--num-dev", 1,
                "--num-test", 2, "--jobs", 1) == 0
    corpus = read_corpus(tmp_path / "out")
    texts = {split: {u.text for u in utts} for split, (utts, _) in corpus.items()}
    assert set().union(*texts.values()) == {"dr smith paid three point five zero for one thousand apples",
                                            "it's zero zero seven cafe time", "hello world",
                                            "the train left at nine twenty", "we're late again"}
    assert not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]


def test_synth_without_synthesisers_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert prep("synth", tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install espeak-ng flite" in error
    assert not (tmp_path / "out" / "train.jsonl").exists()
