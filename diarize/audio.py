"""Audio in: any file soundfile reads -> mono float32 at 16 kHz, whole or in blocks."""
from __future__ import annotations

import os
from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """The input cannot be used as audio; the message names the file and the problem."""


def _open(path: str | os.PathLike) -> sf.SoundFile:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from None


def audio_duration(path: str | os.PathLike) -> float:
    with _open(path) as f:
        return f.frames / f.samplerate


def to_mono_16k(samples: np.ndarray, sample_rate: int, source: str = "<waveform>") -> np.ndarray:
    """Mix (frames, channels) or (frames,) audio to mono and resample to 16 kHz, float32.

    NaN/inf samples are refused rather than silently zeroed: they mean a broken file.
    """
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    elif x.ndim != 1:
        raise AudioError(f"{source}: expected 1-D or (frames, channels) audio, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE:
        if sample_rate <= 0:
            raise AudioError(f"{source}: invalid sample rate {sample_rate}")
        g = gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return x


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Whole file as mono float32 at 16 kHz."""
    blocks = list(read_blocks(path))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def read_blocks(path: str | os.PathLike, block_seconds: float = 600.0) -> Iterator[np.ndarray]:
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
            piece = y[off: off + n]
            out_done += len(piece)
            start += block
            yield piece
