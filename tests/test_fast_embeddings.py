"""Fast-mode embeddings: pooling windows from region-level frames (`embed_scales_fast`)."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from diarize.audio import SAMPLE_RATE, load_audio
from diarize.config import WindowConfig
from diarize.embeddings import embed_spans
from diarize.fast_embeddings import chunk_plan, embed_scales_fast
from diarize.models.base import FrameEncoder
from diarize.models.titanet import load_titanet
from diarize.spans import window_samples
from diarize.windows import multiscale_windows

from conftest import librispeech_utts, require_data

TINY = Path(__file__).parent / "fixtures" / "titanet_tiny.nemo"


@pytest.fixture(scope="module")
def titanet():
    return load_titanet(TINY)


def speech(seconds: float) -> np.ndarray:
    """Real speech: LibriSpeech utterances of two speakers back to back, `seconds` long."""
    require_data()
    x = np.concatenate([load_audio(p) for s in ("3331", "367") for p in librispeech_utts(s)[:3]])
    assert len(x) >= seconds * SAMPLE_RATE
    return x[: int(seconds * SAMPLE_RATE)]


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("n", [320, 4000, 8000, 24000])
def test_titanet_pooling_whole_input_equals_exact(titanet, n):
    x = torch.from_numpy(np.random.default_rng(n).standard_normal((2, n)).astype(np.float32) * 0.1)
    frames, valid = titanet.encode_frames(x)
    assert frames.shape[:2] == (2, titanet.decoder.emb_layers[0][1].in_channels // 2)
    assert int(valid[0]) == int(titanet.num_frames(torch.tensor(n))) == n // 160
    exact = titanet.embed_batch(x).numpy()
    for b in range(2):
        fast = titanet.pool_frames(frames[b], torch.tensor([0]), valid[b : b + 1]).numpy()
        assert rel_err(fast[0], exact[b]) <= 1e-5


@pytest.mark.parametrize("n", [720, 8000, 24000])
def test_campplus_pooling_whole_input_equals_exact(campplus, n):
    require_data()
    x = torch.from_numpy(speech(2.0)[None, :n].copy())
    frames, valid = campplus.encode_frames(x)
    assert int(valid[0]) == frames.shape[-1] == int(campplus.num_frames(torch.tensor(n)))
    fast = campplus.pool_frames(frames[0], torch.tensor([0]), valid).numpy()
    assert rel_err(fast, campplus.embed_batch(x).numpy()) <= 1e-5


def test_batched_spans_equal_pooling_each_span_alone(titanet, campplus):
    """Many spans of mixed lengths in one call (padding, masks, prefix sums) equal each span's
    frames pooled by the models' own exact pooling layers."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((1, 48000)).astype(np.float32) * 0.1)
    for model in (titanet, campplus):
        frames, valid = model.encode_frames(x)
        nv = int(valid[0])
        starts = rng.integers(0, nv - 2, 40)
        ends = np.minimum(starts + rng.integers(1, 160, 40), nv)
        got = model.pool_frames(frames[0], torch.from_numpy(starts), torch.from_numpy(ends)).numpy()
        for i in range(len(starts)):
            h = frames[:, :, starts[i] : ends[i]]
            with torch.inference_mode():
                if model is titanet:
                    n = torch.tensor([h.shape[-1]])
                    valid_mask = torch.ones(1, 1, h.shape[-1], dtype=torch.bool)
                    ref = model.decoder.emb_layers[0](model.decoder._pooling(h, valid_mask, n))[0, :, 0]
                else:
                    ref = model.net.xvector.dense(model.net.xvector.stats(h))[0]
            assert rel_err(got[i], ref.numpy()) <= 1e-4, (model.name, i, ends[i] - starts[i])
    with pytest.raises(ValueError, match="span"):
        titanet.pool_frames(frames[0], torch.tensor([5]), torch.tensor([5]))


def test_titanet_pooling_of_equal_spans_and_offset_frames(titanet):
    """Batches of equal-length spans (gathered without padding or masks), split by a small budget,
    on frames whose channels sit far from zero (the one-pass weighted variance runs on centred
    frames): each span matches the exact pooling layer on its own frames, in float64."""
    rng = np.random.default_rng(2)
    c = titanet.decoder.emb_layers[0][1].in_channels // 2
    frames = torch.from_numpy(rng.standard_normal((c, 600)) * rng.uniform(0.01, 2.0, (c, 1)) + 40.0).float()
    starts = np.concatenate([np.arange(0, 450, 25), rng.integers(0, 450, 7), [0, 10]])  # regular, irregular, ragged
    ends = starts + np.concatenate([np.full(25, 150), [3, 600 - 10]])
    got = titanet.pool_frames(frames, torch.from_numpy(starts), torch.from_numpy(ends), max_window_frames=400)
    pool, emb = copy.deepcopy(titanet.decoder._pooling).double(), copy.deepcopy(titanet.decoder.emb_layers[0]).double()
    with torch.inference_mode():
        for i, (a, b) in enumerate(zip(starts, ends)):
            h = frames[None, :, a:b].double()
            ref = emb(pool(h, torch.ones(1, 1, b - a, dtype=torch.bool), torch.tensor([b - a])))[0, :, 0]
            assert rel_err(got[i].numpy(), ref.numpy()) <= 1e-5, (i, b - a)


@pytest.mark.parametrize("which", ["titanet", "campplus"])
def test_windows_that_are_whole_regions_get_exact_embeddings(which, titanet, campplus):
    """Regions of 0.3 s (tiled to min_embed_s, as exact mode does), 0.45 s and exactly 1.5 s:
    every window that is its whole region matches exact mode (embed_spans), in its scale and row."""
    model = titanet if which == "titanet" else campplus
    audio = speech(12.0)
    regions = np.array([[0.5, 0.8], [1.2, 1.65], [2.0, 3.5], [4.0, 11.0]])
    scales = multiscale_windows(regions, WindowConfig())
    exact = [embed_spans(audio, *window_samples(s.starts, s.ends), model) for s in scales]
    fast = embed_scales_fast(audio, regions, scales, model, chunk_s=30.0)
    assert [f.shape for f in fast] == [e.shape for e in exact]
    checked = 0
    for s, e, f in zip(scales, exact, fast):
        for r0, r1 in regions[:3]:
            row = np.flatnonzero(np.isclose(s.starts, r0) & np.isclose(s.ends, r1))
            if len(row):
                assert rel_err(f[row], e[row]) <= 1e-4
                checked += 1
    assert checked == 5 + 5 + 1  # both short regions at every scale, the 1.5 s region at the 1.5 s scale
    # The other windows are pooled with context: close to exact, not equal (documented approximation).
    assert np.median(np.concatenate([cosines(e, f) for e, f in zip(exact, fast)])) > 0.5


@pytest.mark.parametrize(
    "which, local_context_s, min_cos, median_cos",
    [
        ("titanet", None, 0.9, 0.99),  # chunk-level normalisation and SE context differ between chunks
        ("campplus", None, 0.5, 0.9),  # chunk-level fbank mean and CAM context: chunks differ (why 1.5 s below)
        ("campplus", 1.5, 0.999, 0.9999),  # sliding 1.5 s context: a frame depends on nearby audio only
    ],
)
def test_long_region_chunks_join_seamlessly(which, local_context_s, min_cos, median_cos, titanet, campplus):
    """A 40 s region in 12 s chunks gives the windows of one 1000 s chunk."""
    model = titanet if which == "titanet" else campplus
    kw = {} if local_context_s is None else {"local_context_s": local_context_s}
    audio = speech(40.0)
    regions = np.array([[0.0, 40.0]])
    scales = multiscale_windows(regions, WindowConfig())
    whole = embed_scales_fast(audio, regions, scales, model, chunk_s=1000.0, **kw)
    chunked = embed_scales_fast(audio, regions, scales, model, chunk_s=12.0, context_s=3.0, **kw)
    cos = np.concatenate([cosines(a, b) for a, b in zip(whole, chunked)])
    assert np.median(cos) > median_cos and cos.min() > min_cos
    # Plumbing is exact: the windows of one chunk equal encoding that chunk's audio by itself.
    c0, c1, k0, k1 = chunk_plan(40 * SAMPLE_RATE, 12 * SAMPLE_RATE, 3 * SAMPLE_RATE, model.chunk_align)[1]
    frames, valid = model.encode_frames(torch.from_numpy(audio[c0:c1].copy())[None], **kw)
    for s, emb in zip(scales, chunked):
        mid = (s.starts + s.ends) / 2 * SAMPLE_RATE
        rows = np.flatnonzero((mid >= k0) & (mid < k1))
        first = np.round(s.starts[rows] * SAMPLE_RATE).astype(np.int64)
        length = np.round(s.ends[rows] * SAMPLE_RATE).astype(np.int64) - first
        f0 = torch.from_numpy(np.round((first - c0) / model.frame_hop).astype(np.int64))
        f1 = torch.clamp(f0 + model.num_frames(torch.from_numpy(length)), max=int(valid[0]))
        ref = model.pool_frames(frames[0], f0, f1).numpy()
        assert rel_err(emb[rows], ref) <= 1e-5


def test_chunk_plan_cores_tile_the_region():
    n, chunk, ctx, align = 1_000_003, 480_000, 48_000, 32_000
    plan = chunk_plan(n, chunk, ctx, align)
    assert plan[0][2] == 0 and plan[-1][3] == n
    for (s, e, c0, c1), nxt in zip(plan, plan[1:] + [None]):
        assert s % align == 0 and s <= max(0, c0 - ctx) and e >= min(n, c1 + ctx) and e - s <= chunk + align
        if nxt is not None:
            assert c1 == nxt[2]
    assert chunk_plan(1000, chunk, ctx) == [(0, 1000, 0, 1000)]
    with pytest.raises(ValueError, match="context"):
        chunk_plan(n, 2 * ctx, ctx)


def test_empty_input(titanet):
    audio = np.zeros(16000, dtype=np.float32)
    scales = multiscale_windows(np.zeros((0, 2)), WindowConfig())
    out = embed_scales_fast(audio, np.zeros((0, 2)), scales, titanet)
    assert [o.shape for o in out] == [(0, titanet.embedding_dim)] * len(scales)
    assert embed_scales_fast(audio, np.zeros((0, 2)), [], titanet) == []
    calls = []
    scales = multiscale_windows(np.array([[0.1, 0.9]]), WindowConfig())
    embed_scales_fast(audio + 0.01, np.array([[0.1, 0.9]]), scales, titanet, progress=calls.append)
    assert sum(calls) == sum(len(s) for s in scales)


def test_window_outside_regions_is_an_error(titanet):
    audio = np.zeros(32000, dtype=np.float32)
    scales = multiscale_windows(np.array([[0.0, 1.0]]), WindowConfig())
    with pytest.raises(ValueError, match="outside"):
        embed_scales_fast(audio, np.array([[1.2, 2.0]]), scales, titanet)


def test_both_models_are_frame_encoders(titanet, campplus):
    """Fast mode asks the model's capability, not its name: both networks implement `FrameEncoder`, and
    only CAM++ has the local-context mode (TitaNet refuses it rather than ignoring it)."""
    assert isinstance(titanet, FrameEncoder) and isinstance(campplus, FrameEncoder)
    assert campplus.local_context and not titanet.local_context
    with pytest.raises(ValueError, match="local context"):
        titanet.encode_frames(torch.zeros(1, 16000), local_context_s=1.5)
