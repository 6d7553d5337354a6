import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASR_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, read in place (never written)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real speech data not found at {SHARED_DATA} (set ASR_SHARED_DATA)")
    return SHARED_DATA
