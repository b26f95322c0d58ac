"""Silero VAD (MIT) speech regions: its TorchScript model scores every 32 ms of 16 kHz audio.

The model file comes from the `silero-vad` package when it is installed
(`pip install diarize[silero]`, which needs only torch), else it is fetched once
from the pinned `silero-vad` wheel on PyPI into the diarize cache (sha256-checked),
so the core install stays light. Frame scoring and region building are our own.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..errors import WeightsUnavailable
from .hub import WEIGHTS, cache_dir, weights_path

FRAME = 512  # samples per score at 16 kHz (the model's fixed input size)


def silero_model_path() -> Path:
    """The TorchScript model: from the installed `silero_vad` package, else the cache / pinned wheel."""
    try:
        from importlib import resources

        p = resources.files("silero_vad.data").joinpath("silero_vad.jit")
        if p.is_file():
            return Path(str(p))
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    try:
        return weights_path("silero")
    except WeightsUnavailable as e:
        raise WeightsUnavailable(
            f"Silero VAD is not available: `pip install silero-vad` "
            f"(or put {WEIGHTS['silero'].cache_name} in {cache_dir()}); {e}"
        ) from None


@functools.lru_cache(maxsize=1)
def _load_model() -> torch.jit.ScriptModule:
    import warnings

    path = silero_model_path()
    with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated; it still loads
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        return torch.jit.load(str(path), map_location="cpu").eval()


@torch.inference_mode()
def silero_probs(audio: np.ndarray) -> np.ndarray:
    """Speech probability of every 512-sample frame (the last one zero-padded).

    The model is recurrent and also keeps a little audio context between calls, so
    frames must be fed in order from a fresh state.
    """
    model = _load_model()
    model.reset_states()
    n = len(audio)
    k = -(-n // FRAME)
    x = np.zeros(k * FRAME, dtype=np.float32)
    x[:n] = audio
    wav = torch.from_numpy(x).view(k, FRAME)
    out = np.empty(k, dtype=np.float32)
    for i in range(k):
        out[i] = float(model(wav[i : i + 1], SAMPLE_RATE))
    return out
