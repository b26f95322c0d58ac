"""Embed every multi-scale window, batching windows of equal length (no padding, no tiling waste),
block by block over the audio (`embed_blocks`): only the (N, D) float32 embeddings are kept."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .config import EmbeddingConfig
from .models.base import SpeakerEmbedder
from .windows import ScaleWindows

Progress = Callable[[int], None]  # called with the number of windows just embedded


def window_samples(starts: np.ndarray, ends: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
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


def embed_windows(
    audio: np.ndarray,
    scale: ScaleWindows,
    model: SpeakerEmbedder,
    batch_size: int = 64,
    min_embed_s: float = 0.5,
    progress: Progress | None = None,
    max_batch_seconds: float | None = None,
) -> np.ndarray:
    """(N, D) float32 embeddings of one scale's windows, in window order."""
    if len(scale) == 0:
        return np.zeros((0, model.embedding_dim), dtype=np.float32)
    first, length = window_samples(scale.starts, scale.ends)
    return embed_spans(audio, first, length, model, batch_size, min_embed_s, progress=progress,
                       max_batch_seconds=max_batch_seconds)


def embed_spans(
    audio: np.ndarray,
    first: np.ndarray,
    length: np.ndarray,
    model: SpeakerEmbedder,
    batch_size: int = 64,
    min_embed_s: float = 0.5,
    offset: int = 0,
    progress: Progress | None = None,
    max_batch_seconds: float | None = None,
) -> np.ndarray:
    """(N, D) float32 embeddings of the sample spans [first, first + length).

    `offset` is the file sample index of `audio[0]`, so a block of a long file can be
    passed with the spans it fully contains (see `embed_blocks`).
    """
    out = np.zeros((len(first), model.embedding_dim), dtype=np.float32)
    min_len = int(round(min_embed_s * SAMPLE_RATE))
    # Group by length: at a given scale nearly all windows share the full length.
    for L in np.unique(length):
        idx = np.flatnonzero(length == L)
        target = max(int(L), min_len)
        step = batch_size
        if max_batch_seconds:
            step = max(1, min(batch_size, int(max_batch_seconds * SAMPLE_RATE) // target))
        for b in range(0, len(idx), step):
            chunk = idx[b: b + step]
            batch = np.stack([_window(audio, first[i] - offset, int(L), target) for i in chunk])
            emb = model.embed_batch(torch.from_numpy(batch))
            out[chunk] = emb.detach().float().cpu().numpy()
            if progress is not None:
                progress(len(chunk))
    return out


def _window(audio: np.ndarray, start: int, length: int, target: int) -> np.ndarray:
    x = audio[start: start + length]
    if len(x) < length:  # a window touching the very end of a resampled file
        x = np.pad(x, (0, length - len(x)))
    return tile_to(x, target) if target > length else x


def embed_all_scales(
    audio: np.ndarray,
    scales: list[ScaleWindows],
    model: SpeakerEmbedder,
    batch_size: int = 64,
    min_embed_s: float = 0.5,
    progress: Progress | None = None,
    max_batch_seconds: float | None = None,
) -> list[np.ndarray]:
    return [embed_windows(audio, s, model, batch_size, min_embed_s, progress, max_batch_seconds) for s in scales]


def embed_blocks(
    blocks: Iterable[np.ndarray],
    scales: list[ScaleWindows],
    model: SpeakerEmbedder,
    cfg: EmbeddingConfig,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """(N_s, D) float32 embeddings of every scale's windows, reading the audio block by block.

    In each block (plus the carried-over tail of the previous one, at most one window long)
    every window whose samples it fully contains is embedded; windows running past the end of
    the audio are zero-padded. A recording that fits in one block is embedded in one go, and
    the result does not depend on the block size up to float rounding from batch make-up.
    """
    spans = [window_samples(s.starts, s.ends) for s in scales]
    out = [np.zeros((len(s), model.embedding_dim), dtype=np.float32) for s in scales]
    pending = [np.ones(len(s), dtype=bool) for s in scales]
    # CPU caches favour small batches of long windows; accelerators want large batches.
    max_batch_s = cfg.max_batch_seconds if model.device.type == "cpu" else None
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # file sample index of buf[0]

    def embed_ready(final: bool) -> None:
        buf_end = buf_start + len(buf)
        for (first, length), emb, todo in zip(spans, out, pending):
            ready = todo & ((first + length <= buf_end) | final)
            if ready.any():
                idx = np.flatnonzero(ready)
                assert first[idx].min() >= buf_start, "a window's samples were dropped before embedding"
                emb[idx] = embed_spans(buf, first[idx], length[idx], model, cfg.batch_size, cfg.min_embed_s,
                                       offset=buf_start, progress=progress, max_batch_seconds=max_batch_s)
                todo[idx] = False

    for block in blocks:
        buf = np.concatenate([buf, block]) if len(buf) else block
        embed_ready(final=False)
        # Keep only the tail that windows still to come start in (< one window long).
        starts = [first[todo].min() for (first, _), todo in zip(spans, pending) if todo.any()]
        keep_from = min(min(starts) if starts else buf_start + len(buf), buf_start + len(buf))
        buf = buf[keep_from - buf_start:].copy()  # a view would keep the whole block alive
        buf_start = keep_from
    embed_ready(final=True)
    return out
