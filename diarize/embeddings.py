"""Embed every multi-scale window, block by block over the audio (`embed_blocks`), in zero-padded
batches of windows of any length, longest first: only the (N, D) float32 embeddings are kept."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .config import EmbeddingConfig
from .models.base import FrameEncoder, SpeakerEmbedder, cpu_has_native_bf16
from .windows import ScaleWindows

Progress = Callable[[int], None]  # called with the number of windows just embedded

# glibc keeps the freed workspace of past batches resident: batches of different shapes leave holes the
# next ones do not fit, and a CPU run's heap grows by 25-50 MB a batch (benchmarks/RESULTS.md, "Memory of
# the embedding stage"). It is handed back once resident memory has grown this much since the last time.
# A trim costs the next batch the page faults of its workspace: after every batch it cost 35 % more time,
# every 8 batches 8 %. The growth bound took as long as every 8 batches on a 1 h file and cut its peak RSS
# from 1,111 to 946-976 MB (the count let spikes through).
TRIM_AFTER_GROWTH_MB = 256
# Fast mode: frames per pooling call (~2.7 min of TitaNet's 10 ms frames). Pooling holds ~5 copies of them in
# float32 at once (TitaNet: ~1 GB at this size), which a small GPU must fit; a few calls per hour cost nothing.
POOL_MAX_FRAMES = 1 << 14


def autocast_dtype(cfg: EmbeddingConfig, device: torch.device) -> torch.dtype | None:
    """bf16 (fp16 where the GPU lacks bf16) on CUDA when `cfg.autocast`; on CPU bf16 only when
    `cfg.cpu_bf16` and the CPU has native bf16 (`cpu_has_native_bf16`); None (fp32) elsewhere."""
    if not cfg.autocast:
        return None
    if device.type == "cpu":
        return torch.bfloat16 if cfg.cpu_bf16 and cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def precision(model: SpeakerEmbedder, dtype: torch.dtype | None) -> Iterator[None]:
    """Run `model` under autocast to `dtype` (None: fp32) for the duration of the block. Models keep
    their feature front end and pooling statistics in fp32 themselves (`autocast_dtype` attribute)."""
    old = getattr(model, "autocast_dtype", None)
    model.autocast_dtype = dtype
    try:
        yield
    finally:
        model.autocast_dtype = old


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
    few_shapes: bool = False,
) -> np.ndarray:
    """(N, D) float32 embeddings of the sample spans [first, first + length).

    `offset` is the file sample index of `audio[0]`, so a block of a long file can be
    passed with the spans it fully contains (see `embed_blocks`). Windows are batched longest
    first, at most `batch_size` of them and `max_batch_seconds` of padded audio per batch; a
    batch of unequal windows is zero-padded to its longest and passed with the lengths (the
    model masks the padding, so a window's embedding does not depend on its batch beyond float
    rounding). Mixing lengths matters: region ends cut a window of a new length per scale, and
    one call per length cost ~20 ms each on a GPU and 15-25 % of the embedding time on CPU.
    `few_shapes` (accelerators): batch shapes come from a short ladder (`ladder_size`), see there.
    """
    out = np.zeros((len(first), model.embedding_dim), dtype=np.float32)
    target = np.maximum(length, int(round(min_embed_s * SAMPLE_RATE)))  # short windows are tiled up to this
    order = np.argsort(-target, kind="stable")  # longest first: little padding per batch
    b = 0
    while b < len(order):
        width = int(target[order[b]])
        width = ladder_size(width) if few_shapes else width
        step = batch_size
        if max_batch_seconds:
            step = max(1, min(batch_size, int(max_batch_seconds * SAMPLE_RATE) // width))
        chunk = order[b : b + step]
        b += len(chunk)
        rows = _ladder_rows(len(chunk), step) if few_shapes else len(chunk)
        batch = np.zeros((rows, width), dtype=np.float32)
        for row, i in enumerate(chunk):
            batch[row, : target[i]] = _window(audio, first[i] - offset, int(length[i]), int(target[i]))
        lengths = target[np.concatenate([chunk, np.full(rows - len(chunk), chunk[-1])])]
        batch[len(chunk) :] = batch[len(chunk) - 1]  # filler rows: copies of the last window, dropped below
        padded = bool((lengths != width).any())
        emb = model.embed_batch(torch.from_numpy(batch), **({"lengths": torch.from_numpy(lengths)} if padded else {}))
        out[chunk] = emb[: len(chunk)].detach().float().cpu().numpy()
        if progress is not None:
            progress(len(chunk))
        release_freed_memory(TRIM_AFTER_GROWTH_MB)
    release_freed_memory()
    return out


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


def _ladder_rows(n: int, full: int) -> int:
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


def _window(audio: np.ndarray, start: int, length: int, target: int) -> np.ndarray:
    x = audio[start : start + length]
    if len(x) < length:  # a window touching the very end of a resampled file
        x = np.pad(x, (0, length - len(x)))
    return tile_to(x, target) if target > length else x


def embed_blocks(
    blocks: Iterable[np.ndarray],
    scales: list[ScaleWindows],
    model: SpeakerEmbedder,
    cfg: EmbeddingConfig,
    progress: Progress | None = None,
    regions: np.ndarray | None = None,
) -> list[np.ndarray]:
    """(N_s, D) float32 embeddings of every scale's windows, reading the audio block by block.

    In each block (plus the carried-over tail of the previous one, at most one window long)
    every window whose samples it fully contains is embedded; windows running past the end of
    the audio are zero-padded. A recording that fits in one block is embedded in one go, and
    the result does not depend on the block size up to float rounding from batch make-up.
    With `cfg.mode == "fast"` (the default) and a model with a frame encoder, the unit is a speech region
    (`regions`, the ones the windows were cut from) instead of a window: a region is encoded once its block
    has all of it.
    """
    with precision(model, autocast_dtype(cfg, model.device)):
        # Region-level needs a frame encoder; a model that only embeds whole inputs gets per-window embeddings.
        if cfg.mode == "fast" and isinstance(model, FrameEncoder):
            if regions is None:
                raise ValueError("fast mode needs the speech regions the windows were cut from")
            return _embed_blocks_fast(blocks, regions, scales, model, cfg, progress)
        return _embed_blocks_exact(blocks, scales, model, cfg, progress)


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


def _embed_blocks_exact(
    blocks: Iterable[np.ndarray],
    scales: list[ScaleWindows],
    model: SpeakerEmbedder,
    cfg: EmbeddingConfig,
    progress: Progress | None,
) -> list[np.ndarray]:
    """`embed_blocks` in exact mode: every window on its own, once its block has all of it. The windows
    of every scale that a block completes go in one call: one partly filled last batch per block, not
    one per scale."""
    spans = [window_samples(s.starts, s.ends) for s in scales]
    first = np.concatenate([f for f, _ in spans]) if spans else np.zeros(0, dtype=np.int64)
    length = np.concatenate([n for _, n in spans]) if spans else np.zeros(0, dtype=np.int64)
    out = np.zeros((len(first), model.embedding_dim), dtype=np.float32)  # every scale's windows, in order
    # CPU caches favour small batches of long windows; accelerators want few, large batches (a call
    # costs ~20 ms however small, CAM++ on an H200).
    on_cpu = model.device.type == "cpu"
    max_batch_s = cfg.max_batch_seconds if on_cpu else cfg.accelerator_batch_seconds

    def embed(buf: np.ndarray, buf_start: int, ready: np.ndarray) -> None:
        assert first[ready].min() >= buf_start, "a window's samples were dropped before embedding"
        # On accelerators every new batch shape costs ~0.1 s of set-up (`ladder_size`): few_shapes there.
        out[ready] = embed_spans(
            buf,
            first[ready],
            length[ready],
            model,
            cfg.batch_size,
            cfg.min_embed_s,
            offset=buf_start,
            progress=progress,
            max_batch_seconds=max_batch_s,
            few_shapes=not on_cpu,
        )

    stream_spans(blocks, first, length, embed)
    return np.split(out, np.cumsum([len(s) for s in scales])[:-1]) if scales else []


# --------------------------------------------------------------------------- fast mode
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
    batch_seconds: float | None = None,
    few_shapes: bool = False,
) -> list[np.ndarray]:
    """Fast mode: (N_s, D) float32 embeddings per scale, like exact mode (`embed_spans`), with the
    model's frame encoder run once per speech region instead of once per window.

    `regions` (K, 2) seconds are the speech regions the windows were cut from
    (`windows.multiscale_windows(regions, ...)`); each window is pooled
    (`model.pool_frames`) from the frames (`model.encode_frames`) of its region. A region
    longer than `chunk_s` is encoded in overlapping chunks (`chunk_plan`, `context_s` of
    context each side). The model is a `FrameEncoder` (TitaNet and CAM++ are).

    What differs from exact mode (see the models' fast-mode notes): feature
    normalisation and the models' global context (TitaNet's SE squeeze, CAM++'s context
    masks) cover the chunk, not the window; a window's edge frames see the audio around it; a
    window starts on the nearest encoder frame (10 ms TitaNet, 20 ms CAM++). A region shorter
    than `min_embed_s` is tiled to that length as exact mode tiles its windows, so those
    windows (the whole region) get their exact-mode embeddings.

    `batch_seconds`: encode chunks of any length together in zero-padded batches of at most this
    much padded audio, longest first (the model masks the padding). None: one chunk per call.
    `few_shapes` (accelerators, with `batch_seconds`): batch shapes from a ladder, as `embed_spans`.
    """
    out = [np.zeros((len(s), model.embedding_dim), dtype=np.float32) for s in scales]
    spans = [window_samples(s.starts, s.ends) for s in scales]
    if not any(len(s) for s in scales):
        return out
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
    r_first, r_len = window_samples(regions[:, 0], regions[:, 1])
    # Every window of every scale, tagged with (scale, row) and its region (by midpoint).
    first = np.concatenate([f for f, _ in spans])
    length = np.concatenate([n for _, n in spans])
    scale_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(scales)])
    row_of = np.concatenate([np.arange(len(s)) for s in scales])
    mid = first + length / 2
    region_of = np.searchsorted(r_first, mid, side="right") - 1
    inside = (region_of >= 0) & (mid <= r_first[np.maximum(region_of, 0)] + r_len[np.maximum(region_of, 0)])
    if not inside.all():
        raise ValueError(f"embed_scales_fast: {int((~inside).sum())} window(s) lie outside the given regions")

    hop = int(model.frame_hop)
    align = int(model.chunk_align)
    chunk, context = int(round(chunk_s * SAMPLE_RATE)), int(round(context_s * SAMPLE_RATE))
    min_len = int(round(min_embed_s * SAMPLE_RATE))
    order = np.argsort(region_of, kind="stable")
    bounds = np.searchsorted(region_of[order], np.arange(len(regions) + 1))
    # Every chunk with windows to pool: (input start sample, its length, real samples, its windows).
    jobs: list[tuple[int, int, int, np.ndarray]] = []
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

    def frame_spans(idx: np.ndarray, nv: int, start: int, real: int) -> tuple[np.ndarray, np.ndarray]:
        """[k0, k1) frames of the windows `idx` in a chunk of `nv` valid frames that starts at sample `start`."""
        k0 = np.round((first[idx] - start) / hop).astype(np.int64)
        nf = model.num_frames(torch.from_numpy(length[idx])).cpu().numpy()
        k1 = np.minimum(k0 + np.maximum(nf, 1), nv)
        k0 = np.clip(np.minimum(k0, k1 - 1), 0, None)
        if real < min_len:  # tiled like exact mode: a window that is the whole region pools every frame
            whole = length[idx] >= real
            k0[whole], k1[whole] = 0, nv
        return k0, k1

    def pool(frames: torch.Tensor, n_valid: np.ndarray, batch: list[int], rows: list[int]) -> None:
        """Pool the windows of several encoded chunks in one call, their valid frames side by side (a
        window never crosses a chunk): on a GPU, per-call overhead, not arithmetic, bounds pooling."""
        parts, k0s, k1s, idxs, offset = [], [], [], [], 0
        for row in rows:
            start, _, real, idx = jobs[batch[row]]
            nv = int(n_valid[row])
            k0, k1 = frame_spans(idx, nv, start, real)
            parts.append(frames[row, :, :nv])
            k0s.append(k0 + offset)
            k1s.append(k1 + offset)
            idxs.append(idx)
            offset += nv
        seq = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        emb = model.pool_frames(seq, torch.from_numpy(np.concatenate(k0s)), torch.from_numpy(np.concatenate(k1s)))
        emb = emb.detach().float().cpu().numpy()
        idx = np.concatenate(idxs)
        for i in np.unique(scale_of[idx]):
            sel = scale_of[idx] == i
            out[i][row_of[idx[sel]]] = emb[sel]
        if progress is not None:
            progress(len(idx))

    # (jobs, width, rows) per call; with `few_shapes` widths and row counts come from a ladder.
    batches: list[tuple[list[int], int, int]] = []
    if batch_seconds is None:
        batches = [([j], jobs[j][1], 1) for j in range(len(jobs))]
    else:  # longest first, so that each batch pads little
        by_len = sorted(range(len(jobs)), key=lambda j: -jobs[j][1])
        j = 0
        while j < len(by_len):
            width = jobs[by_len[j]][1]
            width = ladder_size(width) if few_shapes else width
            n = max(1, int(batch_seconds * SAMPLE_RATE) // width)
            batches.append((by_len[j : j + n], width, n))
            j += n
    for batch, width, full in batches:
        rows = _ladder_rows(len(batch), full) if few_shapes else len(batch)
        x = np.zeros((rows, width), dtype=np.float32)
        for row, j in enumerate(batch):
            start, n, real, _ = jobs[j]
            x[row, :n] = _window(audio, start, real, n)
        x[len(batch) :] = x[len(batch) - 1]  # filler rows: copies of the last chunk, not pooled
        lengths = torch.tensor([jobs[j][1] for j in batch] + [jobs[batch[-1]][1]] * (rows - len(batch)))
        frames, n_valid = model.encode_frames(torch.from_numpy(x), lengths=lengths, local_context_s=local_context_s)
        n_valid = n_valid.cpu().numpy()
        rows: list[int] = []  # chunks pooled together, at most POOL_MAX_FRAMES frames in all
        held = 0
        for row in range(len(batch)):
            if rows and held + n_valid[row] > POOL_MAX_FRAMES:
                pool(frames, n_valid, batch, rows)
                rows, held = [], 0
            rows.append(row)
            held += int(n_valid[row])
        pool(frames, n_valid, batch, rows)
        release_freed_memory(TRIM_AFTER_GROWTH_MB)
    return out


def _embed_blocks_fast(
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
    on_cpu = model.device.type == "cpu"

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
            batch_seconds=cfg.max_batch_seconds if on_cpu else cfg.accelerator_batch_seconds,
            few_shapes=not on_cpu,
        )
        for o, i, e in zip(out, picks, embs):
            o[i] = e

    stream_spans(blocks, r_first, r_len, embed)
    return out
