import os
from pathlib import Path

import pytest

from data_prep.fsdd import DIGITS

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASR_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read in place (never written)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real speech data not found at {SHARED_DATA} (set ASR_SHARED_DATA)")
    return SHARED_DATA



@pytest.fixture(scope="session")
def overfit_model(shared_data, tmp_path_factory):
    """A tiny model trained (about 10 s) until it transcribes six real FSDD recordings, and their
    manifest: (model path, manifest path)."""
    from asr.audio import audio_duration
    from asr.segments import Segment, write_manifest
    from asr.config import TrainConfig
    from asr.train import train

    folder = tmp_path_factory.mktemp("overfit")
    rec = shared_data / "fsdd" / "recordings"
    paths = [(d, rec / f"{d}_george_{t}.wav") for d in (1, 2, 3) for t in (10, 11)]
    manifest = str(folder / "utts.jsonl")
    write_manifest(manifest, [Segment(id=p.stem, path=str(p), duration=audio_duration(str(p)), text=DIGITS[d])
                              for d, p in paths])
    cfg = TrainConfig(preset="tiny", epochs=100, max_batch_seconds=10, num_workers=0, warmup_steps=10,
                      peak_lr=0.005, keep_best=1, average_best=1, threads=1,
                      model=dict(dropout=0.0, specaugment=dict(freq_masks=0, time_masks=0)))
    return train(cfg, manifest, manifest, str(folder / "exp")), manifest
