"""Windows as sample spans of the audio: cutting them out (short ones tiled), batch shapes that
accelerators see few of, streaming the spans block by block over a recording, and handing the memory
of past batches back to the OS. Shared by exact mode (`embeddings`) and fast mode (`fast_embeddings`)."""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .audio import SAMPLE_RATE
from .config import EmbeddingConfig

if TYPE_CHECKING:
    import torch

Progress = Callable[[int], None]  # called with the number of windows just embedded


# glibc keeps the freed workspace of past batches resident: batches of different shapes leave holes the
# next ones do not fit, and a CPU run's heap grows by 25-50 MB a batch (benchmarks/RESULTS.md, "Memory of
# the embedding stage"). It is handed back once resident memory has grown this much since the last time.
# A trim costs the next batch the page faults of its workspace: after every batch it cost 35 % more time,
# every 8 batches 8 %. The growth bound took as long as every 8 batches on a 1 h file and cut its peak RSS
# from 1,111 to 946-976 MB (the count let spikes through).
TRIM_AFTER_GROWTH_MB = 256


def window_samples(
    starts: np.ndarray, ends: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, np.ndarray]:
    first = np.round(starts * sample_rate).astype(np.int64)
    last = np.round(ends * sample_rate).astype(np.int64)
    return first, np.maximum(last - first, 1)


def tile_to(x: np.ndarray, length: int) -> np.ndarray:
    """Repeat a short signal until it is `length` samples long.

    Tiling (as NeMo does for short windows) gives the model enough frames; unlike
    NeMo we tile to a fixed minimum, so an embedding never depends on its batch.
    """
    reps = -(-length // len(x))
    return np.tile(x, reps)[:length]


def window_audio(audio: np.ndarray, start: int, length: int, target: int) -> np.ndarray:
    x = audio[start : start + length]
    if len(x) < length:  # a window touching the very end of a resampled file
        x = np.pad(x, (0, length - len(x)))
    return tile_to(x, target) if target > length else x


@dataclass(frozen=True)
class Batching:
    """How windows or chunks are grouped into model calls: zero-padded batches of at most
    `seconds` of padded audio (None: no cap beyond the batch size), with `few_shapes` (accelerators,
    where every new input shape costs set-up time) widths and row counts from a short ladder."""

    seconds: float | None = None
    few_shapes: bool = False

    @classmethod
    def for_device(cls, cfg: EmbeddingConfig, device: torch.device) -> Batching:
        """CPU caches favour small batches of long windows; accelerators want few, large batches of few
        shapes (a call costs ~20 ms however small, CAM++ on an H200)."""
        if device.type == "cpu":
            return cls(cfg.max_batch_seconds, few_shapes=False)
        return cls(cfg.accelerator_batch_seconds, few_shapes=True)


def ladder_size(n: int) -> int:
    """The smallest k * 2**e >= n with 8 <= k < 16 (n itself below 16): at most 12.5 % larger.

    Accelerators pay for every new input shape: cuDNN sets up each convolution the first time it
    sees a shape, 80-120 ms per new CAM++ batch shape on an H100. An hour's exact-mode embedding
    made 78 batches of 34 shapes (3.9-4.7 s of its first run); with widths padded up to this ladder
    (8 steps per octave) and partly filled batches to a power-of-two fraction of a full one, 73
    batches of 9 shapes (benchmarks/RESULTS.md, "Fewer batch shapes on a GPU").
    """
    if n < 16:
        return n
    e = n.bit_length() - 4  # n >> e is in [8, 16)
    return -(-n // (1 << e)) << e


def ladder_rows(n: int, full: int) -> int:
    """Rows of a batch of `n` windows where a full one has `full`: `full` divided by a power of two,
    the smallest of those that holds `n` (the last batch of a call is filled up with copies)."""
    rows = full
    while rows // 2 >= n and rows > 1:
        rows //= 2
    return rows


_rss_after_trim = 0  # bytes resident right after the last trim


def release_freed_memory(min_growth_mb: float = 0.0) -> None:
    """Hand memory that was freed back to the OS (glibc only; elsewhere nothing), if resident memory
    has grown by at least `min_growth_mb` since the last time (0: always).

    Each scale's batches have their own sizes, and glibc keeps the freed workspace of the last
    ones in its heap: without this, a 12-min file's embedding RSS grew by ~150 MB per scale to
    ~1 GB (1 thread). Making glibc mmap every large block instead (MALLOC_MMAP_THRESHOLD_) kept
    RSS down too but made embeddings 2.2x slower.
    """
    global _rss_after_trim
    trim = _malloc_trim()
    if trim is None:
        return
    if min_growth_mb > 0 and (_resident_bytes() or 0) - _rss_after_trim < min_growth_mb * 2**20:
        return
    trim(0)
    _rss_after_trim = _resident_bytes() or 0


def _resident_bytes() -> int | None:
    try:  # Linux: the second field of statm is resident pages
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def stream_spans(
    blocks: Iterable[np.ndarray],
    first: np.ndarray,
    length: np.ndarray,
    embed: Callable[[np.ndarray, int, np.ndarray], None],
) -> None:
    """Read `blocks` (consecutive pieces of one recording) and call `embed(buf, buf_start, ready)` with
    the units (sample spans [first, first + length)) that the audio read so far holds whole, each unit
    once: `buf` is the audio from file sample `buf_start` on. Units running past the end of the audio go
    with the last call. Only the tail that units still to come start in is kept between blocks.
    """
    pending = np.ones(len(first), dtype=bool)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # file sample index of buf[0]

    def embed_ready(final: bool) -> None:
        ready = np.flatnonzero(pending & ((first + length <= buf_start + len(buf)) | final))
        if len(ready):
            embed(buf, buf_start, ready)
            pending[ready] = False

    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else block
        embed_ready(final=False)
        buf_end = buf_start + len(buf)
        keep_from = int(first[pending].min()) if pending.any() else buf_end
        keep_from = max(buf_start, min(keep_from, buf_end))
        buf = buf[keep_from - buf_start :].copy()  # a view would keep the whole block alive
        buf_start = keep_from
    embed_ready(final=True)
