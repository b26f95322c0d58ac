"""Fast mode: a speech region's frames are encoded once and every window in it is pooled from them
(`embed_scales_fast`), instead of embedding each window on its own (`embeddings.embed_spans`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .config import EmbeddingConfig
from .models.base import FrameEncoder, map_batches
from .spans import (
    TRIM_AFTER_GROWTH_MB,
    Batching,
    Progress,
    ladder_rows,
    ladder_size,
    release_freed_memory,
    stream_spans,
    window_audio,
    window_samples,
)
from .windows import ScaleWindows

# Fast mode: frames per pooling call (~2.7 min of TitaNet's 10 ms frames). Pooling holds ~5 copies of them in
# float32 at once (TitaNet: ~1 GB at this size), which a small GPU must fit; a few calls per hour cost nothing.
POOL_MAX_FRAMES = 1 << 14


def chunk_plan(num_samples: int, chunk: int, context: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """Overlapping chunks covering a region of `num_samples` samples: (start, end, core_start, core_end).

    The cores tile the region in equal parts of at most `chunk - 2 * context` samples; each
    chunk is its core plus `context` samples of real audio on either side (less at the region
    ends), its start moved back to a multiple of `align` (so that a model's frame and segment
    grids fall on the same samples in every chunk). A window is pooled from the chunk whose core
    holds its midpoint, so with `context` >= half the longest window plus the encoder's
    receptive field it never sees a chunk edge.
    """
    if num_samples <= chunk:
        return [(0, num_samples, 0, num_samples)]
    stride = chunk - 2 * context
    if stride <= 0:
        raise ValueError(f"chunk ({chunk} samples) must be longer than twice the context ({context} samples)")
    n = -(-num_samples // stride)
    bounds = [round(k * num_samples / n) for k in range(n + 1)]
    plan = []
    for c0, c1 in zip(bounds[:-1], bounds[1:]):
        start = max(0, (c0 - context) // align * align)
        plan.append((start, min(num_samples, c1 + context), c0, c1))
    return plan


def embed_scales_fast(
    audio: np.ndarray,
    regions: np.ndarray,
    scales: list[ScaleWindows],
    model: FrameEncoder,
    chunk_s: float = 30.0,
    context_s: float = 3.0,
    min_embed_s: float = 0.5,
    progress: Progress | None = None,
    local_context_s: float | None = None,
    batching: Batching = Batching(),
) -> list[np.ndarray]:
    """Fast mode: (N_s, D) float32 embeddings per scale, like exact mode (`embed_spans`), with the
    model's frame encoder run once per speech region instead of once per window.

    `regions` (K, 2) seconds are the speech regions the windows were cut from; each window is pooled
    (`model.pool_frames`) from the frames (`model.encode_frames`) of its region. A region longer than
    `chunk_s` is encoded in overlapping chunks (`chunk_plan`, `context_s` of context each side).

    What differs from exact mode (see the models' fast-mode notes): feature
    normalisation and the models' global context (TitaNet's SE squeeze, CAM++'s context
    masks) cover the chunk, not the window; a window's edge frames see the audio around it; a
    window starts on the nearest encoder frame (10 ms TitaNet, 20 ms CAM++). A region shorter
    than `min_embed_s` is tiled to that length as exact mode tiles its windows, so those
    windows (the whole region) get their exact-mode embeddings.

    `batching`: encode chunks of any length together in zero-padded batches of at most `batching.seconds`
    of padded audio, longest first (the model masks the padding), shapes from a ladder with
    `batching.few_shapes`, as `embed_spans`. `batching.seconds` None: one chunk per call.
    """
    out = [np.zeros((len(s), model.embedding_dim), dtype=np.float32) for s in scales]
    if not any(len(s) for s in scales):
        return out
    spans = [window_samples(s.starts, s.ends) for s in scales]
    # Every window of every scale, tagged with (scale, row).
    first = np.concatenate([f for f, _ in spans])
    length = np.concatenate([n for _, n in spans])
    scale_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(scales)])
    row_of = np.concatenate([np.arange(len(s)) for s in scales])
    min_len = int(round(min_embed_s * SAMPLE_RATE))
    chunk, context = int(round(chunk_s * SAMPLE_RATE)), int(round(context_s * SAMPLE_RATE))
    jobs = _chunk_jobs(first, length, regions, chunk, context, int(model.chunk_align), min_len)

    def encode(spec: tuple[list[int], int, int]) -> tuple[torch.Tensor, np.ndarray]:
        batch, width, full = spec
        rows = ladder_rows(len(batch), full) if batching.few_shapes else len(batch)
        x, lengths = _batch_audio(audio, [jobs[j] for j in batch], width, rows)
        frames, n_valid = model.encode_frames(torch.from_numpy(x), lengths=lengths, local_context_s=local_context_s)
        return frames, n_valid.cpu().numpy()

    specs = _batches(jobs, batching)
    for (batch, _, _), (frames, n_valid) in zip(specs, map_batches(encode, specs, model.device)):
        for group in _pool_groups(n_valid[: len(batch)]):
            chunks = [(jobs[batch[row]], row) for row in group]
            idx, emb = _pool(model, frames, n_valid, chunks, first, length, min_len)
            for i in np.unique(scale_of[idx]):
                sel = scale_of[idx] == i
                out[i][row_of[idx[sel]]] = emb[sel]
            if progress is not None:
                progress(len(idx))
        release_freed_memory(TRIM_AFTER_GROWTH_MB)
    return out


Job = tuple[int, int, int, np.ndarray]  # a chunk to encode: (input start sample, its length, real samples, its windows)


def _chunk_jobs(
    first: np.ndarray, length: np.ndarray, regions: np.ndarray, chunk: int, context: int, align: int, min_len: int
) -> list[Job]:
    """Every chunk of every region that has windows to pool (windows go to their region by midpoint, then
    to the chunk whose core holds it). Inputs shorter than `min_len` samples are tiled up to it."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
    r_first, r_len = window_samples(regions[:, 0], regions[:, 1])
    mid = first + length / 2
    region_of = np.searchsorted(r_first, mid, side="right") - 1
    inside = (region_of >= 0) & (mid <= r_first[np.maximum(region_of, 0)] + r_len[np.maximum(region_of, 0)])
    if not inside.all():
        raise ValueError(f"embed_scales_fast: {int((~inside).sum())} window(s) lie outside the given regions")
    order = np.argsort(region_of, kind="stable")
    bounds = np.searchsorted(region_of[order], np.arange(len(regions) + 1))
    jobs: list[Job] = []
    for k in range(len(regions)):
        members = order[bounds[k] : bounds[k + 1]]
        if len(members) == 0:
            continue
        r0, rn = int(r_first[k]), int(r_len[k])
        plan = chunk_plan(rn, chunk, context, align)
        core_starts = np.array([p[2] for p in plan])
        which = np.clip(np.searchsorted(core_starts, mid[members] - r0, side="right") - 1, 0, len(plan) - 1)
        for c, (c0, c1, _, _) in enumerate(plan):
            idx = members[which == c]
            if len(idx):
                jobs.append((r0 + c0, max(c1 - c0, min_len), c1 - c0, idx))
    return jobs


def _batches(jobs: list[Job], batching: Batching) -> list[tuple[list[int], int, int]]:
    """(jobs, width, rows of a full batch) per encoder call: one job a call without `batching.seconds`,
    else longest first (each batch pads little); with `batching.few_shapes` widths come from a ladder."""
    if batching.seconds is None:
        return [([j], jobs[j][1], 1) for j in range(len(jobs))]
    batches = []
    by_len = sorted(range(len(jobs)), key=lambda j: -jobs[j][1])
    j = 0
    while j < len(by_len):
        width = jobs[by_len[j]][1]
        width = ladder_size(width) if batching.few_shapes else width
        n = max(1, int(batching.seconds * SAMPLE_RATE) // width)
        batches.append((by_len[j : j + n], width, n))
        j += n
    return batches


def _batch_audio(audio: np.ndarray, jobs: list[Job], width: int, rows: int) -> tuple[np.ndarray, torch.Tensor]:
    """The zero-padded (rows, width) input of `jobs` and its (rows,) lengths; rows past the jobs are
    copies of the last one (not pooled)."""
    x = np.zeros((rows, width), dtype=np.float32)
    for row, (start, n, real, _) in enumerate(jobs):
        x[row, :n] = window_audio(audio, start, real, n)
    x[len(jobs) :] = x[len(jobs) - 1]
    lengths = torch.tensor([job[1] for job in jobs] + [jobs[-1][1]] * (rows - len(jobs)))
    return x, lengths


def _pool_groups(n_valid: np.ndarray) -> Iterator[list[int]]:
    """Rows of an encoded batch pooled together, at most POOL_MAX_FRAMES valid frames in all."""
    rows: list[int] = []
    held = 0
    for row in range(len(n_valid)):
        if rows and held + n_valid[row] > POOL_MAX_FRAMES:
            yield rows
            rows, held = [], 0
        rows.append(row)
        held += int(n_valid[row])
    yield rows


def _pool(
    model: FrameEncoder,
    frames: torch.Tensor,
    n_valid: np.ndarray,
    chunks: list[tuple[Job, int]],
    first: np.ndarray,
    length: np.ndarray,
    min_len: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool the windows of several encoded chunks (job, row of `frames`) in one call, their valid frames
    side by side (a window never crosses a chunk): on a GPU, per-call overhead, not arithmetic, bounds
    pooling. Returns (the windows, their (N, D) embeddings)."""
    hop = int(model.frame_hop)
    parts, k0s, k1s, idxs, offset = [], [], [], [], 0
    for (start, _, real, idx), row in chunks:
        nv = int(n_valid[row])
        # [k0, k1) frames of the windows in this chunk of nv valid frames that starts at sample `start`.
        k0 = np.round((first[idx] - start) / hop).astype(np.int64)
        nf = model.num_frames(torch.from_numpy(length[idx])).cpu().numpy()
        k1 = np.minimum(k0 + np.maximum(nf, 1), nv)
        k0 = np.clip(np.minimum(k0, k1 - 1), 0, None)
        if real < min_len:  # tiled like exact mode: a window that is the whole region pools every frame
            whole = length[idx] >= real
            k0[whole], k1[whole] = 0, nv
        parts.append(frames[row, :, :nv])
        k0s.append(k0 + offset)
        k1s.append(k1 + offset)
        idxs.append(idx)
        offset += nv
    seq = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    emb = model.pool_frames(seq, torch.from_numpy(np.concatenate(k0s)), torch.from_numpy(np.concatenate(k1s)))
    return np.concatenate(idxs), emb.detach().float().cpu().numpy()


def embed_blocks_fast(
    blocks: Iterable[np.ndarray],
    regions: np.ndarray,
    scales: list[ScaleWindows],
    model: FrameEncoder,
    cfg: EmbeddingConfig,
    progress: Progress | None,
) -> list[np.ndarray]:
    """`embed_blocks` in fast mode: `embed_scales_fast` on the regions each block completes."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
    out = [np.zeros((len(s), model.embedding_dim), dtype=np.float32) for s in scales]
    r_first, r_len = window_samples(regions[:, 0], regions[:, 1])
    owner = [np.searchsorted(regions[:, 0], s.midpoints, side="right") - 1 for s in scales]
    local = cfg.fast_local_context_s if model.local_context else None
    batching = Batching.for_device(cfg, model.device)

    def embed(buf: np.ndarray, buf_start: int, ready_regions: np.ndarray) -> None:
        ready = np.zeros(len(regions), dtype=bool)
        ready[ready_regions] = True
        off = buf_start / SAMPLE_RATE
        picks = [np.flatnonzero(ready[np.clip(o, 0, None)] & (o >= 0)) for o in owner]
        sub = [
            ScaleWindows(s.window, s.shift, s.weight, s.starts[i] - off, s.ends[i] - off) for s, i in zip(scales, picks)
        ]
        embs = embed_scales_fast(
            buf,
            regions[ready] - off,
            sub,
            model,
            chunk_s=cfg.fast_chunk_s,
            context_s=cfg.fast_context_s,
            min_embed_s=cfg.min_embed_s,
            progress=progress,
            local_context_s=local,
            batching=batching,
        )
        for o, i, e in zip(out, picks, embs):
            o[i] = e

    stream_spans(blocks, r_first, r_len, embed)
    return out
