"""Embed every multi-scale window, block by block over the audio (`embed_blocks`), in zero-padded
batches of windows of any length, longest first: only the (N, D) float32 embeddings are kept.
Fast mode (`fast_embeddings`) pools the windows from each region's frames instead."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .config import DiarizerConfig, EmbeddingConfig
from .errors import ConfigError
from .fast_embeddings import embed_blocks_fast
from .models.base import FrameEncoder, SpeakerEmbedder, cpu_has_native_bf16, map_batches
from .spans import TRIM_AFTER_GROWTH_MB, Batching, Progress, ladder_rows, ladder_size, release_freed_memory
from .spans import stream_spans, window_audio, window_samples
from .windows import ScaleWindows


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


def embed_spans(
    audio: np.ndarray,
    first: np.ndarray,
    length: np.ndarray,
    model: SpeakerEmbedder,
    batch_size: int = 64,
    min_embed_s: float = 0.5,
    offset: int = 0,
    progress: Progress | None = None,
    batching: Batching = Batching(),
) -> np.ndarray:
    """(N, D) float32 embeddings of the sample spans [first, first + length).

    `offset` is the file sample index of `audio[0]`, so a block of a long file can be
    passed with the spans it fully contains (see `embed_blocks`). Windows are batched longest
    first, at most `batch_size` of them and `batching.seconds` of padded audio per batch; a
    batch of unequal windows is zero-padded to its longest and passed with the lengths (the
    model masks the padding, so a window's embedding does not depend on its batch beyond float
    rounding). Mixing lengths matters: region ends cut a window of a new length per scale, and
    one call per length cost ~20 ms each on a GPU and 15-25 % of the embedding time on CPU.
    `batching.few_shapes` (accelerators): batch shapes come from a short ladder (`ladder_size`), see there.
    """
    out = np.zeros((len(first), model.embedding_dim), dtype=np.float32)
    target = np.maximum(length, int(round(min_embed_s * SAMPLE_RATE)))  # short windows are tiled up to this
    order = np.argsort(-target, kind="stable")  # longest first: little padding per batch
    specs = []  # (windows, width, rows) of each batch
    b = 0
    while b < len(order):
        width = int(target[order[b]])
        width = ladder_size(width) if batching.few_shapes else width
        step = batch_size
        if batching.seconds:
            step = max(1, min(batch_size, int(batching.seconds * SAMPLE_RATE) // width))
        chunk = order[b : b + step]
        b += len(chunk)
        specs.append((chunk, width, ladder_rows(len(chunk), step) if batching.few_shapes else len(chunk)))

    def embed(spec: tuple[np.ndarray, int, int]) -> np.ndarray:
        chunk, width, rows = spec
        batch = np.zeros((rows, width), dtype=np.float32)
        for row, i in enumerate(chunk):
            batch[row, : target[i]] = window_audio(audio, first[i] - offset, int(length[i]), int(target[i]))
        lengths = target[np.concatenate([chunk, np.full(rows - len(chunk), chunk[-1])])]
        batch[len(chunk) :] = batch[len(chunk) - 1]  # filler rows: copies of the last window, dropped below
        padded = bool((lengths != width).any())
        emb = model.embed_batch(torch.from_numpy(batch), **({"lengths": torch.from_numpy(lengths)} if padded else {}))
        return emb[: len(chunk)].detach().float().cpu().numpy()

    for (chunk, _, _), emb in zip(specs, map_batches(embed, specs, model.device)):
        out[chunk] = emb
        if progress is not None:
            progress(len(chunk))
        release_freed_memory(TRIM_AFTER_GROWTH_MB)
    release_freed_memory()
    return out


def check_inputs_fit(model: SpeakerEmbedder, cfg: DiarizerConfig) -> None:
    """Refuse, before any audio is read, settings whose shortest window input is below what `model` can
    embed (CAM++'s fbank needs 720 samples): pieces are longer than `windows.min_window_s` and are tiled up
    to `embedding.min_embed_s`. Raises ConfigError naming both keys."""
    need = getattr(model, "min_samples", 0)  # a model without a minimum takes any length
    if not need:
        return
    sr = getattr(model, "sample_rate", SAMPLE_RATE)
    shortest = int(max(cfg.windows.min_window_s, cfg.embedding.min_embed_s) * sr)
    if shortest < need:
        raise ConfigError(
            f"{model.name} needs at least {need / sr:.3f} s per input, but windows.min_window_s "
            f"{cfg.windows.min_window_s} and embedding.min_embed_s {cfg.embedding.min_embed_s} allow "
            f"{shortest / sr:.3f} s: raise embedding.min_embed_s"
        )


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
            return embed_blocks_fast(blocks, regions, scales, model, cfg, progress)
        return _embed_blocks_exact(blocks, scales, model, cfg, progress)


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
    batching = Batching.for_device(cfg, model.device)

    def embed(buf: np.ndarray, buf_start: int, ready: np.ndarray) -> None:
        assert first[ready].min() >= buf_start, "a window's samples were dropped before embedding"
        out[ready] = embed_spans(
            buf, first[ready], length[ready], model, cfg.batch_size, cfg.min_embed_s, buf_start, progress, batching
        )

    stream_spans(blocks, first, length, embed)
    return np.split(out, np.cumsum([len(s) for s in scales])[:-1]) if scales else []
