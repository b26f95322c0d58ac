"""Long-form clustering and the block-wise (streaming) pipeline (issue 6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import diarize
from diarize import clustering, pipeline
from diarize.audio import SAMPLE_RATE, load_audio
from diarize.clustering import chunk_bounds, cluster, spherical_kmeans
from diarize.config import ClusteringConfig, DiarizerConfig, WindowConfig, load_config
from diarize.vad import energy_vad, speech_regions
from diarize.windows import multiscale_windows


def energy_config() -> DiarizerConfig:
    """The synthetic bursts below are not speech to a neural VAD: these tests use the energy VAD."""
    cfg = DiarizerConfig()
    cfg.vad.method = "energy"
    return cfg


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AN4 = DATA / "diarization" / "nemo_an4" / "an4_diarize_test.wav"  # 5.2 s, 2 speakers


def test_package_is_this_worktree() -> None:
    assert Path(diarize.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- synthetic multi-scale embeddings
def synthetic_session(n_turns: int, n_spk: int = 4, noise: float = 0.6, seed: int = 0, dim: int = 32):
    """Turns of random speakers; every window's embedding = its speaker's centre + Gaussian noise."""
    rng = np.random.default_rng(seed)
    spk = [int(rng.integers(n_spk))]
    while len(spk) < n_turns:
        s = int(rng.integers(n_spk))
        if s != spk[-1]:
            spk.append(s)
    spk = np.array(spk)
    dur = rng.uniform(1.5, 6.0, n_turns)
    gap = rng.uniform(0.2, 1.0, n_turns)
    starts = np.concatenate([[0.0], np.cumsum(dur + gap)[:-1]])
    regions = np.stack([starts, starts + dur], axis=1)
    scales = multiscale_windows(regions, WindowConfig())
    centres = rng.standard_normal((n_spk, dim))
    embs = []
    for sc in scales:
        turn = np.searchsorted(regions[:, 0], sc.midpoints, side="right") - 1
        embs.append((centres[spk[turn]] + noise * rng.standard_normal((len(sc), dim))).astype(np.float32))
    truth = spk[np.searchsorted(regions[:, 0], scales[-1].midpoints, side="right") - 1]
    return embs, scales, truth


def accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    k = int(max(labels.max(), truth.max())) + 1
    c = np.zeros((k, k))
    np.add.at(c, (labels, truth), 1)
    r, cc = linear_sum_assignment(-c)
    return float(c[r, cc].sum() / len(truth))


SMALL_CHUNKS = ClusteringConfig(embeddings_per_chunk=300, chunk_cluster_count=20)


def test_long_form_recovers_clusters_without_n_by_n(monkeypatch: pytest.MonkeyPatch) -> None:
    embs, scales, truth = synthetic_session(150)
    n = len(scales[-1])
    assert n > 4 * SMALL_CHUNKS.embeddings_per_chunk

    def no_full_matrix(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the long-form path must not build the N x N fused affinity")

    biggest = []
    real_cos = clustering.cosine_affinity

    def spy_cos(emb):  # noqa: ANN001, ANN202
        biggest.append(len(emb))
        return real_cos(emb)

    monkeypatch.setattr(clustering, "fused_affinity", no_full_matrix)
    monkeypatch.setattr(clustering, "cosine_affinity", spy_cos)
    res = cluster(embs, scales, SMALL_CHUNKS)
    assert res.num_speakers == 4
    assert accuracy(res.labels, truth) > 0.99
    # The only dense matrix is over the group centroids: chunks x groups, far below N.
    assert max(biggest) <= len(chunk_bounds(n, 300)) * 20 < n


def test_long_form_is_deterministic_and_honours_num_speakers() -> None:
    embs, scales, truth = synthetic_session(120, n_spk=5, seed=3)
    a = cluster(embs, scales, SMALL_CHUNKS)
    b = cluster([e.copy() for e in embs], scales, SMALL_CHUNKS)
    assert np.array_equal(a.labels, b.labels)
    assert a.num_speakers == 5
    forced = cluster(embs, scales, SMALL_CHUNKS, num_speakers=3)
    assert forced.num_speakers == 3


def test_short_sessions_keep_the_dense_path(monkeypatch: pytest.MonkeyPatch) -> None:
    embs, scales, truth = synthetic_session(30)
    assert len(scales[-1]) < ClusteringConfig().embeddings_per_chunk
    called = []
    monkeypatch.setattr(clustering, "cluster_long_form", lambda *a, **k: called.append(1))
    res = cluster(embs, scales, ClusteringConfig())
    assert not called and accuracy(res.labels, truth) > 0.99


def test_chunk_bounds_and_spherical_kmeans() -> None:
    assert chunk_bounds(1001, 300) == [(0, 250), (250, 500), (500, 751), (751, 1001)]
    assert chunk_bounds(10, 300) == [(0, 10)]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((50, 8)) * 0.05 + c for c in np.eye(8)[:3] * 3])
    labels, cent = spherical_kmeans(x, 3, seed=0)
    assert len(cent) == 3 and len(np.unique(labels)) == 3
    assert all(len(np.unique(labels[i * 50:(i + 1) * 50])) == 1 for i in range(3))


def test_sparse_spectral_embedding_matches_dense() -> None:
    embs, scales, _ = synthetic_session(80, noise=1.0)
    aff = clustering.fused_affinity(embs, scales)
    assert len(aff) >= clustering.SPARSE_EIGEN_MIN_N
    graph = clustering.binarize(aff, 40)
    sparse = clustering.spectral_embedding(graph, 4)
    _, dense = np.linalg.eigh(clustering.laplacian(graph))
    dense = dense[:, :4]
    # Same subspace: the projectors agree.
    assert np.allclose(sparse @ sparse.T, dense @ dense.T, atol=1e-6)


# --------------------------------------------------------------------------- streaming pipeline
class MeanStdEmbedder:
    """Exact, batch-independent toy embedder: (mean, std, first, last sample) of each window."""

    name = "toy"
    sample_rate = SAMPLE_RATE
    embedding_dim = 4
    device = torch.device("cpu")

    def embed_batch(self, w: torch.Tensor) -> torch.Tensor:
        return torch.stack([w.mean(1), w.std(1), w[:, 0], w[:, -1]], dim=1)

    def to(self, device):  # noqa: ANN001, ANN201
        return self


def capture_embeddings(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []
    real = pipeline.cluster

    def spy(embeddings, scales, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(([e.copy() for e in embeddings], scales))
        return real(embeddings, scales, *a, **k)

    monkeypatch.setattr(pipeline, "cluster", spy)
    return seen


@pytest.fixture
def bursty_wav(tmp_path: Path) -> Path:
    """40 s of noise bursts and near-silence (so energy VAD finds many regions)."""
    rng = np.random.default_rng(0)
    x = 1e-4 * rng.standard_normal(40 * SAMPLE_RATE)
    t = 0.3
    while t < 39:
        d = rng.uniform(0.4, 3.0)
        a, b = int(t * SAMPLE_RATE), int(min(t + d, 40) * SAMPLE_RATE)
        x[a:b] += rng.uniform(0.05, 0.3) * rng.standard_normal(b - a)
        t += d + rng.uniform(0.3, 1.5)
    path = tmp_path / "bursty.wav"
    sf.write(path, x.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("block_s", [3.33, 7.0, 1000.0])
def test_streaming_equals_in_memory_exactly_with_toy_embedder(
        bursty_wav: Path, block_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = energy_config()
    model = MeanStdEmbedder()
    seen = capture_embeddings(monkeypatch)
    ref = pipeline.diarize_audio(load_audio(bursty_wav), model, cfg, uri="bursty")
    got = pipeline.diarize_file_streaming(bursty_wav, model, cfg, block_seconds=block_s)
    assert len(ref.regions) > 5
    assert np.array_equal(got.regions, ref.regions)  # block-wise frame energies == whole-file ones
    assert got.duration == ref.duration
    (e_ref, _), (e_got, _) = seen
    for a, b in zip(e_ref, e_got):
        assert np.array_equal(a, b)
    assert got.annotation == ref.annotation


def test_streaming_holds_at_most_one_block(bursty_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is never loaded whole; every buffer embedded from is one block plus < one window."""
    block_s = 5.0
    monkeypatch.setattr(pipeline, "load_audio", lambda *a, **k: pytest.fail("whole-file load in streaming path"))
    blocks, buffers = [], []
    real_read, real_embed = pipeline.read_blocks, pipeline.embed_spans

    def spy_read(path, block_seconds=600.0):  # noqa: ANN001, ANN202
        for b in real_read(path, block_seconds):
            blocks.append(len(b))
            yield b

    def spy_embed(audio, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        buffers.append(len(audio))
        return real_embed(audio, *a, **k)

    monkeypatch.setattr(pipeline, "read_blocks", spy_read)
    monkeypatch.setattr(pipeline, "embed_spans", spy_embed)
    d = pipeline.Diarizer(energy_config(), model=MeanStdEmbedder(), quiet=True, streaming_threshold_s=10.0)
    res = pipeline.diarize_file_streaming(bursty_wav, d.model, d.config, block_seconds=block_s)
    assert res.duration == pytest.approx(40.0)
    assert max(blocks) <= block_s * SAMPLE_RATE and len(blocks) >= 2 * 8  # two passes (energy VAD + embedding)
    longest_window = int(max(energy_config().windows.window_lengths) * SAMPLE_RATE)
    assert buffers and max(buffers) <= block_s * SAMPLE_RATE + longest_window


def test_diarizer_run_dispatches_long_files_to_streaming(bursty_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "load_audio", lambda *a, **k: pytest.fail("whole-file load for a long file"))
    d = pipeline.Diarizer(energy_config(), model=MeanStdEmbedder(), quiet=True, streaming_threshold_s=10.0)
    res = d.run(bursty_wav)
    assert res.duration == pytest.approx(40.0) and set(res.timings) >= {"load", "vad", "embeddings", "clustering"}


@pytest.mark.skipif(not AN4.is_file(), reason="shared data not found")
def test_neural_vad_streaming_joins_regions_at_block_seams() -> None:
    cfg = load_config("general")  # pyannote-seg
    regions, n = pipeline._stream_block_vad(AN4, cfg, 1.3, {})
    assert n == len(load_audio(AN4)) and len(regions) >= 1
    seams = np.arange(1, 5) * 1.3
    gaps = np.stack([regions[:-1, 1], regions[1:, 0]], axis=1)
    for a, b in gaps:  # no gap that is only a seam artefact survives
        assert not (b - a < pipeline.SEAM_GAP_S and np.any((seams >= a - 1e-6) & (seams <= b + 1e-6)))
    whole, _ = speech_regions(load_audio(AN4), cfg.vad)
    assert abs(regions[0, 0] - whole[0, 0]) < 0.05 and abs(regions[-1, 1] - whole[-1, 1]) < 0.1


def test_streaming_equals_in_memory_on_real_speech(monkeypatch: pytest.MonkeyPatch) -> None:
    from diarize.models import load_model

    model = load_model("campplus", "cpu", quiet=True)
    cfg = load_config("general")
    cfg.vad.method = "energy"  # block-wise energy VAD is exact; neural VADs see shorter context per block
    seen = capture_embeddings(monkeypatch)
    ref = pipeline.Diarizer(cfg, model=model, quiet=True).run(AN4)  # short: in-memory path
    one = pipeline.Diarizer(cfg, model=model, quiet=True, streaming_threshold_s=1.0).run(AN4)  # one block
    many = pipeline.diarize_file_streaming(AN4, model, cfg, block_seconds=1.3)
    (e_ref, _), (e_one, _), (e_many, _) = seen
    assert np.array_equal(one.regions, ref.regions) and np.array_equal(many.regions, ref.regions)
    # One block: same batches as the in-memory path, so bit-identical.
    assert all(np.array_equal(a, b) for a, b in zip(e_ref, e_one))
    # Many blocks: batches differ at block seams, so only float rounding may differ.
    assert all(np.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(e_ref, e_many))
    assert ref.num_speakers == 2
    assert one.annotation == ref.annotation
    assert many.annotation == ref.annotation


def test_energy_vad_blockwise_matches_whole_file(bursty_wav: Path) -> None:
    t: dict[str, float] = {}
    regions, n = pipeline._stream_energy_vad(bursty_wav, energy_config(), 2.71, t)
    whole = load_audio(bursty_wav)
    assert n == len(whole)
    assert np.array_equal(regions, energy_vad(whole, energy_config().vad))
