"""Padded batches (the GPU path): windows or fast-mode chunks of different lengths share one zero-padded
batch with their lengths, and each gets what it gets alone. Checked on CPU in fp32."""

from pathlib import Path

import numpy as np
import pytest
import torch

from diarize.audio import SAMPLE_RATE
from diarize.config import WindowConfig
from diarize.embeddings import embed_spans
from diarize.fast_embeddings import embed_scales_fast
from diarize.spans import Batching, ladder_size, tile_to
from diarize.models.titanet import load_titanet
from diarize.windows import multiscale_windows

from test_fast_embeddings import cosines, rel_err, speech

TINY = Path(__file__).parent / "fixtures" / "titanet_tiny.nemo"


def padded(parts: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.zeros((len(parts), max(len(p) for p in parts)), dtype=np.float32)
    for row, p in enumerate(parts):
        x[row, : len(p)] = p
    return torch.from_numpy(x), torch.tensor([len(p) for p in parts])


def test_campplus_padded_rows_get_their_own_embeddings(campplus):
    # Lengths off every grid: fbank frames, the stride-2 TDNN, CAM's 100-frame segments (> 2 s).
    audio = speech(12.0)
    lengths = [24000, 40000, 20011, 16000, 12345, 8000, 3700, 720]
    parts = [audio[1000 * i : 1000 * i + n] for i, n in enumerate(lengths)]
    x, n = padded(parts)
    together = campplus.embed_batch(x, n).numpy()
    alone = np.concatenate([campplus.embed_batch(torch.from_numpy(p[None].copy())).numpy() for p in parts])
    assert rel_err(together, alone) < 1e-4
    assert cosines(together, alone).min() > 0.99999
    # Padding is ignored, whatever it holds: noise instead of zeros gives the same embeddings.
    noisy = x + (torch.arange(x.shape[1])[None] >= n[:, None]) * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(0)
    )
    assert rel_err(campplus.embed_batch(noisy, n).numpy(), alone) < 1e-4


@pytest.mark.parametrize("local_context_s", [None, 1.5])
def test_campplus_padded_frames_equal_alone(campplus, local_context_s):
    audio = speech(12.0)
    parts = [audio[:160000], audio[5000:155017], audio[:64000], audio[7:33340]]
    x, n = padded(parts)
    frames, valid = campplus.encode_frames(x, lengths=n, local_context_s=local_context_s)
    for row, p in enumerate(parts):
        ref, ref_valid = campplus.encode_frames(torch.from_numpy(p[None].copy()), local_context_s=local_context_s)
        assert int(valid[row]) == int(ref_valid[0]) == int(campplus.num_frames(torch.tensor(len(p))))
        assert rel_err(frames[row, :, : int(valid[row])].numpy(), ref[0].numpy()) < 1e-5


def test_campplus_rejects_a_length_past_the_batch(campplus):
    x = torch.zeros(2, 8000)
    with pytest.raises(ValueError, match="needs at least"):
        campplus.embed_batch(x, torch.tensor([8000, 300]))
    with pytest.raises(ValueError, match="exceeds"):
        campplus.embed_batch(x, torch.tensor([8000, 9000]))


@pytest.mark.parametrize("few_shapes", [False, True])
@pytest.mark.parametrize("which", ["campplus", "titanet"])
def test_span_batches_give_each_window_its_own_embedding(which, few_shapes, campplus):
    """`embed_spans` batches windows of any length together (longest first, padded): each window gets
    what it gets embedded alone, tiled windows included; also in the accelerators' few batch shapes
    (widths padded up the ladder, the last batch filled up with copies)."""
    model = campplus if which == "campplus" else load_titanet(TINY)
    audio = speech(8.0)
    regions = np.array([[0.3, 2.17], [2.9, 3.23], [3.8, 4.42], [5.0, 7.61]])
    scales = multiscale_windows(regions, WindowConfig())
    first = np.concatenate([np.round(s.starts * SAMPLE_RATE) for s in scales]).astype(np.int64)
    length = np.concatenate([np.round(s.ends * SAMPLE_RATE) for s in scales]).astype(np.int64) - first
    assert len(np.unique(length)) > 10  # region ends cut windows of many lengths
    assert (length < 8000).any()  # and some shorter than min_embed_s, tiled
    together = embed_spans(
        audio, first, length, model, batch_size=64, min_embed_s=0.5, batching=Batching(20, few_shapes)
    )
    alone = np.concatenate(
        [
            model.embed_batch(torch.from_numpy(tile_to(audio[f : f + n], max(int(n), 8000))[None].copy())).numpy()
            for f, n in zip(first, length)
        ]
    )
    assert rel_err(together, alone) < 1e-4
    assert cosines(together, alone).min() > 0.99999


@pytest.mark.parametrize("few_shapes", [False, True])
@pytest.mark.parametrize("which", ["campplus", "titanet"])
def test_fast_mode_chunk_batches_equal_one_chunk_per_call(which, few_shapes, campplus):
    model = campplus if which == "campplus" else load_titanet(TINY)
    local = 1.5 if which == "campplus" else None
    audio = speech(40.0)
    regions = np.array([[0.2, 0.55], [1.0, 12.31], [13.0, 39.7]])  # a tiled short region, a chunked long one
    scales = multiscale_windows(regions, WindowConfig())
    kw = dict(chunk_s=10.0, context_s=2.0, local_context_s=local)
    alone = embed_scales_fast(audio, regions, scales, model, **kw)
    together = embed_scales_fast(audio, regions, scales, model, batching=Batching(25.0, few_shapes), **kw)
    for a, t in zip(alone, together):
        assert rel_err(t, a) < 1e-4


def test_ladder_size_is_a_short_ladder():
    n = np.unique(np.geomspace(1, 2e6, 20000).astype(int))
    up = np.array([ladder_size(int(k)) for k in n])
    assert (up >= n).all() and (up <= np.ceil(n * 1.125)).all()
    assert all(ladder_size(int(u)) == u for u in up)  # a rung maps to itself
    octave = up[(n >= 8000) & (n < 16000)]
    assert len(np.unique(octave)) <= 9  # 8 steps per octave (and the next octave's first)


def test_few_shapes_batches_take_shapes_from_the_ladder(campplus, monkeypatch):
    """With `few_shapes` batch widths are rungs of the ladder and a partly filled batch has the full
    row count halved some times (an hour's exact-mode windows: 9 shapes instead of 34)."""
    audio = speech(30.0)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 30 * SAMPLE_RATE - 24000, 300)
    length = rng.choice([24000, 20000, 16000, 12000, 8000], 300) - rng.integers(0, 3000, 300) * (rng.random(300) < 0.2)
    shapes = []
    real = campplus.embed_batch

    def spy(x, lengths=None):
        shapes.append(tuple(x.shape))
        return real(x, lengths)

    monkeypatch.setattr(campplus, "embed_batch", spy)
    embed_spans(audio, first, length, campplus, batch_size=64, batching=Batching(40, few_shapes=True))
    for rows, width in shapes:
        assert ladder_size(width) == width
        full = min(64, 40 * SAMPLE_RATE // width)
        assert rows in {full >> k for k in range(full.bit_length())}
    assert len(shapes) > 4
