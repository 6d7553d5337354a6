from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

import asr
from asr.audio import load_audio
from asr.decode import DecodingOptions
from asr.chunking import split_long
from asr.inputs import collect_segments
from asr.errors import ASRError

SR = 16000


def test_api_transcribes_paths_and_arrays_alike(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    sources = collect_segments([manifest], SR)
    by_path = recognizer.transcribe([s.path for s in sources])
    by_array = recognizer.transcribe([load_audio(s.path) for s in sources])
    assert [t.text for t in by_path] == [t.text for t in by_array] == [s.text for s in sources]
    first = by_path[0]
    assert first.name == sources[0].path and len(first.nbest) == 1 and first.score == first.nbest[0][1]
    assert [tok for tok, _ in first.tokens] == list("one")
    assert all(0 <= time <= first.duration for _, time in first.tokens)


def test_nbest_is_sorted_and_deterministic(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    options = DecodingOptions(beam_size=4, nbest=3)
    first, again = recognizer.transcribe(manifest, options), recognizer.transcribe(manifest, options)
    for a, b in zip(first, again):
        assert a.nbest == b.nbest and len(a.nbest) >= 2
        scores = [s for _, s in a.nbest]
        assert scores == sorted(scores, reverse=True) and a.nbest[0][0] == a.text


def test_long_recording_is_cut_in_the_pause_and_joined(overfit_model, tmp_path):
    model_path, manifest = overfit_model
    sources = collect_segments([manifest], SR)
    one, three = load_audio(sources[0].path), load_audio(sources[4].path)
    gap = np.zeros(SR * 3 // 10, dtype=np.float32)
    path = tmp_path / "one_three.wav"
    sf.write(path, np.concatenate([one, gap, three]), SR)
    # the cut falls within the last third of the first chunk: inside the pause
    chunk = (len(one) + 0.25 * SR) / SR
    pieces = split_long(collect_segments([path], SR)[0], SR, chunk)
    assert len(pieces) == 2 and len(one) / SR < pieces[1].offset < (len(one) + len(gap)) / SR
    recognizer = asr.load_model(model_path)
    options = recognizer.options(chunk_seconds=chunk, piece_seconds=chunk)
    alone = recognizer.transcribe([p.load(SR) for p in pieces], options)
    joined = recognizer.transcribe(path, options)[0]
    assert alone[0].text == "one" and joined.text == f"one {alone[1].text}"
    assert joined.tokens == alone[0].tokens + [(tok, pieces[1].offset + t) for tok, t in alone[1].tokens]
    assert joined.duration == pytest.approx((len(one) + len(gap) + len(three)) / SR)


def test_recordings_longer_than_training_utterances_are_cut_by_default(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    longest = max(s.duration for s in collect_segments([manifest], SR))
    assert longest <= recognizer.default_chunk_seconds < longest + 0.01
    one = load_audio(collect_segments([manifest], SR)[0].path)
    options = DecodingOptions(beam_size=4, nbest=2)
    [short] = recognizer.transcribe(one, options)
    [cut] = recognizer.transcribe(np.concatenate([one, one, one]), options)
    [whole] = recognizer.transcribe(np.concatenate([one, one, one]), replace(options, chunk_seconds=0))
    [cut_at_30] = recognizer.transcribe(np.concatenate([one, one, one]), replace(options, chunk_seconds=30))
    assert len(short.nbest) == len(whole.nbest) == len(cut_at_30.nbest) == 2
    assert len(cut.nbest) == 1  # pieces joined: 1-best only


def test_a_recording_longer_than_the_limit_is_cut_into_pieces_of_half_of_it_by_default(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    one = load_audio(collect_segments([manifest], SR)[0].path)
    segment = collect_segments([np.concatenate([one] * 6)], SR)[0]
    limit = recognizer.default_chunk_seconds
    for piece, most in ((None, limit / 2), (limit, limit), (0.3 * limit, 0.3 * limit), (5 * limit, limit)):
        pieces = recognizer.pieces(segment, recognizer.options(piece_seconds=piece))
        assert len(pieces) > 1 and all(p.duration <= most + 1e-6 for p in pieces)
        assert max(p.duration for p in pieces) > 0.6 * most  # not cut smaller than asked
        assert sum(p.duration for p in pieces) == pytest.approx(segment.duration)
    short = collect_segments([one], SR)[0]
    assert recognizer.pieces(short, recognizer.options(piece_seconds=0.1)) == [short]  # within the limit: whole
    with pytest.raises(ASRError, match="piece_seconds"):
        recognizer.options(piece_seconds=0)


def test_model_file_recommends_decoding_options_and_flags_override_them(overfit_model):
    model_path, _ = overfit_model
    recognizer = asr.load_model(model_path)
    assert recognizer.options() == DecodingOptions()  # the fixture's config recommends nothing
    recognizer.info["decoding"] = {"ctc_weight": 0.5, "window_back": 4}
    assert recognizer.options().ctc_weight == 0.5 and recognizer.options().window_back == 4
    overridden = recognizer.options(ctc_weight=0.1, window_back=None)
    assert overridden.ctc_weight == 0.1 and overridden.window_back is None and overridden.beam_size == 10


def test_digital_silence_is_an_empty_transcript(overfit_model):
    recognizer = asr.load_model(overfit_model[0])
    [silent, loud] = recognizer.transcribe([np.zeros(SR, np.float32), load_audio(collect_segments([overfit_model[1]], SR)[0].path)])
    assert (silent.text, silent.words, silent.tokens) == ("", [], [])
    assert loud.text == "one"


def test_a_recording_with_nan_samples_is_reported_and_left_out_or_fails_the_call(overfit_model, tmp_path):
    from asr.audio import AudioError

    recognizer = asr.load_model(overfit_model[0])
    good = collect_segments([overfit_model[1]], SR)[0].path
    bad = np.full(SR, 0.1, np.float32)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    errors = []
    transcripts = recognizer.transcribe([str(tmp_path / "nan.wav"), good], on_error=errors.append)
    assert [t.text for t in transcripts] == ["one"] and len(errors) == 1 and "NaN or infinite" in errors[0]
    with pytest.raises(AudioError, match="NaN or infinite"):
        recognizer.transcribe([str(tmp_path / "nan.wav"), good])


def test_the_readme_python_example_runs_as_written(overfit_model, shared_data, capsys):
    """The README's example, on the test model and a clip it knows ("one")."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"From Python \(runnable.*?```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace("exp/fsdd/model.pt", overfit_model[0]).replace("../shared/data", str(shared_data))
    exec(code.replace("7_jackson_0.wav", "1_george_10.wav"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[1] == lines[1].split()[1] == "'one'"
    assert lines[0].split()[0].endswith("1_george_10.wav") and lines[1].split()[0] == "array1"
    assert "['one'" in lines[1] and "real-time factor" in lines[2]


def test_streaming_in_windows_gives_the_transcripts_of_one_call(overfit_model):
    model_path, manifest = overfit_model
    from asr.transcribe import Timing

    recognizer = asr.load_model(model_path)
    timing = Timing()
    streamed = list(recognizer.stream([manifest], timing=timing, window=4))
    whole = recognizer.transcribe([manifest])
    assert [t.to_dict() for t in streamed] == [t.to_dict() for t in whole]
    assert timing.audio_seconds == pytest.approx(whole.timing.audio_seconds)


def test_only_recordings_longer_than_training_ones_decode_long_form_and_never_share_a_batch(overfit_model,
                                                                                            monkeypatch):
    """decoder_context applies to batches of recordings all longer than the longest training utterance;
    the others are batched apart and decoded exactly as without it."""
    import asr.transcribe as transcribe
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    short = [load_audio(s.path) for s in collect_segments([manifest], SR)]
    long = np.concatenate([np.concatenate([a, np.zeros(SR // 4, dtype=np.float32)]) for a in short])
    assert len(long) > recognizer.default_chunk_seconds * SR > max(map(len, short))
    seen = []
    decode_memory = transcribe.decode_memory

    def spy(model, memory, memory_lengths, options, lm=None):
        seen.append((memory_lengths.tolist(), options.decoder_context))
        return decode_memory(model, memory, memory_lengths, options, lm)

    monkeypatch.setattr(transcribe, "decode_memory", spy)
    options = recognizer.options(chunk_seconds=0, decoder_context=4)
    mixed = recognizer.transcribe(short + [long], options)
    longest_short = max(map(len, short)) / SR / recognizer.model.seconds_per_frame
    assert [context for _, context in seen].count(4) == 1
    for lengths, context in seen:  # the long recording alone in its batch, and only it long-form
        assert (context == 4) == (lengths[0] > longest_short + 1) == (len(lengths) == 1)
    assert [t.text for t in mixed[:-1]] == [t.text for t in recognizer.transcribe(short, replace(options,
                                                                                                  decoder_context=None))]
