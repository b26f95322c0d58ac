"""Whole-utterance embeddings and speaker verification (NeMo's get_embedding / verify_speakers)."""

from __future__ import annotations

import os

import numpy as np
import torch

from .audio import load_audio
from .config import EnergyVADConfig
from .spans import tile_to
from .errors import AudioError
from .models.base import SpeakerEmbedder
from .vad import energy_vad


def embed_waveform(model: SpeakerEmbedder, audio: np.ndarray, min_seconds: float = 0.5) -> np.ndarray:
    """One raw (D,) float32 embedding of a whole 16 kHz mono waveform."""
    if len(audio) == 0:
        raise AudioError("cannot embed 0 samples of audio")
    x = tile_to(audio, max(len(audio), int(min_seconds * model.sample_rate)))
    return model.embed_batch(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])[0].cpu().numpy()


def verification_score(a: np.ndarray, b: np.ndarray) -> float:
    """(cos + 1) / 2, NeMo's convention: 0.7 corresponds to cosine 0.4."""
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return (cos + 1.0) / 2.0


def require_speech(audio: np.ndarray, source: str, purpose: str = "verify") -> None:
    """Raise AudioError when the energy VAD finds no speech in a 16 kHz waveform: silence, hum or a
    steady tone all embed to nearly the same vector, so comparing them would call them "same"."""
    if len(energy_vad(np.asarray(audio, dtype=np.float32), EnergyVADConfig())) == 0:
        raise AudioError(f"{source}: no speech found (energy VAD); cannot {purpose} a speaker from it")


def verify(
    model: SpeakerEmbedder, a: str | os.PathLike | np.ndarray, b: str | os.PathLike | np.ndarray, threshold: float = 0.7
) -> tuple[float, bool]:
    """Score and same-speaker decision for two files or 16 kHz waveforms.

    Raises AudioError for unreadable audio or an input without speech.
    """
    embs = []
    for x, name in ((a, "first input"), (b, "second input")):
        audio = x if isinstance(x, np.ndarray) else load_audio(x)
        require_speech(audio, name if isinstance(x, np.ndarray) else str(x))
        embs.append(embed_waveform(model, audio))
    ea, eb = embs
    score = verification_score(ea, eb)
    return score, score >= threshold
