import numpy as np
import pytest

from asr.audio import load_audio
from asr.chunking import quietest_cut, split_long
from asr.inputs import collect_segments

SR = 16000


def test_quietest_cut_lands_in_the_pause():
    rng = np.random.default_rng(0)
    audio = np.concatenate([rng.normal(0, 0.3, SR), np.zeros(SR // 2), rng.normal(0, 0.3, SR)]).astype(np.float32)
    cut = quietest_cut(audio, SR, search_from=SR // 2)
    assert SR + SR // 20 <= cut <= SR + SR // 2 - SR // 20  # inside the 0.5 s silence


def test_long_recordings_split_into_contiguous_pieces(shared_data):
    path = str(shared_data / "clips" / "en" / "lhotse_2412-153948-0000.flac")
    segment = collect_segments([path], SR)[0]
    pieces = split_long(segment, SR, chunk_seconds=5.0)
    assert len(pieces) >= 3 and all(p.duration <= 5.0 for p in pieces)
    assert pieces[0].offset == 0 and sum(p.duration for p in pieces) == pytest.approx(segment.duration)
    for a, b in zip(pieces, pieces[1:]):
        assert b.offset == pytest.approx(a.offset + a.duration)
    joined = np.concatenate([p.load(SR) for p in pieces])
    whole = load_audio(path)
    assert abs(len(joined) - len(whole)) <= len(pieces)  # rounding at each cut, at most a sample
    assert np.corrcoef(joined[:len(whole) // 2], whole[:len(whole) // 2])[0, 1] > 0.99
