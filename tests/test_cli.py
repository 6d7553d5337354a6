import dataclasses
import json
import os
import re
import struct
import subprocess
import sys

import pytest

from asr.audio import audio_info
from asr_cli import main


def test_transcribe_folder_prints_a_line_per_file(shared_data, overfit_model, capsys):
    model_path, _ = overfit_model
    assert main(["transcribe", "--model", model_path, "--beam-size", "1", str(shared_data / "clips")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and all(line.count("\t") == 1 for line in lines)
    assert any(line.startswith(str(shared_data / "clips" / "en" / "whisper_jfk.flac") + "\t") for line in lines)


def test_transcribe_stereo_44k_flac_to_json(shared_data, overfit_model, tmp_path):
    model_path, _ = overfit_model
    flac = shared_data / "clips" / "en" / "whisper_jfk.flac"
    info = audio_info(str(flac))
    assert (info.samplerate, info.channels) == (44100, 2)
    out = tmp_path / "out.json"
    assert main(["transcribe", "--model", model_path, "--out", str(out), "--nbest", "2", "--chunk-seconds", "30",
                 str(flac)]) == 0
    [item] = json.loads(out.read_text())
    assert item["audio"] == str(flac) and item["duration"] == pytest.approx(info.frames / 44100, abs=1e-3)
    assert len(item["nbest"]) == 2 and item["nbest"][0]["text"] == item["text"]
    assert all(0 <= t["time"] <= item["duration"] for t in item["tokens"])
    # the file is not replaced without --overwrite
    before = out.read_bytes()
    assert main(["transcribe", "--model", model_path, "--out", str(out), str(flac)]) == 1
    assert out.read_bytes() == before


def test_transcribe_manifest_to_jsonl_matches_references(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    out = tmp_path / "hyp.jsonl"
    assert main(["transcribe", "--model", model_path, "--out", str(out), manifest]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert texts == ["one", "one", "two", "two", "three", "three"]


def test_evaluate_command_writes_summary(overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", model_path, "--manifest", manifest, "--out", str(out), "--plots", "1"]) == 0
    printed = capsys.readouterr().out
    assert "CER 0.00%" in printed and "6 utterances" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert {"cer", "wer", "num_utterances", "rtf", "char_errors", "word_errors", "decoding"} <= set(summary)
    assert len(list(out.glob("attention_*.png"))) == 1
    assert main(["evaluate", "--model", model_path, "--manifest", manifest, "--out", str(out)]) == 1  # no overwrite


def test_score_by_line_and_by_id(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_text("One two.\nthree\n")  # normalised like the model's output
    hyp.write_text("one too\nthree\n")
    assert main(["score", str(ref), str(hyp)]) == 0
    out = capsys.readouterr().out
    assert "CER 8.33% (S 1, D 0, I 0 of 12)" in out and "WER 33.33% (S 1, D 0, I 0 of 3)" in out
    ref.write_text("u1 one two\nu2 three\n")
    hyp.write_text("u2 three\nu1 one two\n")
    assert main(["score", "--ids", str(ref), str(hyp)]) == 0
    assert "CER 0.00%" in capsys.readouterr().out
    hyp.write_text("u2 three\n")
    assert main(["score", "--ids", str(ref), str(hyp)]) == 1


@pytest.mark.parametrize("args, message", [
    (["transcribe", "--model", "missing.pt", "x.wav"], "missing.pt: no such model"),
    (["evaluate", "--model", "{model}", "--manifest", "missing.jsonl", "--out", "{tmp}/e"], "missing.jsonl"),
    (["transcribe", "--model", "{model}", "--beam-size", "0", "{manifest}"], "bad decoding option"),
    (["transcribe", "--model", "{model}", "{tmp}"], "no audio files"),
    (["score", "{tmp}/nothing.txt", "{tmp}/nothing.txt"], "no such file"),
    (["heads", "--model", "{model}", "--manifest", "missing.jsonl", "--out", "{tmp}/h.pt"], "missing.jsonl"),
    (["heads", "--model", "{manifest}", "--manifest", "{manifest}", "--out", "{tmp}/h.pt"], "not a readable"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(args, message, overfit_model, tmp_path):
    model_path, manifest = overfit_model
    args = [a.format(model=model_path, manifest=manifest, tmp=tmp_path) for a in args]
    run = subprocess.run([sys.executable, "-m", "asr_cli", *args], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert message in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr


def test_unreadable_file_among_good_ones_is_skipped_with_exit_1(overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVE")
    good = json.loads(open(manifest).readline())["audio"]
    assert main(["transcribe", "--model", model_path, good, str(tmp_path / "broken.wav")]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{good}\tone"] and "broken.wav" in captured.err


def test_decoding_flags_come_from_the_dataclass_and_only_given_ones_count():
    import argparse

    from asr.decode import DecodingOptions
    from asr_cli.flags import add_dataclass_flags, given_values

    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, DecodingOptions, "decoding")
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(DecodingOptions)}
    args = parser.parse_args(["--beam-size", "4", "--window-back", "none", "--length-bonus", "0.5"])
    assert given_values(args, DecodingOptions) == {"beam_size": 4, "window_back": None, "length_bonus": 0.5}
    with pytest.raises(SystemExit):
        parser.parse_args(["--beam-size", "four"])


def test_average_never_replaces_an_existing_file_unasked(overfit_model, tmp_path, capsys):
    import os

    model_path, _ = overfit_model
    exp_dir = os.path.dirname(model_path)
    last = os.path.join(exp_dir, "checkpoints", "last.pt")
    before = open(last, "rb").read()
    assert main(["average", "--exp-dir", exp_dir, "--best", "1", "--out", last]) == 1
    assert "exists: pass --overwrite" in capsys.readouterr().err and open(last, "rb").read() == before
    out = str(tmp_path / "avg.pt")
    assert main(["average", "--exp-dir", exp_dir, "--best", "1", "--out", out]) == 0 and os.path.exists(out)
    assert main(["average", "--exp-dir", exp_dir, "--best", "1", "--out", out, "--overwrite"]) == 0


def test_heads_writes_a_model_with_its_alignment_heads_and_never_replaces_a_file_unasked(overfit_model, tmp_path,
                                                                                        capsys):
    import shutil

    import torch

    from asr.checkpoint import load_model_file

    model_path, manifest = overfit_model
    before = open(model_path, "rb").read()
    assert main(["heads", "--model", model_path, "--manifest", manifest]) == 1
    assert "give --out FILE, or --overwrite" in capsys.readouterr().err
    out = str(tmp_path / "heads.pt")
    assert main(["heads", "--model", model_path, "--manifest", manifest, "--out", out]) == 0
    assert open(model_path, "rb").read() == before
    assert capsys.readouterr().out == out + "\n"
    raw = torch.load(out, weights_only=True)
    chosen, found = raw["state_dict"]["alignment_heads"], raw["info"]["alignment_heads"]
    assert chosen.shape == (1, 2) and found["heads"] == chosen.nonzero().tolist() != []
    assert found["utterances"] == 6 and all(0 <= s <= 1 for s in found["scores"][0])
    assert load_model_file(out).info["train_config"] == load_model_file(model_path).info["train_config"]
    assert main(["heads", "--model", model_path, "--manifest", manifest, "--out", out]) == 1
    assert "exists: pass --overwrite" in capsys.readouterr().err
    copy = str(tmp_path / "copy.pt")
    shutil.copy(model_path, copy)
    assert main(["heads", "--model", copy, "--manifest", manifest, "--overwrite"]) == 0
    assert torch.equal(load_model_file(copy).model.alignment_heads, chosen)
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text("".join(json.dumps({"audio": json.loads(line)["audio"]}) + "\n" for line in open(manifest)))
    assert main(["heads", "--model", model_path, "--manifest", str(no_text), "--out", str(tmp_path / "x.pt")]) == 1
    assert "no utterance has a reference text" in capsys.readouterr().err


def test_transcribe_one_recording_to_subtitles(overfit_model, tmp_path, capsys):
    """Three words 3 s apart in one file, decoded in pieces: SRT and VTT cues (more than one: a cue is
    at most 7 s) in order, their times increasing within the audio, their words the transcript's;
    several inputs are refused before decoding."""
    import numpy as np
    import soundfile as sf

    from asr.audio import load_audio

    model_path, manifest = overfit_model
    words = [load_audio(json.loads(line)["audio"]) for line in open(manifest)][::2]
    gap = np.zeros(16000 * 3, dtype=np.float32)
    audio = tmp_path / "one_two_three.wav"
    sf.write(audio, np.concatenate([words[0], gap, words[1], gap, words[2]]), 16000)
    duration = audio_info(str(audio)).frames / 16000
    assert main(["transcribe", "--model", model_path, "--out", str(tmp_path / "all.json"), str(audio)]) == 0
    [transcript] = json.loads((tmp_path / "all.json").read_text())
    for fmt, mark in (("srt", ","), ("vtt", ".")):
        out = tmp_path / f"subtitles.{fmt}"
        assert main(["transcribe", "--model", model_path, "--out", str(out), str(audio)]) == 0
        text = out.read_text()
        if fmt == "vtt":
            assert text.startswith("WEBVTT\n\n")
            text = text[len("WEBVTT\n\n"):]
        cues = [block.split("\n") for block in text.split("\n\n")[:-1]]
        assert text.endswith("\n\n") and len(cues) >= 2
        if fmt == "srt":
            assert [int(cue.pop(0)) for cue in cues] == list(range(1, len(cues) + 1))
        times = []
        for timing, line in cues:
            start, end = timing.split(" --> ")
            for stamp in (start, end):
                assert re.fullmatch(rf"\d\d:\d\d:\d\d{re.escape(mark)}\d\d\d", stamp)
                h, m, s = stamp.replace(mark, ".").split(":")
                times.append(3600 * int(h) + 60 * int(m) + float(s))
        assert times == sorted(times) and times[0] < times[-1] <= duration + 1e-3
        assert " ".join(line for _, line in cues) == transcript["text"]
    assert " ".join(w["word"] for w in transcript["words"]) == transcript["text"] and len(transcript["words"]) >= 2
    capsys.readouterr()
    assert main(["transcribe", "--model", model_path, "--out", str(tmp_path / "many.srt"), manifest]) == 1
    assert "srt subtitles are of one audio file" in capsys.readouterr().err
    assert not (tmp_path / "many.srt").exists()


def test_a_mandarin_model_writes_chinese_characters_in_every_output_format(overfit_model, tmp_path, capsys):
    """The overfit model with Chinese characters in place of its letters (same ids, lang zh): what it
    decodes is printed and written as UTF-8 Chinese, never escaped or garbled, in each format."""
    import torch

    model_path, manifest = overfit_model
    raw = torch.load(model_path, weights_only=True)
    han = dict(zip("eonrtwh", "一二三四五六七"))
    raw["tokens"] = raw["tokens"][:3] + [han.get(t, t) for t in raw["tokens"][3:]]
    raw["lang"] = "zh"
    torch.save(raw, tmp_path / "zh.pt")
    audio = json.loads(open(manifest).readline())["audio"]  # george says "one"
    expected = "".join(han[c] for c in "one")
    assert main(["transcribe", "--model", str(tmp_path / "zh.pt"), audio]) == 0
    assert capsys.readouterr().out == f"{audio}\t{expected}\n"
    for fmt in ("txt", "json", "jsonl", "srt", "vtt"):
        out = tmp_path / f"out.{fmt}"
        assert main(["transcribe", "--model", str(tmp_path / "zh.pt"), "--out", str(out), audio]) == 0
        text = out.read_bytes().decode("utf-8")
        assert expected in text and "\\u" not in text, fmt
    [transcript] = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [w["word"] for w in transcript["words"]] == list(expected)  # one word per character


def test_version_names_the_package_and_its_distribution(capsys):
    import asr

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"asr {asr.__version__} (distribution attend-asr)\n"


def test_info_prints_the_model_card(overfit_model, tmp_path, capsys):
    """What the model was trained on (hours counted from the manifest), its best dev epoch, the decoding
    it recommends, and the evaluations beside it."""
    import shutil

    import asr

    model_path, manifest = overfit_model
    shutil.copy(model_path, tmp_path / "model.pt")
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--manifest", manifest,
                 "--out", str(tmp_path / "eval_test"), "--plots", "0"]) == 0
    capsys.readouterr()
    assert main(["info", "--json", str(tmp_path / "model.pt")]) == 0
    card = json.loads(capsys.readouterr().out)
    hours = sum(json.loads(line)["duration"] for line in open(manifest)) / 3600
    [corpus] = card["corpora"]
    assert corpus["utterances"] == 6 and corpus["hours"] == pytest.approx(hours, abs=1e-3)
    assert card["trained_with"] == asr.__version__ and card["model"]["vocabulary"] == 10
    assert 0.9 <= card["dev"]["valid_acc"] <= 1.0 and card["evaluations"]["eval_test"]["cer"] == 0.0
    assert main(["info", str(tmp_path / "model.pt")]) == 0
    printed = capsys.readouterr().out
    assert "6 utterances" in printed and "eval_test: CER 0.00%" in printed and "best dev epoch: valid_acc" in printed
    assert main(["info", manifest]) == 1  # not a model file: one line, exit 1


def test_the_wheel_is_named_attend_asr_and_installs_the_asr_command(tmp_path):
    """`pip install attend-asr` (not PyPI's unrelated `asr`): the built wheel's metadata, packages and
    console script."""
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), root], check=True, capture_output=True)
    [wheel] = list(tmp_path.glob("*.whl"))
    assert wheel.name.startswith("attend_asr-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"asr/__init__.py", "asr_cli/__init__.py", "data_prep/mandarin.py", "asr/serve_page.html"} <= set(names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Name: attend-asr" in metadata and 'Requires-Dist: fastapi>=0.100; extra == "serve"' in metadata
    entry_points = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "asr = asr_cli:main" in entry_points


def test_output_dir_writes_one_file_per_input_in_each_format(overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    audio = [json.loads(line)["audio"] for line in open(manifest)][:2]
    out = tmp_path / "out"
    assert main(["transcribe", "--model", model_path, "--output-dir", str(out), "--output-format", "all"] + audio) == 0
    assert capsys.readouterr().out == ""  # the files are the output
    stems = [os.path.splitext(os.path.basename(a))[0] for a in audio]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{f}" for s in stems for f in ("txt", "json", "srt", "vtt", "tsv"))
    assert (out / f"{stems[0]}.txt").read_text() == "one\n"
    assert (out / f"{stems[0]}.tsv").read_text().startswith("start\tend\ttext\n")
    assert main(["transcribe", "--model", model_path, "--output-dir", str(out)] + audio) == 1  # exists: kept
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert main(["transcribe", "--model", model_path, "--output-dir", str(out), "--output-format", "jsonl"] + audio) == 0
    assert json.loads((out / f"{stems[0]}.jsonl").read_text())["text"] == "one"


def test_a_model_file_of_another_format_names_both_versions(overfit_model, tmp_path, capsys):
    import torch

    import asr

    raw = torch.load(overfit_model[0], weights_only=True)
    raw["format"], raw["info"]["asr_version"] = "asr-model-9", "9.0.0"
    torch.save(raw, tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    assert main(["info", str(tmp_path / "future.pt")]) == 1
    assert capsys.readouterr().err.strip() == (f"asr info: error: {tmp_path / 'future.pt'}: model file format asr-model-9 "
                                               f"(written by asr 9.0.0); this asr {asr.__version__} reads asr-model-1")
    assert main(["info", str(tmp_path / "foreign.pt")]) == 1
    assert "not an asr model file" in capsys.readouterr().err


def _bad_audio(kind: str, folder, shared_data) -> str:
    """One of the audio files a user's corpus may hold, written into `folder`."""
    import numpy as np
    import soundfile as sf

    path = str(folder / f"{kind}.wav")
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    real = (shared_data / "fsdd" / "recordings" / "7_jackson_0.wav").read_bytes()
    if kind == "directory":
        os.makedirs(path)
    elif kind == "zero_bytes":
        open(path, "wb").close()
    elif kind == "text_named_wav":
        open(path, "w").write("not audio\n")
    elif kind == "truncated_header":
        open(path, "wb").write(real[:20])
    elif kind == "truncated_data":
        open(path, "wb").write(real[:len(real) // 2])
    elif kind == "unsupported_codec":  # a WAV header naming a codec (format tag 0x1234) no reader knows
        fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)
        data = bytes(3200)
        open(path, "wb").write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                               + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    elif kind in ("nan", "inf"):
        noise[100] = np.nan if kind == "nan" else np.inf
        sf.write(path, noise, 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"), ("directory", "no audio files"), ("zero_bytes", "file is empty (0 bytes)"),
    ("text_named_wav", "not a readable audio file"), ("truncated_header", "not a readable audio file"),
    ("truncated_data", "truncated"), ("nan", "NaN or infinite samples"), ("inf", "NaN or infinite samples"),
    ("unsupported_codec", "not a readable audio file")])
def test_bad_audio_is_one_line_and_the_good_file_beside_it_is_still_transcribed(kind, message, overfit_model,
                                                                                 shared_data, tmp_path):
    model_path, manifest = overfit_model
    bad = _bad_audio(kind, tmp_path, shared_data)
    good = json.loads(open(manifest).readline())["audio"]
    before = sorted(os.listdir(tmp_path))
    for inputs, transcribed in (([bad], False), ([bad, good], True)):
        run = subprocess.run([sys.executable, "-m", "asr_cli", "transcribe", "--model", model_path, *inputs],
                             capture_output=True, text=True)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert message in run.stderr and all(line.startswith("asr transcribe: ") or "real-time factor" in line
                                             for line in run.stderr.strip().splitlines()), run.stderr
        assert (f"{good}\tone\n" in run.stdout) == transcribed
    assert sorted(os.listdir(tmp_path)) == before  # nothing of the user's touched or added


@pytest.mark.parametrize("channels, rate, subtype, ext", [
    (1, 8000, "PCM_16", "wav"), (2, 11025, "PCM_U8", "wav"), (6, 22050, "PCM_24", "wav"), (8, 44100, "PCM_32", "wav"),
    (1, 48000, "FLOAT", "wav"), (2, 96000, "DOUBLE", "wav"), (1, 8000, "ULAW", "wav"), (2, 44100, "MPEG_LAYER_III", "mp3"),
    (1, 48000, "OPUS", "opus"), (1, 16000, "PCM_16", "flac")])
def test_any_rate_width_and_channel_count_is_transcribed(channels, rate, subtype, ext, overfit_model, tmp_path):
    """The same real recording, resampled and written in each layout, still reads as "one"."""
    import numpy as np
    import soundfile as sf

    from asr.audio import load_audio

    model_path, manifest = overfit_model
    audio = load_audio(json.loads(open(manifest).readline())["audio"], rate)
    path = tmp_path / f"x.{ext}"
    sf.write(path, np.repeat(audio[:, None], channels, axis=1) * 0.9, rate, subtype=subtype,
             format="OGG" if ext == "opus" else None)
    run = subprocess.run([sys.executable, "-m", "asr_cli", "transcribe", "--model", model_path, str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == f"{path}\tone\n", run.stderr


def test_ten_milliseconds_of_audio_is_transcribed_without_error(overfit_model, tmp_path):
    """Shorter than the subsampler's receptive field: whatever the model says, no crash."""
    import numpy as np
    import soundfile as sf

    model_path, _ = overfit_model
    path = tmp_path / "short.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(160)).astype(np.float32), 16000)
    run = subprocess.run([sys.executable, "-m", "asr_cli", "transcribe", "--model", model_path, str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith(f"{path}\t"), run.stderr


def test_evaluate_record_keeps_the_scores_in_the_model_file_wherever_it_goes(overfit_model, tmp_path, capsys):
    import shutil

    import torch

    model_path, manifest = overfit_model
    shutil.copy(model_path, tmp_path / "model.pt")
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--manifest", manifest, "--record",
                 "--out", str(tmp_path / "eval_test"), "--plots", "0"]) == 0
    os.makedirs(tmp_path / "elsewhere")
    shutil.move(str(tmp_path / "model.pt"), tmp_path / "elsewhere" / "model.pt")  # away from eval_test/
    capsys.readouterr()
    assert main(["info", str(tmp_path / "elsewhere" / "model.pt")]) == 0
    assert f"eval_test: CER 0.00%, WER 0.00% on 6 utterances ({os.path.abspath(manifest)})" in capsys.readouterr().out
    before, after = (torch.load(p, weights_only=True)["state_dict"] for p in (model_path, tmp_path / "elsewhere" / "model.pt"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_progress_bar_shows_on_a_terminal_and_not_in_a_pipe(overfit_model):
    import pty

    model_path, manifest = overfit_model
    command = [sys.executable, "-m", "asr_cli", "transcribe", "--model", model_path, manifest]
    import fcntl
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=follower, text=True)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert run.returncode == 0 and re.search(rb"100%\S* *\d+/6 \[", shown.replace(b"\r", b"\n")), shown
    piped = subprocess.run(command, capture_output=True, text=True)
    assert piped.returncode == 0 and "%|" not in piped.stderr and piped.stdout == run.stdout
