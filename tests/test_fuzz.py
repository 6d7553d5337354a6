"""Property-based fuzzing of everything that reads a user's files: the audio reader, the manifest
parser and the corpus recipes' transcript parsers. Whatever the bytes, each either returns its result
or raises a clean ASRError (a one-line message at the command line), never another exception.

Brief by default (the normal test run); ASR_FUZZ=long for a long run by hand (ASR_FUZZ_EXAMPLES sets
its examples per test):

    ASR_FUZZ=long python -m pytest -q -m slow tests/test_fuzz.py
"""
import argparse
import io
import json
import os
import tempfile
import wave

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import audio_duration, load_audio
from asr.errors import ASRError
from asr.segments import ManifestError, checked_manifest, load_manifest, parse_manifest_line
from data_prep import an4, commonvoice, kaldi
from data_prep.common import Prep, read_table

settings.register_profile("brief", max_examples=25, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=int(os.environ.get("ASR_FUZZ_EXAMPLES", 4000)), deadline=None,
                          database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("long" if os.environ.get("ASR_FUZZ") == "long" else "brief")

pytestmark = pytest.mark.slow


def write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_audio(path: str, offset: float = 0.0, duration=None) -> None:
    """The reader's contract: samples (mono float32, finite), or an ASRError."""
    try:
        seconds = audio_duration(path)
        audio = load_audio(path, 16000, offset, duration)
    except ASRError as e:
        assert str(e) and "\n" not in str(e).strip()
        return
    assert seconds >= 0
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0 and np.isfinite(audio).all()


def wav_header(channels: int, rate: int, bits: int, data_bytes: int, fmt: int = 1) -> bytes:
    """A canonical 44-byte RIFF/WAVE header, its fields as given (not necessarily consistent)."""
    block = channels * bits // 8
    fmt_chunk = (fmt.to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
                 + (rate * block % 2**32).to_bytes(4, "little") + (block % 2**16).to_bytes(2, "little")
                 + bits.to_bytes(2, "little"))
    return (b"RIFF" + ((36 + data_bytes) % 2**32).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + fmt_chunk + b"data" + (data_bytes % 2**32).to_bytes(4, "little"))


offsets = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=5, allow_nan=False))
durations = st.one_of(st.none(), st.floats(min_value=0, max_value=5, allow_nan=False))


@given(data=st.binary(max_size=4096), ext=st.sampled_from([".wav", ".flac", ".ogg", ".sph", ".mp3", ".raw"]))
def test_audio_reader_on_random_bytes(data, ext):
    with tempfile.TemporaryDirectory() as folder:
        read_audio(write(folder, "x" + ext, data))


@given(channels=st.integers(0, 70000), rate=st.integers(0, 2**32 - 1), bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64, 12]),
       fmt=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2]), declared=st.integers(0, 2**32 - 1),
       body=st.binary(max_size=4096), offset=offsets, duration=durations)
def test_audio_reader_on_random_bytes_after_a_wav_header(channels, rate, bits, fmt, declared, body, offset, duration):
    with tempfile.TemporaryDirectory() as folder:
        read_audio(write(folder, "x.wav", wav_header(channels % 2**16, rate, bits, declared, fmt) + body),
                   offset, duration)


@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]) | st.integers(1000, 200000),
       channels=st.integers(1, 8), frames=st.integers(0, 4000),
       kind=st.sampled_from([("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_U8"), ("WAV", "FLOAT"),
                             ("WAV", "DOUBLE"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]),
       special=st.sampled_from([None, np.nan, np.inf, 1e30, 0.0]), cut=st.integers(0, 64),
       offset=offsets, duration=durations, seed=st.integers(0, 2**32 - 1))
def test_audio_reader_on_valid_files_with_random_parameters(rate, channels, frames, kind, special, cut, offset,
                                                            duration, seed):
    audio = np.random.default_rng(seed).uniform(-1, 1, (frames, channels))
    if special is not None and frames:
        audio[frames // 2, 0] = special
    fmt, subtype = kind
    buffer = io.BytesIO()
    try:
        sf.write(buffer, audio, rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError, AssertionError):  # what the format cannot hold
        return  # (libsndfile's FLAC encoder refuses NaN: soundfile then asserts on the count written)
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory() as folder:
        read_audio(write(folder, "x." + fmt.lower(), data[: len(data) - cut] if cut else data), offset, duration)


@given(data=st.binary(max_size=2048))
def test_wave_module_writes_read_back(data):
    """A short PCM WAV of random samples written by Python's own wave module reads back unchanged."""
    data = data[: len(data) // 2 * 2]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.wav")
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(data)
        if not data:
            with pytest.raises(ASRError):
                load_audio(path)
            return
        expected = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        np.testing.assert_array_equal(load_audio(path), expected)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
                           max_leaves=8)
manifest_keys = st.sampled_from(["id", "audio", "audio_filepath", "wav", "path", "key", "utt", "duration", "offset",
                                 "text", "txt", "speaker", "spk", "lang", "language"]) | st.text(max_size=8)
manifest_objects = st.dictionaries(manifest_keys, json_values, max_size=8)


@given(obj=manifest_objects)
def test_manifest_parser_on_random_json_objects(obj):
    try:
        segment = parse_manifest_line(json.dumps(obj), "/nonexistent", "m.jsonl:1")
    except ManifestError as e:
        assert str(e).startswith("m.jsonl:1: ")
        return
    assert isinstance(segment.id, str) and isinstance(segment.path, str) and os.path.isabs(segment.path)
    assert segment.duration == -1.0 or segment.duration >= 0
    assert segment.offset is None or segment.offset >= 0


@given(lines=st.lists(st.one_of(manifest_objects.map(json.dumps), json_values.map(json.dumps), st.text(max_size=60),
                                st.binary(max_size=60)), max_size=8))
def test_manifest_reader_on_random_lines(lines):
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "a.wav", wav_header(1, 16000, 16, 3200) + bytes(3200))
        raw = b"\n".join(line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass") for line in lines)
        path = write(folder, "m.jsonl", raw)
        for read in (load_manifest, checked_manifest, lambda p: checked_manifest(p, on_error=lambda message: None)):
            try:
                segments = read(path)
            except ManifestError as e:
                assert str(e).startswith(path)
                continue
            assert all(s.path.startswith(folder) or os.path.isabs(s.path) for s in segments)


def prep_in(folder: str, **options) -> Prep:
    return Prep(corpus_dir=folder, out_dir=os.path.join(folder, "out"), download_dir=os.path.join(folder, "dl"),
                options=argparse.Namespace(**options))


table_text = st.one_of(st.binary(max_size=400),
                       st.lists(st.lists(st.sampled_from(["u1", "u2", "rec", "a.wav", "-1", "0", "1.5", "nan", "inf",
                                                          "|", "x", "", "\t"]) | st.text(max_size=6), max_size=5)
                                .map(" ".join), max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")))


@given(wav_scp=table_text, text=table_text, segments=st.none() | table_text, utt2spk=st.none() | table_text)
def test_kaldi_data_directory_parser_on_random_text(wav_scp, text, segments, utt2spk):
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "a.wav", wav_header(1, 16000, 16, 32000) + bytes(32000))
        for name, data in (("wav.scp", wav_scp), ("text", text), ("segments", segments), ("utt2spk", utt2spk)):
            if data is not None:
                write(folder, name, data)
        prep = prep_in(folder, split="train", allow_pipes=False, lang=None, root=folder)
        try:
            kaldi.prepare(prep)
            read_table(os.path.join(folder, "text"))
        except ASRError:
            return
        for split in prep.splits.values():
            assert all(s.text and s.duration > 0 for s in split)


tsv_cells = st.sampled_from(["path", "sentence", "client_id", "a.mp3", "", '"', "x\ty", "hello world"]) | st.text(max_size=10)


@given(tsv=st.one_of(st.binary(max_size=400),
                     st.lists(st.lists(tsv_cells, max_size=5).map("\t".join), max_size=6)
                     .map(lambda rows: "\n".join(["client_id\tpath\tsentence"] + rows).encode("utf-8", "surrogatepass")),
                     st.lists(st.lists(tsv_cells, max_size=5).map("\t".join), max_size=6)
                     .map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass"))))
def test_common_voice_tsv_parser_on_random_text(tsv):
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "clips"))
        write(folder, "train.tsv", tsv)
        prep = prep_in(folder, lang="en")
        try:
            commonvoice.prepare(prep)
        except ASRError:
            return


@given(text=st.one_of(st.binary(max_size=400),
                      st.lists(st.sampled_from(["<s>", "</s>", "(", ")", "(an4-1)", "HELLO", " ", "\t", "\r"])
                               | st.text(max_size=8), max_size=12).map("".join)
                      .map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_an4_transcript_parser_on_random_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "an4_train.transcription", text)
        try:
            texts = an4.read_transcripts(path, prep_in(folder))
        except ASRError:
            return
        assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in texts.items())
