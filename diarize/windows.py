"""Multi-scale windows cut inside speech regions, the way NeMo's diarizer cuts them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import WindowConfig


@dataclass
class ScaleWindows:
    window: float
    shift: float
    weight: float
    starts: np.ndarray  # (N,) seconds
    ends: np.ndarray  # (N,) seconds

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def midpoints(self) -> np.ndarray:
        return (self.starts + self.ends) / 2


def cut_region(
    start: float, end: float, window: float, shift: float, min_window: float
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `window` s every `shift` s inside [start, end).

    A region shorter than the window keeps one window of its own length; the last
    window is clipped at the region end (a short leftover); pieces of
    `min_window` s or less are dropped. Windows never cross the region boundary.
    """
    dur = end - start
    # round() guards against float noise such as (2.0 - 1.5) / 0.25 = 1.9999999.
    n = 1 if dur < window else math.ceil(round((dur - window) / shift, 9)) + 1
    s = start + shift * np.arange(n)
    e = np.minimum(s + window, end)
    keep = (e - s) > min_window
    return s[keep], e[keep]


def multiscale_windows(regions: np.ndarray, cfg: WindowConfig) -> list[ScaleWindows]:
    """One `ScaleWindows` per scale, longest first; the last is the base scale."""
    scales = []
    for window, shift, weight in zip(cfg.window_lengths, cfg.shifts, cfg.weights):
        pieces = [cut_region(s, e, window, shift, cfg.min_window_s) for s, e in np.asarray(regions).reshape(-1, 2)]
        starts = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0)
        ends = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0)
        scales.append(ScaleWindows(window, shift, weight, starts, ends))
    return scales
