import numpy as np
import pytest
import soundfile as sf

import asr
from asr.audio import AudioError, load_audio
from asr.decode import DecodingOptions
from asr.transcribe import Source, collect_sources, length_batches, quietest_cut, split_long

SR = 16000


def test_collect_sources_from_folder_manifest_and_array(shared_data, overfit_model):
    _, manifest = overfit_model
    clips = collect_sources([shared_data / "clips"], SR)
    assert len(clips) == 20 and [c.name for c in clips] == sorted(c.name for c in clips)  # recursive, sorted
    assert {c.name.rsplit(".", 1)[1] for c in clips} == {"wav", "flac"}
    from_manifest = collect_sources([manifest], SR)
    assert [s.text for s in from_manifest] == ["one", "one", "two", "two", "three", "three"]
    array = collect_sources([np.zeros(8000, dtype=np.float32)], SR)[0]
    assert array.duration == 0.5 and array.load(SR).shape == (8000,)


def test_unreadable_files_are_reported_or_raise(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        collect_sources([bad], SR)
    errors = []
    assert collect_sources([bad], SR, on_error=errors.append) == [] and "bad.wav" in errors[0]


def test_quietest_cut_lands_in_the_pause():
    rng = np.random.default_rng(0)
    audio = np.concatenate([rng.normal(0, 0.3, SR), np.zeros(SR // 2), rng.normal(0, 0.3, SR)]).astype(np.float32)
    cut = quietest_cut(audio, SR, search_from=SR // 2)
    assert SR + SR // 20 <= cut <= SR + SR // 2 - SR // 20  # inside the 0.5 s silence


def test_long_recordings_split_into_contiguous_pieces(shared_data):
    path = str(shared_data / "clips" / "en" / "lhotse_2412-153948-0000.flac")
    source = collect_sources([path], SR)[0]
    pieces = split_long(source, SR, chunk_seconds=5.0)
    assert len(pieces) >= 3 and all(p.duration <= 5.0 for p in pieces)
    assert pieces[0].offset == 0 and sum(p.duration for p in pieces) == pytest.approx(source.duration)
    for a, b in zip(pieces, pieces[1:]):
        assert b.offset == pytest.approx(a.offset + a.duration)
    joined = np.concatenate([p.load(SR) for p in pieces])
    whole = load_audio(path)
    assert abs(len(joined) - len(whole)) <= len(pieces)  # rounding at each cut, at most a sample
    assert np.corrcoef(joined[:len(whole) // 2], whole[:len(whole) // 2])[0, 1] > 0.99


def test_length_batches_cap_padded_seconds():
    durations = [1.0, 9.0, 3.0, 2.5, 8.0, 0.5]
    batches = length_batches(durations, batch_seconds=10.0, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(durations[i] for i in b) <= 10.0 or len(b) == 1 for b in batches)
    assert batches[0] == [1]  # longest first


def test_api_transcribes_paths_and_arrays_alike(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    sources = collect_sources([manifest], SR)
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
    sources = collect_sources([manifest], SR)
    one, three = load_audio(sources[0].path), load_audio(sources[4].path)
    gap = np.zeros(SR * 3 // 10, dtype=np.float32)
    path = tmp_path / "one_three.wav"
    sf.write(path, np.concatenate([one, gap, three]), SR)
    # the cut falls within the last third of the first chunk: inside the pause
    chunk = (len(one) + 0.25 * SR) / SR
    pieces = split_long(collect_sources([path], SR)[0], SR, chunk)
    assert len(pieces) == 2 and len(one) / SR < pieces[1].offset < (len(one) + len(gap)) / SR
    recognizer = asr.load_model(model_path)
    alone = recognizer.transcribe([p.load(SR) for p in pieces], chunk_seconds=chunk)
    joined = recognizer.transcribe(path, chunk_seconds=chunk)[0]
    assert alone[0].text == "one" and joined.text == f"one {alone[1].text}"
    assert joined.tokens == alone[0].tokens + [(tok, pieces[1].offset + t) for tok, t in alone[1].tokens]
    assert joined.duration == pytest.approx((len(one) + len(gap) + len(three)) / SR)


def test_recordings_longer_than_training_utterances_are_cut_by_default(overfit_model):
    model_path, manifest = overfit_model
    recognizer = asr.load_model(model_path)
    longest = max(s.duration for s in collect_sources([manifest], SR))
    assert longest <= recognizer.default_chunk_seconds < longest + 0.01
    one = load_audio(collect_sources([manifest], SR)[0].path)
    options = DecodingOptions(beam_size=4, nbest=2)
    [short] = recognizer.transcribe(one, options)
    [cut] = recognizer.transcribe(np.concatenate([one, one, one]), options)
    [whole] = recognizer.transcribe(np.concatenate([one, one, one]), options, chunk_seconds=30)
    assert len(short.nbest) == len(whole.nbest) == 2 and len(cut.nbest) == 1  # pieces joined: 1-best only
