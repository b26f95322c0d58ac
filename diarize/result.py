"""What diarizing one recording returns: `DiarizationResult`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyannote.core import Annotation

from . import regions as rg
from .formats import exclusive


@dataclass
class DiarizationResult:
    """One recording's diarization, under our names and pyannote.audio 4's (`DiarizeOutput`).

    ==============================  ================================  ==========================================
    ours                            pyannote.audio 4                  what
    ==============================  ================================  ==========================================
    `annotation`                    `speaker_diarization`             turns; two speakers may overlap
    `exclusive_annotation`          `exclusive_speaker_diarization`   one speaker at a time
    `centroids` (dict by label)     `speaker_embeddings` (S, D)       unit mean embedding of each speaker
    ==============================  ================================  ==========================================

    The exclusive view is decided frame by frame (base-window piece by piece): in an overlap, the
    speaker clustering gave that stretch keeps it and the one the overlap step added is dropped,
    so it covers the same speech as `annotation`. It is what `--exclusive`, SRT/VTT output and
    transcript alignment use.

    The result also answers `pyannote.core.Annotation`'s methods and attributes (`itertracks`,
    `labels()`, `get_timeline()`, `uri`, `len()`, iteration) from `annotation`, so code written
    for pyannote 3, which returned the annotation itself, keeps working. It is not an `Annotation`
    instance: pass `speaker_diarization` where a real one is checked for.
    """

    annotation: Annotation
    regions: np.ndarray  # speech regions used, (K, 2) seconds
    num_speakers: int
    duration: float  # seconds of audio
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    overlap: np.ndarray = field(default_factory=lambda: rg.EMPTY.copy())  # overlapped speech (pyannote-seg), (K, 2) s
    # Per speaker label: the unit-length mean of its base-scale window embeddings, (D,) float32.
    # Lets callers match speakers across files (diarize.speakers) or export them (formats.to_json).
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    # One speaker at a time (see the class docstring); None: derived from `annotation` by
    # `formats.exclusive` (longer turn keeps an overlap), for results built without the pipeline.
    exclusive_annotation: Annotation | None = None

    @property
    def speaker_diarization(self) -> Annotation:
        """pyannote 4's name for `annotation`."""
        return self.annotation

    @property
    def exclusive_speaker_diarization(self) -> Annotation:
        """pyannote 4's name for the exclusive view (`exclusive_annotation`)."""
        if self.exclusive_annotation is None:
            self.exclusive_annotation = exclusive(self.annotation)
        return self.exclusive_annotation

    @property
    def speaker_embeddings(self) -> np.ndarray:
        """pyannote 4's shape of `centroids`: (S, D) float32, row s for `speaker_diarization.labels()[s]`
        ((0, 0) when there is no speaker)."""
        rows = [self.centroids[lab] for lab in self.annotation.labels() if lab in self.centroids]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: Annotation's API, answered by `annotation`.
        # Private and dunder names are refused so that copy/pickle never recurse here.
        if name.startswith("_") or name == "annotation":
            raise AttributeError(name)
        try:
            return getattr(self.annotation, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def __len__(self) -> int:
        return len(self.annotation)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.annotation)
