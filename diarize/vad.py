"""Speech regions: oracle (from a reference RTTM, optionally cut by a UEM), energy-based,
Silero VAD or pyannote segmentation (`speech_regions` dispatches on `VADConfig.method`).

Regions are an (K, 2) float64 array of [start, end] seconds, sorted, non-overlapping.
"""
from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Timeline
from scipy.ndimage import median_filter

from .audio import SAMPLE_RATE
from .config import VADConfig


def oracle_regions(reference: Annotation, uem: Timeline | None = None) -> np.ndarray:
    """Union of the reference's speaker turns, like NeMo's oracle VAD.

    Overlapping turns are merged but turns that merely touch stay separate (NeMo
    does the same by nudging each start by 20 us), so a speaker change at a touch
    point is also a region boundary. Restricted to `uem` when given.
    """
    segs = sorted((s.start, s.end) for s in reference.get_timeline() if s.duration > 0)
    merged: list[list[float]] = []
    for start, end in segs:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    regions = np.array(merged, dtype=np.float64).reshape(-1, 2)
    if uem is not None:
        regions = intersect_regions(regions, np.array([[s.start, s.end] for s in uem.support()]).reshape(-1, 2))
    return regions[regions[:, 1] - regions[:, 0] > 2e-5]


def intersect_regions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for s, e in a:
        for us, ue in b:
            lo, hi = max(s, us), min(e, ue)
            if hi > lo:
                out.append((lo, hi))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def frame_energy_db(audio: np.ndarray, frame_s: float) -> np.ndarray:
    """Log energy (dB) of consecutive non-overlapping frames; a trailing partial frame is dropped.

    Non-overlapping frames let a long file be processed block by block (blocks a
    multiple of the frame length) with results identical to one pass.
    """
    n = int(round(frame_s * SAMPLE_RATE))
    k = len(audio) // n
    frames = audio[: k * n].reshape(k, n).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)


def energy_regions(frame_db: np.ndarray, cfg: VADConfig) -> np.ndarray:
    """Speech regions from per-frame energies (see `VADConfig` for the rule)."""
    if len(frame_db) == 0:
        return np.zeros((0, 2))
    db = median_filter(frame_db, size=max(1, cfg.smooth_frames), mode="nearest") if cfg.smooth_frames > 1 else frame_db
    peak = np.percentile(db, 99)
    floor = max(np.percentile(db, cfg.noise_percentile), peak - cfg.dynamic_range_db)
    # Whole file quiet (no frame clearly above the floor): nothing to find.
    if peak - floor < cfg.onset_db:
        return np.zeros((0, 2))
    onset, offset = floor + cfg.onset_db, floor + cfg.offset_db
    active = np.zeros(len(db), dtype=bool)
    on = False
    for i, v in enumerate(db):  # hysteresis needs the previous state
        on = v > onset if not on else v > offset
        active[i] = on
    return _clean_regions(_runs(active) * cfg.frame_s, cfg, total=len(db) * cfg.frame_s)


def _runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) frame indices of True runs."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1).astype(np.float64)


def _clean_regions(regions: np.ndarray, cfg: VADConfig, total: float) -> np.ndarray:
    if len(regions) == 0:
        return regions.reshape(0, 2)
    # Fill short pauses first, then drop short blips (NeMo's filter_speech_first=False order
    # would drop the pieces of a word split by a short pause).
    merged = [list(regions[0])]
    for s, e in regions[1:]:
        if s - merged[-1][1] < cfg.min_silence_s:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    r = np.array([x for x in merged if x[1] - x[0] >= cfg.min_speech_s]).reshape(-1, 2)
    if len(r) == 0:
        return r
    r[:, 0] = np.maximum(0.0, r[:, 0] - cfg.pad_s)
    r[:, 1] = np.minimum(total, r[:, 1] + cfg.pad_s)
    # Padding can make neighbours overlap again.
    out = [list(r[0])]
    for s, e in r[1:]:
        if s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return np.array(out, dtype=np.float64)


def energy_vad(audio: np.ndarray, cfg: VADConfig) -> np.ndarray:
    return energy_regions(frame_energy_db(audio, cfg.frame_s), cfg)


VAD_METHODS = ("energy", "silero", "pyannote-seg")


def hysteresis(scores: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Active where `scores` rose above `onset` and has not yet fallen below `offset`.

    Two thresholds keep a score hovering near one threshold from chattering on and off.
    """
    active = np.zeros(len(scores), dtype=bool)
    on = False
    for i, v in enumerate(scores):
        on = v >= offset if on else v > onset
        active[i] = on
    return active


def scores_to_regions(scores: np.ndarray, times: np.ndarray, step: float, onset: float, offset: float,
                      min_speech_s: float, min_silence_s: float, pad_s: float, total: float) -> np.ndarray:
    """Regions from frame scores (frame i centred at `times[i]`, `step` s apart): hysteresis, then
    gaps shorter than `min_silence_s` filled, regions shorter than `min_speech_s` dropped, `pad_s` added."""
    runs = _runs(hysteresis(scores, onset, offset))
    if len(runs) == 0:
        return np.zeros((0, 2))
    # A run of frames [a, b) covers from half a step before frame a's centre to half a step after frame b-1's.
    regions = np.stack([times[runs[:, 0].astype(int)] - step / 2, times[runs[:, 1].astype(int) - 1] + step / 2], axis=1)
    regions = np.clip(regions, 0.0, total)
    cfg = VADConfig(min_speech_s=min_speech_s, min_silence_s=min_silence_s, pad_s=pad_s)
    return _clean_regions(regions, cfg, total)


def speech_regions(audio: np.ndarray, cfg: VADConfig) -> tuple[np.ndarray, np.ndarray]:
    """(speech regions, overlap regions) of 16 kHz mono `audio` by `cfg.method`.

    Only pyannote-seg detects overlapped speech; the other methods return no overlap regions.
    """
    none = np.zeros((0, 2))
    if cfg.method == "energy":
        return energy_vad(audio, cfg), none
    if cfg.method == "silero":
        from .models.silero import silero_regions

        return silero_regions(audio, cfg), none
    if cfg.method == "pyannote-seg":
        from .models.pyannet import segmentation_regions

        return segmentation_regions(audio, cfg)
    raise ValueError(f"unknown VAD method {cfg.method!r}; choose one of {', '.join(VAD_METHODS)}")
