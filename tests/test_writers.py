import os

import pytest

from asr.errors import ASRError
from asr.transcribe import Transcript
from asr.writers import format_transcripts, output_format, subtitle_cues, timestamp


def transcript(words, name="a.wav"):
    text = " ".join(w for w, _, _ in words)
    return Transcript(name, text, -1.0, [(text, -1.0)], [], words, 3700.0, 0)


WORDS = [("one", 0.5, 0.84), ("two", 1.0, 1.2304), ("three", 3601.5, 3602.0)]


def test_srt_is_numbered_cues_with_comma_milliseconds():
    lines = format_transcripts([transcript(WORDS)], "srt")
    assert "".join(lines) == ("1\n00:00:00,500 --> 00:00:01,230\none two\n\n"
                              "2\n01:00:01,500 --> 01:00:02,000\nthree\n\n")


def test_vtt_has_its_header_and_full_stop_milliseconds():
    lines = format_transcripts([transcript(WORDS)], "vtt")
    assert "".join(lines) == ("WEBVTT\n\n00:00:00.500 --> 00:00:01.230\none two\n\n"
                              "01:00:01.500 --> 01:00:02.000\nthree\n\n")


def test_cues_end_before_42_characters_or_7_seconds():
    words = [(f"word{i:02d}", i * 0.5, i * 0.5 + 0.4) for i in range(12)]  # 6 characters each
    cues = subtitle_cues(words)
    assert [line for _, _, line in cues] == [" ".join(f"word{i:02d}" for i in range(6)),  # 41 characters
                                             " ".join(f"word{i:02d}" for i in range(6, 12))]
    assert cues[0][:2] == (0.0, 2.9) and cues[1][:2] == (3.0, 5.9)
    slow = [("a", 0.0, 1.0), ("b", 6.0, 7.0), ("c", 7.5, 7.6)]  # "a b c" is short, but 7.6 s long
    assert subtitle_cues(slow) == [(0.0, 7.0, "a b"), (7.5, 7.6, "c")]
    assert subtitle_cues([("x" * 50, 0.0, 1.0), ("y", 1.0, 2.0)]) == [(0.0, 1.0, "x" * 50), (1.0, 2.0, "y")]
    assert subtitle_cues([("你", 0.0, 0.2), ("好", 0.2, 0.4)], separator="") == [(0.0, 0.4, "你好")]


def test_timestamp_rounds_to_milliseconds():
    assert timestamp(0.0, ",") == "00:00:00,000"
    assert timestamp(59.9996, ".") == "00:01:00.000"
    assert timestamp(36000 + 61.25, ",") == "10:01:01,250"


def test_subtitles_of_several_recordings_are_refused():
    with pytest.raises(ASRError, match="srt subtitles are of one recording; got 2"):
        format_transcripts([transcript(WORDS), transcript(WORDS, "b.wav")], "srt")
    assert format_transcripts([], "vtt") == ["WEBVTT\n\n"]


def test_json_has_word_times_and_format_comes_from_the_extension():
    [line] = format_transcripts([transcript(WORDS)], "jsonl")
    assert '"words": [{"word": "one", "start": 0.5, "end": 0.84}, {"word": "two", "start": 1.0, "end": 1.23}' in line
    assert [output_format(f"x.{ext}", None) for ext in ("srt", "vtt", "json")] == ["srt", "vtt", "json"]
    with pytest.raises(ASRError):
        output_format("x.ass", None)


def test_tsv_is_whispers_table_of_cues_in_milliseconds():
    lines = format_transcripts([transcript(WORDS)], "tsv")
    assert "".join(lines) == "start\tend\ttext\n500\t1230\tone two\n3601500\t3602000\tthree\n"


def test_one_file_per_input_and_format_checked_before_any_is_written(tmp_path):
    from asr.writers import write_per_input

    a, b = transcript(WORDS, "x/a.wav"), transcript(WORDS[:1], "y/b.flac")
    written = write_per_input([a, b], str(tmp_path / "out"), ("txt", "srt"))
    assert sorted(os.path.basename(p) for p in written) == ["a.srt", "a.txt", "b.srt", "b.txt"]
    assert (tmp_path / "out" / "b.txt").read_text() == "one\n"
    with pytest.raises(ASRError, match="exists"):
        write_per_input([transcript(WORDS, "z/c.wav"), a], str(tmp_path / "out"), ("txt",))
    assert not (tmp_path / "out" / "c.txt").exists()  # refused before anything was written
    with pytest.raises(ASRError, match="would both write"):
        write_per_input([a, transcript(WORDS, "other/a.wav")], str(tmp_path / "new"), ("txt",))
    assert not (tmp_path / "new").exists()
