"""The diarization pipeline: audio -> speech regions -> multi-scale windows -> embeddings
-> clustering -> speaker turns. `Diarizer` and the CLI are thin layers over `diarize_audio`."""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Timeline

from .audio import SAMPLE_RATE, AudioError, load_audio, to_mono_16k
from .clustering import cluster
from .config import DiarizerConfig, load_config
from .embeddings import embed_all_scales
from .models import SpeakerEmbedder, load_model
from .rttm import labels_to_annotation
from .vad import oracle_regions, speech_regions
from .windows import multiscale_windows

STAGES = ("load", "vad", "windows", "embeddings", "clustering", "output")


@dataclass
class DiarizationResult:
    annotation: Annotation
    regions: np.ndarray  # speech regions used, (K, 2) seconds
    num_speakers: int
    duration: float  # seconds of audio
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    overlap: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # overlapped speech (pyannote-seg), (K, 2) s


class Progress:
    """A minimal stderr progress bar, shown only on a terminal."""

    def __init__(self, total: int, label: str, enabled: bool | None = None):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(30 * frac)
            print(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr)


def diarize_audio(
    audio: np.ndarray,
    model: SpeakerEmbedder,
    cfg: DiarizerConfig,
    uri: str = "audio",
    oracle_vad: Annotation | None = None,
    uem: Timeline | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    progress: bool | None = False,
    timings: dict[str, float] | None = None,
) -> DiarizationResult:
    """Diarize mono 16 kHz float32 `audio`. Stage timings are added to `timings` if given."""
    t = timings if timings is not None else {}
    duration = len(audio) / SAMPLE_RATE

    t0 = time.perf_counter()
    overlap = np.zeros((0, 2))  # overlapped-speech regions (only pyannote-seg finds them)
    if oracle_vad is not None:
        regions = oracle_regions(oracle_vad, uem)
    else:
        regions, overlap = speech_regions(audio, cfg.vad)
        if uem is not None:
            from .vad import intersect_regions

            regions = intersect_regions(regions, np.array([[s.start, s.end] for s in uem]).reshape(-1, 2))
            overlap = intersect_regions(overlap, np.array([[s.start, s.end] for s in uem]).reshape(-1, 2))
    regions = regions[regions[:, 0] < duration]
    regions[:, 1] = np.minimum(regions[:, 1], duration)
    t1 = time.perf_counter()
    t["vad"] = t.get("vad", 0.0) + t1 - t0

    scales = multiscale_windows(regions, cfg.windows)
    t2 = time.perf_counter()
    t["windows"] = t.get("windows", 0.0) + t2 - t1

    total = sum(len(s) for s in scales)
    bar = Progress(total, f"{uri}: embedding", enabled=progress if progress is not None else None)
    embeddings = embed_all_scales(audio, scales, model, cfg.embedding.batch_size, cfg.embedding.min_embed_s,
                                  progress=bar if bar.enabled else None)
    bar.close()
    t3 = time.perf_counter()
    t["embeddings"] = t.get("embeddings", 0.0) + t3 - t2

    result = cluster(embeddings, scales, cfg.clustering, num_speakers, min_speakers, max_speakers)
    t4 = time.perf_counter()
    t["clustering"] = t.get("clustering", 0.0) + t4 - t3

    base = scales[-1]
    if cfg.vad.overlap_assignment and len(overlap) and len(base):
        from .overlap import overlap_aware_annotation

        annotation = overlap_aware_annotation(base.starts, base.ends, result.labels, embeddings[-1], overlap,
                                              uri=uri, context_s=cfg.vad.overlap_context_s)
    else:
        annotation = labels_to_annotation(base.starts, base.ends, result.labels, uri=uri)
    t["output"] = t.get("output", 0.0) + time.perf_counter() - t4
    return DiarizationResult(annotation, regions, len(annotation.labels()), duration, t, overlap)


class Diarizer:
    """Python API: `Diarizer.from_config("meeting").diarize("meeting.wav") -> Annotation`."""

    def __init__(self, config: DiarizerConfig | None = None, model: SpeakerEmbedder | str | None = None,
                 device: str | None = None, quiet: bool = False):
        self.config = config or DiarizerConfig()
        if device is not None:
            self.config.embedding.device = device
        if model is None or isinstance(model, str):
            model = load_model(model or self.config.embedding.model, self.config.embedding.device, quiet=quiet)
        self.model = model
        self.quiet = quiet

    @classmethod
    def from_config(cls, preset_or_path: str | os.PathLike = "general", **kwargs) -> "Diarizer":
        return cls(load_config(preset_or_path), **kwargs)

    def run(self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None, *,
            uri: str | None = None, oracle_vad: Annotation | None = None, uem: Timeline | None = None,
            num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None,
            progress: bool | None = False) -> DiarizationResult:
        """Like `diarize` but returns the full `DiarizationResult` (regions, timings)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if isinstance(audio, (str, os.PathLike)):
            uri = uri or Path(audio).stem
            wav = load_audio(audio)
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required when passing a waveform")
            wav = to_mono_16k(np.asarray(audio), sample_rate)
            uri = uri or "waveform"
        if len(wav) == 0:
            raise AudioError(f"{uri}: audio has no samples (0 seconds)")
        timings["load"] = time.perf_counter() - t0
        result = diarize_audio(wav, self.model, self.config, uri=uri, oracle_vad=oracle_vad, uem=uem,
                               num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
                               progress=progress, timings=timings)
        if len(result.regions) == 0 and not self.quiet:
            warnings.warn(f"{uri}: no speech found; the result is empty", stacklevel=2)
        return result

    def diarize(self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None, *,
                num_speakers: int | None = None, oracle_vad: Annotation | None = None, **kwargs) -> Annotation:
        return self.run(audio, sample_rate, num_speakers=num_speakers, oracle_vad=oracle_vad, **kwargs).annotation
