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

from .audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, read_blocks, to_mono_16k
from .clustering import cluster
from .config import DiarizerConfig, load_config
from .embeddings import embed_all_scales, embed_spans, window_samples
from .models import SpeakerEmbedder, load_model
from .rttm import labels_to_annotation
from .vad import energy_regions, frame_energy_db, intersect_regions, oracle_regions, speech_regions
from .windows import multiscale_windows

STAGES = ("load", "vad", "windows", "embeddings", "clustering", "output")
# Files longer than this are diarized block by block (`diarize_file_streaming`): holding
# 10 h of float32 audio alone would take 2.3 GB.
STREAMING_THRESHOLD_S = 1800.0
STREAM_BLOCK_S = 600.0


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
                                  progress=bar if bar.enabled else None,
                                  max_batch_seconds=cfg.embedding.max_batch_seconds if model.device.type == "cpu" else None)
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


def _timed_blocks(path: str | os.PathLike, block_seconds: float, t: dict[str, float]):
    """read_blocks, with the time spent reading and resampling added to t["load"]."""
    it = read_blocks(path, block_seconds)
    while True:
        t0 = time.perf_counter()
        try:
            block = next(it)
        except StopIteration:
            t["load"] = t.get("load", 0.0) + time.perf_counter() - t0
            return
        t["load"] = t.get("load", 0.0) + time.perf_counter() - t0
        yield block


def _stream_energy_vad(path: str | os.PathLike, cfg: DiarizerConfig, block_seconds: float,
                       t: dict[str, float]) -> tuple[np.ndarray, int]:
    """Energy VAD in one pass over the file: per-frame energies block by block, then the usual rule.

    Frames do not overlap, so carrying the < 1 frame left at each block's end into the next
    block gives exactly the frames of a whole-file pass. Returns (regions, number of samples).
    """
    frame = int(round(cfg.vad.frame_s * SAMPLE_RATE))
    parts: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    total = 0
    for block in _timed_blocks(path, block_seconds, t):
        t0 = time.perf_counter()
        total += len(block)
        x = np.concatenate([carry, block]) if len(carry) else block
        used = len(x) // frame * frame
        parts.append(frame_energy_db(x[:used], cfg.vad.frame_s))
        carry = x[used:].copy()
        t["vad"] = t.get("vad", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    regions = energy_regions(np.concatenate(parts) if parts else np.zeros(0), cfg.vad)
    t["vad"] = t.get("vad", 0.0) + time.perf_counter() - t0
    return regions, total


SEAM_GAP_S = 0.05


def _stream_block_vad(path: str | os.PathLike, cfg: DiarizerConfig, block_seconds: float,
                      t: dict[str, float]) -> tuple[np.ndarray, int]:
    """A neural VAD run block by block; regions that meet at a block seam are joined.

    (Overlap regions are not kept on this path: overlap assignment is for in-memory files.)
    """
    parts: list[np.ndarray] = []
    seams: list[float] = []
    total = 0
    for block in _timed_blocks(path, block_seconds, t):
        t0 = time.perf_counter()
        regions, _ = speech_regions(block, cfg.vad)
        parts.append(regions + total / SAMPLE_RATE)
        total += len(block)
        seams.append(total / SAMPLE_RATE)
        t["vad"] = t.get("vad", 0.0) + time.perf_counter() - t0
    # A region cut by a seam ends at the block end and resumes within a frame or two (the models'
    # frames do not line up with the seam): join gaps under SEAM_GAP_S that contain a seam.
    seam_arr = np.array(seams)
    merged: list[list[float]] = []
    for s, e in (np.concatenate(parts) if parts else np.zeros((0, 2))):
        if merged and s - merged[-1][1] < SEAM_GAP_S and np.any(
                (seam_arr >= merged[-1][1] - 1e-6) & (seam_arr <= s + 1e-6)):
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return np.array(merged, dtype=np.float64).reshape(-1, 2), total


def _num_samples_16k(path: str | os.PathLike) -> int:
    """Length of the file once resampled to 16 kHz, as read_blocks produces it."""
    import soundfile as sf

    info = sf.info(str(path))
    if info.samplerate == SAMPLE_RATE:
        return int(info.frames)
    return int(round(info.frames * SAMPLE_RATE / info.samplerate))


def diarize_file_streaming(
    path: str | os.PathLike,
    model: SpeakerEmbedder,
    cfg: DiarizerConfig,
    uri: str | None = None,
    oracle_vad: Annotation | None = None,
    uem: Timeline | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    progress: bool | None = False,
    timings: dict[str, float] | None = None,
    block_seconds: float = STREAM_BLOCK_S,
) -> DiarizationResult:
    """`diarize_audio` for a file too long to hold in memory: at most one block of audio at a time.

    Pass 1 (energy VAD only) reads the file block by block for frame energies. Pass 2 reads
    it again and embeds, in each block, every window of every scale whose samples the block
    (plus the carried-over tail of the previous one, at most one window long) fully contains.
    Only the (N, D) float32 embeddings are kept. Windows, clustering and output are as in
    `diarize_audio`; results match it up to float rounding from different batch make-up.
    """
    t = timings if timings is not None else {}
    uri = uri or Path(path).stem
    t0 = time.perf_counter()
    if oracle_vad is not None:
        regions = oracle_regions(oracle_vad, uem)
        n_samples = _num_samples_16k(path)
        t["vad"] = t.get("vad", 0.0) + time.perf_counter() - t0
    elif cfg.vad.method == "energy":
        regions, n_samples = _stream_energy_vad(path, cfg, block_seconds, t)
    else:
        regions, n_samples = _stream_block_vad(path, cfg, block_seconds, t)
        if uem is not None:
            regions = intersect_regions(regions, np.array([[s.start, s.end] for s in uem]).reshape(-1, 2))
    if n_samples == 0:
        raise AudioError(f"{uri}: audio has no samples (0 seconds)")
    duration = n_samples / SAMPLE_RATE
    regions = regions[regions[:, 0] < duration]
    regions[:, 1] = np.minimum(regions[:, 1], duration)

    t1 = time.perf_counter()
    scales = multiscale_windows(regions, cfg.windows)
    spans = [window_samples(s.starts, s.ends) for s in scales]
    t2 = time.perf_counter()
    t["windows"] = t.get("windows", 0.0) + t2 - t1

    emb_cfg = cfg.embedding
    embeddings = [np.zeros((len(s), model.embedding_dim), dtype=np.float32) for s in scales]
    pending = [np.ones(len(s), dtype=bool) for s in scales]
    bar = Progress(sum(len(s) for s in scales), f"{uri}: embedding",
                   enabled=progress if progress is not None else None)
    report = bar if bar.enabled else None
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # file sample index of buf[0]

    def embed_ready(final: bool) -> None:
        buf_end = buf_start + len(buf)
        for (first, length), out, todo in zip(spans, embeddings, pending):
            ready = todo & ((first + length <= buf_end) | final)
            if ready.any():
                idx = np.flatnonzero(ready)
                assert first[idx].min() >= buf_start, "a window's samples were dropped before embedding"
                out[idx] = embed_spans(buf, first[idx], length[idx], model, emb_cfg.batch_size,
                                       emb_cfg.min_embed_s, offset=buf_start, progress=report)
                todo[idx] = False

    for block in _timed_blocks(path, block_seconds, t):
        t3 = time.perf_counter()
        buf = np.concatenate([buf, block]) if len(buf) else block
        del block
        embed_ready(final=False)
        # Keep only the tail that windows still to come start in (< one window long).
        starts = [first[todo].min() for (first, _), todo in zip(spans, pending) if todo.any()]
        keep_from = min(min(starts) if starts else buf_start + len(buf), buf_start + len(buf))
        buf = buf[keep_from - buf_start:].copy()
        buf_start = keep_from
        t["embeddings"] = t.get("embeddings", 0.0) + time.perf_counter() - t3
    t3 = time.perf_counter()
    embed_ready(final=True)  # windows running past the end (zero-padded, as in diarize_audio)
    del buf
    bar.close()
    t4 = time.perf_counter()
    t["embeddings"] = t.get("embeddings", 0.0) + t4 - t3

    result = cluster(embeddings, scales, cfg.clustering, num_speakers, min_speakers, max_speakers)
    t5 = time.perf_counter()
    t["clustering"] = t.get("clustering", 0.0) + t5 - t4

    base = scales[-1]
    annotation = labels_to_annotation(base.starts, base.ends, result.labels, uri=uri)
    t["output"] = t.get("output", 0.0) + time.perf_counter() - t5
    return DiarizationResult(annotation, regions, len(annotation.labels()), duration, t)


class Diarizer:
    """Python API: `Diarizer.from_config("meeting").diarize("meeting.wav") -> Annotation`."""

    def __init__(self, config: DiarizerConfig | None = None, model: SpeakerEmbedder | str | None = None,
                 device: str | None = None, quiet: bool = False,
                 streaming_threshold_s: float = STREAMING_THRESHOLD_S):
        self.config = config or DiarizerConfig()
        self.streaming_threshold_s = streaming_threshold_s  # files longer than this are read block by block
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
        if isinstance(audio, (str, os.PathLike)) and audio_duration(audio) > self.streaming_threshold_s:
            result = diarize_file_streaming(audio, self.model, self.config, uri=uri, oracle_vad=oracle_vad, uem=uem,
                                            num_speakers=num_speakers, min_speakers=min_speakers,
                                            max_speakers=max_speakers, progress=progress, timings=timings)
            if len(result.regions) == 0 and not self.quiet:
                warnings.warn(f"{result.annotation.uri}: no speech found; the result is empty", stacklevel=2)
            return result
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
        if len(result.regions) == 0:
            warnings.warn(f"{uri}: no speech found; the result is empty", stacklevel=2)
        return result

    def diarize(self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None, *,
                num_speakers: int | None = None, oracle_vad: Annotation | None = None, **kwargs) -> Annotation:
        return self.run(audio, sample_rate, num_speakers=num_speakers, oracle_vad=oracle_vad, **kwargs).annotation
