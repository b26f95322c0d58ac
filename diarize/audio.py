"""Audio in: any file soundfile reads -> mono float32 at 16 kHz, whole or in blocks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 1000  # a header claiming less is broken (1 Hz would make 166 KB last 23 hours)
# The highest rate studio audio uses. Above it a header is broken, and resampling from a rate with a
# large prime factor needs a filter of gigabytes (999,983 Hz took 1.3 GB, 9,999,991 Hz over 5 GB).
MAX_SAMPLE_RATE = 384_000
BLOCK_SECONDS = 600.0  # audio is read, VAD'ed and embedded this much at a time (bounded memory)
AV_HINT = "for mp3/m4a/mp4/webm and other compressed formats install PyAV: pip install 'diarize[av]'"


class DecodedAudio:
    """A file PyAV decoded, held in memory as 16 kHz mono float32 behind the part of soundfile's
    `SoundFile` interface this module uses (samplerate, frames, seek, read, context manager).

    Compressed formats cannot be read block by block at exact sample positions, so they are
    decoded whole (a 3-hour file takes about 700 MB at 16 kHz mono float32)."""

    def __init__(self, samples: np.ndarray):
        self._x, self._pos = samples.reshape(-1, 1), 0
        self.samplerate, self.frames = SAMPLE_RATE, len(samples)

    def seek(self, pos: int) -> None:
        self._pos = int(pos)

    def read(self, n: int = -1, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        end = self.frames if n < 0 else min(self.frames, self._pos + n)
        out, self._pos = self._x[self._pos : end], end
        return out.astype(dtype, copy=False) if always_2d else out[:, 0].astype(dtype, copy=False)

    def close(self) -> None:
        pass

    def __enter__(self) -> "DecodedAudio":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def decode_with_av(path: str | os.PathLike) -> DecodedAudio:
    """Decode the first audio stream of any container FFmpeg knows (mp3, m4a, mp4, webm, ...) to 16 kHz
    mono with PyAV. Raises AudioError when PyAV is missing (saying which extra to install) or fails."""
    try:
        import av
    except ImportError:
        raise AudioError(f"{path}: soundfile cannot read this file; {AV_HINT}") from None
    chunks = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except AudioError:
        raise
    except Exception as e:  # PyAV raises its own FFmpeg error family; any of them means "cannot decode"
        raise AudioError(
            f"{path}: not a readable audio file (PyAV: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return DecodedAudio(x)


def _open(path: str | os.PathLike) -> sf.SoundFile | DecodedAudio:
    path = Path(path)
    if "\0" in str(path):
        raise AudioError(f"{str(path)[:200]!r}: not a valid file name (NUL byte)")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        f = sf.SoundFile(os.fsencode(path))  # bytes: a non-UTF-8 file name opens too
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        try:
            return decode_with_av(path)
        except AudioError as av_error:
            hint = "; " + AV_HINT if AV_HINT in str(av_error) else ""
            raise AudioError(f"{path}: not a readable audio file ({e}){hint}") from None
    if f.samplerate < MIN_SAMPLE_RATE:
        f.close()
        raise AudioError(f"{path}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz (a broken header?)")
    if f.samplerate > MAX_SAMPLE_RATE:
        f.close()
        raise AudioError(f"{path}: sample rate {f.samplerate} Hz is above {MAX_SAMPLE_RATE} Hz (a broken header?)")
    return f


def to_mono_16k(samples: np.ndarray, sample_rate: int, source: str = "<waveform>") -> np.ndarray:
    """Mix audio of shape (T,), (T, C) or (C, T) to mono and resample to 16 kHz, float32.

    For 2-D input the longer axis is time (pyannote and whisperX pass (C, T), soundfile gives
    (T, C)). NaN/inf samples are refused rather than silently zeroed: they mean a broken file.
    """
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1 if x.shape[0] >= x.shape[1] else 0, dtype=np.float32)
    elif x.ndim != 1:
        raise AudioError(
            f"{source}: expected (samples,), (samples, channels) or (channels, samples) audio, got shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise AudioError(f"{source}: expected numeric samples, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE:
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, np.integer))
            or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE
        ):
            raise AudioError(
                f"{source}: invalid sample rate {sample_rate!r} "
                f"(need a whole number of Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE})"
            )
        g = gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return x


# Inputs up to this many samples are resampled here (`_resample_poly`), longer ones by scipy.signal's
# compiled loop, which is up to 7x faster (44.1 kHz) but costs ~0.9 s to import: more than this module
# takes for 4M samples (0.43 s for 90 s at 44.1 kHz, 0.09 s at 48 kHz; RESULTS.md, "Start-up"). Its Python
# loop runs once per filter phase and tap, about 20 x max(up, down) times, so rates whose ratio to 16 kHz
# reduces to larger terms (44,101 Hz: 16,000 / 44,101) go to scipy too; every common rate is below.
NUMPY_RESAMPLE_MAX_SAMPLES = 4_000_000
NUMPY_RESAMPLE_MAX_RATIO = 1000


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """`scipy.signal.resample_poly(x, up, down)` of a 1-D float32 signal (its default Kaiser low-pass, zero
    padding), bit for bit on x86-64; short inputs at common rates without importing scipy.signal (see above).
    (Where the compiler fuses scipy's multiply-adds, as it may on ARM, the two differ by float rounding.)"""
    g = gcd(up, down)
    if (
        len(x) <= NUMPY_RESAMPLE_MAX_SAMPLES
        and max(up, down) // g <= NUMPY_RESAMPLE_MAX_RATIO
        and "scipy.signal" not in sys.modules
    ):
        return _resample_poly(np.asarray(x, dtype=np.float32), up, down)
    from scipy.signal import resample_poly as scipy_resample_poly

    return scipy_resample_poly(x, up, down)


def _kaiser_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta)): a windowed sinc, unit gain at DC."""
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m)
    h *= np.i0(beta * np.sqrt(1 - (m / (0.5 * (numtaps - 1))) ** 2.0)) / np.i0(beta)
    return h / np.sum(h)


def _upfirdn_len(len_h: int, len_x: int, up: int, down: int) -> int:
    n = (len_x + (len_h + (-len_h % up)) // up - 1) * up
    return n // down + (n % down > 0)


def _resample_poly(x: np.ndarray, up: int, down: int, rows: int = 8192) -> np.ndarray:
    """What scipy's resample_poly computes for float32 `x`, in the same float32 operations and order.

    scipy's upfirdn gives output j, at input position (j * down) // up and filter phase (j * down) % up, as
    0 + x[i0] h[k0] + x[i0 + 1] h[k1] + ... over its phase's taps. Outputs of one phase read the input with
    stride `down`, so they go together: a block of `rows` of them is gathered tap-major and the taps are
    added one at a time, in scipy's order.
    """
    g = gcd(up, down)
    up, down = up // g, down // g
    if up == down == 1:
        return x.copy()
    n_out = -(-len(x) * up // down)
    half_len = 10 * max(up, down)
    h = _kaiser_lowpass(2 * half_len + 1, 1.0 / max(up, down)).astype(np.float32)
    h *= up
    # Zero padding that centres the outputs (scipy's n_pre_pad / n_post_pad / n_pre_remove).
    pre = down - half_len % down
    skip = (half_len + pre) // down
    post = 0
    while _upfirdn_len(len(h) + pre + post, len(x), up, down) < n_out + skip:
        post += 1
    taps = -(-(pre + len(h) + post) // up)  # per phase
    padded = np.zeros(taps * up, np.float32)
    padded[pre : pre + len(h)] = h
    phases = padded.reshape(taps, up).T[:, ::-1]  # phases[p, k]: phase p's k-th term (scipy's _pad_h)
    first, last = skip, skip + n_out  # outputs kept
    xp = np.zeros(taps - 1 + max(len(x), ((last - 1) * down) // up + 1), np.float32)
    xp[taps - 1 : taps - 1 + len(x)] = x  # zeros before and after add nothing, as scipy skips them
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps)
    out = np.empty(n_out, np.float32)
    cols, term = np.empty((taps, rows), np.float32), np.empty(rows, np.float32)
    for r in range(up):  # outputs j = r + up * q share a phase
        q0, q1 = -((r - first) // up), -((r - last) // up)  # ceil((first - r) / up), ceil((last - r) / up)
        if q1 <= q0:
            continue
        p, i0 = (r * down) % up, (r * down) // up
        src = windows[i0 + q0 * down : i0 + (q1 - 1) * down + 1 : down]
        dst = out[r + up * q0 - first :: up]
        for a in range(0, len(src), rows):
            n = min(rows, len(src) - a)
            c = cols[:, :n]
            c[...] = src[a : a + n].T
            acc, t = dst[a : a + n], term[:n]
            np.multiply(c[0], phases[p, 0], out=acc)
            for k in range(1, taps):
                np.multiply(c[k], phases[p, k], out=t)
                acc += t
    return out


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Whole file as mono float32 at 16 kHz."""
    blocks = list(read_blocks(path))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def read_blocks(path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield consecutive mono 16 kHz float32 blocks of about `block_seconds` each.

    Never holds more than one block of the source file in memory. Resampling is
    done per block with a few hundred samples of context on each side so block
    seams match a whole-file resample to within the filter's edge effects.
    """
    with _open(path) as f:
        sr = f.samplerate
        if f.frames == 0:
            raise AudioError(f"{path}: audio has no samples (0 seconds)")
        block = max(1, int(block_seconds * sr))
        if sr == SAMPLE_RATE:
            while True:
                try:
                    data = f.read(block, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as e:
                    raise AudioError(f"{path}: read failed ({e})") from None
                if len(data) == 0:
                    break
                yield to_mono_16k(data, sr, str(path))
            return
        # Resample with context: read [start - pad, end + pad), keep the middle.
        pad = int(0.05 * sr)
        g = gcd(sr, SAMPLE_RATE)
        up, down = SAMPLE_RATE // g, sr // g
        start = 0
        out_done = 0
        total_out = int(round(f.frames * up / down))
        while start < f.frames:
            lo = max(0, start - pad)
            f.seek(lo)
            data = f.read(min(block, f.frames - start) + (start - lo) + pad, dtype="float32", always_2d=True)
            y = to_mono_16k(data, sr, str(path))
            # Output index of `start` within y, and how many outputs this block owns.
            off = int(round((start - lo) * up / down))
            end_out = total_out if start + block >= f.frames else int(round((start + block) * up / down))
            n = end_out - out_done
            piece = y[off : off + n]
            out_done += len(piece)
            start += block
            yield piece


def num_samples_16k(path: str | os.PathLike) -> int:
    """Length of the file once resampled to 16 kHz, exactly as `read_blocks` produces it."""
    with _open(path) as f:
        if f.samplerate == SAMPLE_RATE:
            return int(f.frames)
        g = gcd(f.samplerate, SAMPLE_RATE)
        return int(round(f.frames * (SAMPLE_RATE // g) / (f.samplerate // g)))


class AudioSource:
    """A recording as 16 kHz mono float32, readable block by block as often as needed.

    A file is read lazily (only one block in memory) unless it fits in one block, which is
    then kept, so a short file is decoded once; a waveform is sliced into blocks.
    """

    def __init__(self, uri: str, num_samples: int, path: Path | None = None, waveform: np.ndarray | None = None):
        self.uri, self.num_samples, self.path, self._waveform = uri, num_samples, path, waveform

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, uri: str | None = None, block_seconds: float = BLOCK_SECONDS
    ) -> "AudioSource":
        path = Path(path)
        n = num_samples_16k(path)
        if n == 0:
            raise AudioError(f"{path}: audio has no samples (0 seconds)")
        src = cls(uri or path.stem, n, path=path)
        if n <= block_seconds * SAMPLE_RATE:
            src._waveform = load_audio(path)
            src.num_samples = len(src._waveform)
        return src

    @classmethod
    def from_waveform(cls, samples: np.ndarray, sample_rate: int, uri: str = "waveform") -> "AudioSource":
        wav = to_mono_16k(samples, sample_rate)
        if len(wav) == 0:
            raise AudioError(f"{uri}: audio has no samples (0 seconds)")
        return cls(uri, len(wav), waveform=wav)

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE

    def blocks(self, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        if self._waveform is not None:
            step = max(1, int(block_seconds * SAMPLE_RATE))
            for i in range(0, len(self._waveform), step):
                yield self._waveform[i : i + step]
        else:
            assert self.path is not None
            yield from read_blocks(self.path, block_seconds)
