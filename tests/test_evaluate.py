import json
from dataclasses import replace

import pytest

import asr
import asr.transcribe
from asr.segments import load_manifest, write_manifest
from asr.decode import DecodingOptions
from asr.evaluate import evaluate, format_summary


def test_evaluate_scores_writes_results_and_plots(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    summary = evaluate(asr.load_model(model_path), manifest, str(tmp_path), plots=2)
    assert summary["cer"] == 0.0 and summary["wer"] == 0.0 and summary["num_utterances"] == 6
    assert summary["char_errors"]["reference_length"] == len("oneonetwotwothreethree")
    assert 0 < summary["rtf"] < 1 and summary["decoding"]["beam_size"] == 10
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
    assert [r["hyp"] for r in rows] == [r["ref"] for r in rows]
    pngs = sorted(p.name for p in tmp_path.glob("attention_*.png"))
    assert len(pngs) == 2 and all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "CER 0.00%" in format_summary(summary)


def test_errors_are_counted_against_normalised_references(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    utts = load_manifest(manifest)
    utts[0].text = "ONE!"  # normalised to "one": no error
    utts[2].text = "twos"  # the model says "two": one deletion
    utts[4].text = "tree"  # the model says "three": one insertion
    edited = str(tmp_path / "edited.jsonl")
    write_manifest(edited, utts)
    summary = evaluate(asr.load_model(model_path), edited, str(tmp_path / "out"), DecodingOptions(), plots=0)
    c, w = summary["char_errors"], summary["word_errors"]
    assert (c["substitutions"], c["deletions"], c["insertions"]) == (0, 1, 1)
    assert summary["cer"] == pytest.approx(2 / len("oneonetwostwotreethree"))
    assert (w["substitutions"], w["deletions"], w["insertions"], w["reference_length"]) == (2, 0, 0, 6)
    assert summary["sentence_errors"] == 2
    # "s" is in no training transcript: the model cannot write it, and the summary says so
    assert (summary["unknown_reference_characters"], summary["unknown_reference_examples"]) == (1, {"s": 1})
    assert "1 of 22 reference characters are outside the model's vocabulary" in format_summary(summary)
    assert "outside" not in format_summary(evaluate(asr.load_model(model_path), manifest, str(tmp_path / "b"), plots=0))


def test_greedy_and_window_options_are_recorded(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    greedy = evaluate(recognizer, manifest, str(tmp_path / "greedy"), DecodingOptions(beam_size=1), plots=0)
    assert greedy["decoding"]["beam_size"] == 1 and greedy["decoding"]["window_back"] is None
    assert greedy["cer"] <= 0.1
    options = DecodingOptions(beam_size=1, window_back=4, window_forward=12)
    windowed = evaluate(recognizer, manifest, str(tmp_path / "window"), options, plots=0)
    assert (windowed["decoding"]["window_back"], windowed["decoding"]["window_forward"]) == (4, 12)


def test_manifest_is_read_as_a_manifest_whatever_its_name(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    renamed = tmp_path / "test.list"
    renamed.write_text(open(manifest).read())
    summary = evaluate(asr.load_model(model_path), str(renamed), str(tmp_path / "out"), plots=0)
    assert summary["num_utterances"] == 6 and summary["cer"] == 0.0


def test_group_by_scores_each_value_of_a_manifest_key(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    utts = load_manifest(manifest)
    for i, utt in enumerate(utts):
        utt.info["age_group"] = "child" if i < 2 else "adult"
    utts[4].text = "tree"  # one insertion, in an adult's utterance
    edited = str(tmp_path / "grouped.jsonl")
    write_manifest(edited, utts)
    summary = evaluate(asr.load_model(model_path), edited, str(tmp_path / "out"), plots=0,
                       group_by=["age_group", "speaker"])
    groups = summary["groups"]["age_group"]
    assert groups["child"] == dict(cer=0.0, wer=0.0, num_utterances=2)
    assert groups["adult"]["cer"] == pytest.approx(1 / len("twotwotreethree")) and groups["adult"]["num_utterances"] == 4
    assert list(summary["groups"]["speaker"]) == ["None"]
    assert "age_group=child: CER 0.00%" in format_summary(summary)


def test_loop_guard_count_is_summed_and_printed_when_the_guard_is_on(overfit_model, tmp_path, monkeypatch):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    off = evaluate(recognizer, manifest, str(tmp_path / "off"), plots=0)
    assert off["loop_guard_fired"] == 0 and "loop guard" not in format_summary(off)
    decode = asr.transcribe.decode_memory
    monkeypatch.setattr(asr.transcribe, "decode_memory",
                        lambda *a: [replace(r, loop_guard_fired=2) for r in decode(*a)])
    on = evaluate(recognizer, manifest, str(tmp_path / "on"), DecodingOptions(loop_guard=30), plots=0)
    assert on["loop_guard_fired"] == 2 * 6
    assert json.loads((tmp_path / "on" / "summary.json").read_text())["loop_guard_fired"] == 12
    assert "loops 0, loop guard fired 12 times)" in format_summary(on)


def test_attention_plot_titles_name_the_heads_they_average():
    import torch
    from asr.evaluate import heads_label
    assert heads_label(torch.ones(3, 4, dtype=torch.bool)) == "all heads"
    chosen = torch.zeros(3, 4, dtype=torch.bool)
    chosen[1, 2] = chosen[2, 0] = True
    assert heads_label(chosen) == "heads 1.2 2.0"


def test_evaluate_and_transcribe_share_the_long_recording_default(overfit_model, tmp_path):
    """A recording longer than anything the model trained on: both commands cut it by default (at the
    longest training utterance), both decode it whole with chunk_seconds 0, and they agree."""
    import numpy as np
    import soundfile as sf
    from asr.audio import load_audio
    from asr.segments import Segment
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    utts = load_manifest(manifest)
    samples = np.concatenate([load_audio(u.path) for u in utts[:4]])
    long_path = tmp_path / "long.wav"
    sf.write(long_path, samples, 16000)
    long_manifest = str(tmp_path / "long.jsonl")
    write_manifest(long_manifest, [Segment("long", str(long_path), len(samples) / 16000,
                                           " ".join(u.text for u in utts[:4]))])
    for chunk, expected in ((None, recognizer.default_chunk_seconds), (0.0, None)):
        options = recognizer.options(chunk_seconds=chunk)
        summary = evaluate(recognizer, long_manifest, str(tmp_path / f"eval_{chunk}"), options, plots=0)
        [transcript] = recognizer.transcribe(str(long_path), options)
        assert summary["chunk_seconds"] == expected
        hyp = json.loads(open(tmp_path / f"eval_{chunk}" / "results.jsonl").readline())["hyp"]
        assert hyp == transcript.text
    assert len(samples) / 16000 > 2 * recognizer.default_chunk_seconds  # so the default did cut


def test_chinese_plots_get_a_font_with_han_glyphs_when_one_is_installed():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    from asr.evaluate import HAN_FONTS, use_han_font

    before = list(plt.rcParams["font.sans-serif"])
    use_han_font(plt, ["<blank>", "a", "b"])  # no Han characters: nothing changes
    assert plt.rcParams["font.sans-serif"] == before
    use_han_font(plt, ["<blank>", "我", "们"])
    first = plt.rcParams["font.sans-serif"][0]
    if first not in HAN_FONTS:
        pytest.skip("no font with Han glyphs installed (apt-get install fonts-wqy-zenhei)")
    assert font_manager.findfont(first, fallback_to_default=False)
    plt.rcParams["font.sans-serif"] = before


def test_scoring_in_windows_adds_up_to_scoring_whole(overfit_model, tmp_path):
    """evaluate decodes and scores a window of utterances at a time (flat memory for any test set):
    every count, the groups and the per-utterance report are those of one pass over everything."""
    model_path, manifest = overfit_model
    utts = load_manifest(manifest)
    for i, utt in enumerate(utts):
        utt.info["age_group"] = "child" if i % 3 else "adult"
    utts[1].text, utts[4].text, utts[5].text = "won", "tree", "one two"  # errors in several windows
    edited = str(tmp_path / "edited.jsonl")
    write_manifest(edited, utts)
    recognizer = asr.load_model(model_path)
    whole = evaluate(recognizer, edited, str(tmp_path / "whole"), plots=0, group_by=["age_group"])
    parts = evaluate(recognizer, edited, str(tmp_path / "parts"), plots=0, group_by=["age_group"], window=4)
    timing = ("rtf", "audio_seconds", "compute_seconds", "load_seconds")
    assert {k: v for k, v in whole.items() if k not in timing} == {k: v for k, v in parts.items() if k not in timing}
    assert whole["char_errors"]["errors"] > 0 and whole["attention_failures"] == parts["attention_failures"]
    assert (tmp_path / "whole/results.jsonl").read_text() == (tmp_path / "parts/results.jsonl").read_text()
