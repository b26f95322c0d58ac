"""Mixed precision: the GPU path's autocast runs on CPU here (bf16), so CI checks the code that a GPU runs;
the end-to-end GPU test skips without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, librispeech_utts, require_data
from diarize.audio import load_audio
from diarize.config import EmbeddingConfig
from diarize import embeddings
from diarize.embeddings import autocast_dtype, precision
from diarize.models.titanet import load_titanet

NEMO = Path(__file__).parent / "fixtures" / "titanet_tiny.nemo"


def test_cpu_stays_fp32_and_autocast_can_be_turned_off():
    assert autocast_dtype(EmbeddingConfig(), torch.device("cpu")) is None
    assert autocast_dtype(EmbeddingConfig(autocast=False), torch.device("cuda")) is None


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert autocast_dtype(EmbeddingConfig(cpu_bf16=True), cpu) is (torch.bfloat16 if native else None)
    assert autocast_dtype(EmbeddingConfig(), cpu) is None  # opt-in: it moves DER (RESULTS.md)
    assert autocast_dtype(EmbeddingConfig(cpu_bf16=True, autocast=False), cpu) is None


def test_cpu_bf16_is_a_config_setting_and_reaches_the_model(monkeypatch, campplus):
    """`--set embedding.cpu_bf16=true` runs the embedding stage under bf16 autocast (where the CPU has it)."""
    from diarize.config import load_config
    from diarize.windows import ScaleWindows

    cfg = load_config("exact", ["embedding.cpu_bf16=true"])  # windows embedded on their own: embed_batch
    assert cfg.embedding.cpu_bf16 is True
    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: True)
    seen = []
    real = type(campplus).embed_batch

    def spy(self, *a, **k):
        seen.append(self.autocast_dtype)
        return real(self, *a, **k)

    monkeypatch.setattr(type(campplus), "embed_batch", spy)
    audio = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    scale = ScaleWindows(1.5, 0.75, 1.0, np.array([0.0, 0.5]), np.array([1.5, 2.0]))
    embeddings.embed_blocks([audio], [scale], campplus, cfg.embedding)
    assert seen and all(d is torch.bfloat16 for d in seen)
    assert campplus.autocast_dtype is None  # restored after the stage


def _cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b).numpy()


def test_campplus_bf16_autocast_keeps_embeddings(campplus):
    require_data()
    utts = librispeech_utts("1998")[:4]
    x = torch.stack([torch.from_numpy(load_audio(f)[:24000]) for f in utts])
    ref = campplus.embed_batch(x)
    with precision(campplus, torch.bfloat16):
        assert campplus.autocast_dtype is torch.bfloat16
        low = campplus.embed_batch(x)
        frames, _ = campplus.encode_frames(x)  # the fast-mode encoder too
    assert campplus.autocast_dtype is None  # restored
    assert low.dtype == frames.dtype == torch.float32
    assert not torch.equal(low, ref)  # autocast really ran
    assert _cosines(low, ref).min() > 0.995


def test_titanet_bf16_autocast_keeps_embeddings():
    model = load_titanet(NEMO)
    x = torch.randn(3, 24000, generator=torch.Generator().manual_seed(0)) * 0.1
    ref = model.embed_batch(x)
    with precision(model, torch.bfloat16):
        low = model.embed_batch(x)
    assert not torch.equal(low, ref)
    assert _cosines(low, ref).min() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_pipeline_matches_cpu():
    """The whole pipeline on CUDA (VAD, embeddings under autocast, clustering) against the CPU run."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    from diarize import Diarizer

    wav = REPO / "rttm_examples" / "dev00.wav"
    cpu = Diarizer(device="cpu").run(wav)
    gpu = Diarizer(device="cuda").run(wav)
    assert gpu.num_speakers == cpu.num_speakers
    assert DiarizationErrorRate()(cpu.annotation, gpu.annotation) < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("which", ["titanet", "campplus"])
def test_gpu_fast_mode_matches_cpu(which):
    """Fast mode on CUDA (chunks batched on the shape ladder and pooled together, bf16 autocast)
    against the same windows on the CPU (fp32)."""
    require_data()
    from diarize.models.campplus import load_campplus
    from diarize.config import WindowConfig
    from diarize.windows import multiscale_windows

    load = (lambda device: load_titanet(NEMO, device=device)) if which == "titanet" else load_campplus
    audio = np.concatenate([load_audio(f) for s in ("3331", "367") for f in librispeech_utts(s)[:3]])[: 20 * 16000]
    regions = np.array([[0.2, 6.0], [6.5, 7.1], [8.0, 19.5]])
    scales = multiscale_windows(regions, WindowConfig())
    cfg = EmbeddingConfig(mode="fast")
    cpu = np.concatenate(embeddings.embed_blocks([audio], scales, load(device="cpu"), cfg, regions=regions))
    gpu = np.concatenate(embeddings.embed_blocks([audio], scales, load(device="cuda"), cfg, regions=regions))
    assert gpu.shape == cpu.shape == (sum(len(s) for s in scales), cpu.shape[1])
    if which == "campplus":  # real weights: every window keeps its direction
        assert _cosines(torch.from_numpy(gpu), torch.from_numpy(cpu)).min() > 0.98
    else:  # random weights share a large offset, so compare values, as the NeMo parity checks do
        assert np.abs(gpu - cpu).max() / np.abs(cpu).max() < 0.02
