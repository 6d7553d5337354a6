import json
import os

import numpy as np
import pytest
import torch

from asr.segments import (ManifestError, Segment, length_buckets, load_manifest, pad_waveforms, write_manifest)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_manifest_relative_paths_and_other_toolkits_keys(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [
        json.dumps({"audio": "wav/a.wav", "duration": 1.5, "text": "a"}),
        "",
        json.dumps({"audio_filepath": "/abs/b.flac", "duration": 2, "text": "b b"}),  # NeMo
        json.dumps({"key": "utt3", "wav": "../c.wav", "txt": "你好"}),  # WeNet
    ])
    a, b, c = load_manifest(path)
    assert (a.id, a.path, a.duration, a.text) == ("a", str(tmp_path / "wav" / "a.wav"), 1.5, "a")
    assert (b.id, b.path, b.duration, b.text) == ("b", "/abs/b.flac", 2.0, "b b")
    assert (c.id, c.path, c.duration, c.text) == ("utt3", str(tmp_path.parent / "c.wav"), -1.0, "你好")


@pytest.mark.parametrize("line, message", [
    ('{"audio": "a.wav"', "m.jsonl:2: not valid JSON"),
    ('["a.wav"]', "m.jsonl:2: expected a JSON object"),
    ('{"text": "hi"}', "m.jsonl:2: missing 'audio'"),
    ('{"audio": "a.wav", "duration": "long"}', "m.jsonl:2: 'duration' must be a number of seconds >= 0, not \"long\""),
    ('{"audio": "a.wav", "duration": -3}', "m.jsonl:2: 'duration' must be a number of seconds >= 0, not -3"),
    ('{"audio": "a.wav", "duration": NaN}', "m.jsonl:2: 'duration' must be a number of seconds >= 0, not NaN"),
    ('{"audio": "a.wav", "offset": -0.5}', "m.jsonl:2: 'offset' must be a number of seconds >= 0, not -0.5"),
    ('{"id": "ok", "audio": "b.wav"}', "m.jsonl:2: id 'ok' is already used on line 1"),
])
def test_malformed_manifest_line_is_named(tmp_path, line, message):
    path = write_lines(tmp_path / "m.jsonl", ['{"id": "ok", "audio": "ok.wav"}', line])
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_a_manifest_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes('{"audio": "ok.wav"}\n{"audio": "b.wav", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not UTF-8 \(invalid continuation byte at byte 31\)"):
        load_manifest(str(path))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        load_manifest(str(tmp_path / "none.jsonl"))


def test_write_manifest_is_atomic(tmp_path):
    path = tmp_path / "m.jsonl"
    assert write_manifest(str(path), [Segment("u1", "/a.wav", 1.0, "old")]) == 1

    def failing():
        yield Segment("u2", "/b.wav", 2.0, "new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_manifest(str(path), failing())
    assert [u.text for u in load_manifest(str(path))] == ["old"]
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_corpus_specific_keys_travel_in_info(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(str(path), [Segment("u1", "/a.wav", 1.0, "hi", speaker="s1", info={"age": 9, "gender": "f"})])
    line = json.loads(path.read_text())
    assert line == {"id": "u1", "audio": "/a.wav", "duration": 1.0, "text": "hi", "speaker": "s1", "age": 9,
                    "gender": "f"}
    [segment] = load_manifest(str(path))
    assert segment.info == {"age": 9, "gender": "f"} and segment.speaker == "s1"


def test_array_segment_reads_its_stretch():
    samples = np.arange(16000, dtype=np.float32)
    whole = Segment("a", "", 1.0, samples=samples)
    part = Segment("a", "", 0.25, offset=0.5, samples=samples)
    assert whole.load(16000).shape == (16000,) and part.load(16000).tolist() == samples[8000:12000].tolist()


def test_length_buckets_cap_padded_seconds():
    durations = [1.0, 9.0, 3.0, 2.5, 8.0, 0.5]
    batches = length_buckets(durations, max_seconds=10.0, max_size=3)[::-1]
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(durations[i] for i in b) <= 10.0 or len(b) == 1 for b in batches)
    assert batches[0] == [1]  # longest first


def test_pad_waveforms():
    waves, lengths = pad_waveforms([torch.ones(2), torch.ones(4)])
    assert waves.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and lengths.tolist() == [2, 4]
