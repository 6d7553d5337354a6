import numpy as np
import pytest

from asr.audio import AudioError
from asr.inputs import collect_segments

SR = 16000


def test_collect_segments_from_folder_manifest_and_array(shared_data, overfit_model):
    _, manifest = overfit_model
    clips = collect_segments([shared_data / "clips"], SR)
    assert len(clips) == 20 and [c.id for c in clips] == sorted(c.id for c in clips)  # recursive, sorted
    assert {c.id.rsplit(".", 1)[1] for c in clips} == {"wav", "flac"}
    from_manifest = collect_segments([manifest], SR)
    assert [s.text for s in from_manifest] == ["one", "one", "two", "two", "three", "three"]
    array = collect_segments([np.zeros(8000, dtype=np.float32)], SR)[0]
    assert array.duration == 0.5 and array.load(SR).shape == (8000,)


def test_unreadable_files_are_reported_or_raise(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        collect_segments([bad], SR)
    errors = []
    assert collect_segments([bad], SR, on_error=errors.append) == [] and "bad.wav" in errors[0]
