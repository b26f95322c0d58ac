"""Speech regions as (K, 2) float64 arrays of [start, end] seconds, sorted and non-overlapping,
and the interval arithmetic every stage shares (pyannote.core's Timeline.support/crop, on arrays).

```
a            |------|    |------|
b               |-----------|
intersect    .  |---|    |--|
merge(a ∪ b) |------------------|
```
"""

from __future__ import annotations

import numpy as np
from pyannote.core import Timeline

EMPTY = np.zeros((0, 2))


def as_regions(x: object) -> np.ndarray:
    """Any sequence of (start, end) pairs -> (K, 2) float64 array."""
    return np.asarray(x, dtype=np.float64).reshape(-1, 2)


def from_timeline(timeline: Timeline) -> np.ndarray:
    return as_regions([[s.start, s.end] for s in timeline])


def merge(regions: np.ndarray, gap: float = 0.0, join_touching: bool = True) -> np.ndarray:
    """Sort and join regions that overlap or lie less than `gap` apart.

    Regions that merely touch (end == next start) are joined unless `join_touching` is False
    (NeMo's oracle VAD keeps them apart, so a speaker change at a touch point stays a boundary).
    """
    r = as_regions(regions)
    if len(r) == 0:
        return r.copy()
    r = r[np.lexsort((r[:, 1], r[:, 0]))]
    out = [list(r[0])]
    for s, e in r[1:]:
        d = s - out[-1][1]
        if d < gap or (d == gap and join_touching) or d < 0:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return as_regions(out)


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Parts of `a` that lie inside `b` (both sorted, non-overlapping): a linear sorted sweep."""
    a, b = as_regions(a), as_regions(b)
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if hi > lo:
            out.append((lo, hi))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return as_regions(out)


def clip(regions: np.ndarray, start: float, end: float) -> np.ndarray:
    """Regions cut to [start, end]; those left empty are dropped."""
    r = as_regions(regions).copy()
    r[:, 0] = np.maximum(r[:, 0], start)
    r[:, 1] = np.minimum(r[:, 1], end)
    return r[r[:, 1] > r[:, 0]]


def drop_short(regions: np.ndarray, min_duration: float) -> np.ndarray:
    r = as_regions(regions)
    return r[r[:, 1] - r[:, 0] >= min_duration]


def pad(regions: np.ndarray, amount: float, total: float) -> np.ndarray:
    """Widen every region by `amount` on both sides within [0, total], joining those that then meet."""
    r = as_regions(regions).copy()
    if len(r) == 0 or amount == 0:
        return r
    r[:, 0] = np.maximum(0.0, r[:, 0] - amount)
    r[:, 1] = np.minimum(total, r[:, 1] + amount)
    return merge(r)


def runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) indices of the runs of True in a boolean mask, as a (K, 2) float64 array."""
    d = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1).astype(np.float64)


def duration(regions: np.ndarray) -> float:
    r = as_regions(regions)
    return float((r[:, 1] - r[:, 0]).sum())
