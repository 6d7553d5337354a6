import os

import numpy as np

from asr.cache import AudioCache
from asr.segments import Segment


def test_cache_returns_the_exact_samples_and_decodes_once(shared_data, tmp_path, monkeypatch):
    path = str(shared_data / "speechocean762" / "WAVE" / "SPEAKER0001" / "000010011.opus")
    segment = Segment("u", path, 2.58)
    cache = AudioCache(str(tmp_path / "cache"), 16000)
    first = cache.load(segment)
    assert np.array_equal(first, segment.load(16000)) and first.dtype == np.float32
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    def no_decoding(self, sample_rate):
        raise AssertionError("decoded again")

    monkeypatch.setattr(Segment, "load", no_decoding)
    assert np.array_equal(cache.load(segment), first)


def test_cache_key_follows_the_file_the_stretch_and_the_rate(tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    cache = AudioCache(str(tmp_path / "cache"), 16000)
    whole, part = Segment("a", str(path), 0.1), Segment("a", str(path), 0.05, offset=0.02)
    key = cache.key(whole)
    assert cache.key(part) != key and AudioCache(str(tmp_path / "cache"), 8000).key(whole) != key
    sf.write(path, np.ones(1600, dtype=np.float32) * 0.5, 16000)
    os.utime(path, ns=(1, 1))  # a rewritten file: new modification time
    assert cache.key(whole) != key
    assert cache.load(whole).max() == 0.5
