"""The interface every speaker-embedding model in `diarize` implements."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SpeakerEmbedder(Protocol):
    """A speaker-embedding network with its own feature front end.

    `embed_batch` takes a batch of equal-length mono waveforms at `sample_rate`
    (float32, roughly in [-1, 1]) and returns one raw (not L2-normalised)
    embedding per row. Implementations run in eval mode under `torch.inference_mode`.
    """

    name: str
    sample_rate: int
    embedding_dim: int
    device: torch.device

    def embed_batch(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) float32 waveforms -> (B, embedding_dim) float32 embeddings."""
        ...

    def to(self, device: torch.device | str) -> "SpeakerEmbedder":
        ...
