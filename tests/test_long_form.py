"""Long-form clustering and the block-wise (streaming) pipeline (issue 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import diarize
from diarize import affinity, clustering, pipeline, reduce, spectral
from conftest import ToyEmbedder
from diarize.audio import SAMPLE_RATE, AudioSource, load_audio
from diarize.clustering import cluster
from diarize.reduce import chunk_bounds, spherical_kmeans
from diarize.config import ClusteringConfig, DiarizerConfig, SpeakerCount, WindowConfig, load_config
from diarize.rttm import parse_uem
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
    # The only dense matrix is over the group centroids: chunks x groups, far below N (each chunk keeps
    # enough groups for twice the largest count, as `cluster` asks).
    groups = max(SMALL_CHUNKS.chunk_cluster_count, 2 * SMALL_CHUNKS.max_num_speakers + 1)
    assert max(biggest) <= len(chunk_bounds(n, 300)) * groups < n


def test_long_form_is_deterministic_and_honours_num_speakers() -> None:
    embs, scales, truth = synthetic_session(120, n_spk=5, seed=3)
    a = cluster(embs, scales, SMALL_CHUNKS)
    b = cluster([e.copy() for e in embs], scales, SMALL_CHUNKS)
    assert np.array_equal(a.labels, b.labels)
    assert a.num_speakers == 5
    forced = cluster(embs, scales, SMALL_CHUNKS, SpeakerCount(num=3))
    assert forced.num_speakers == 3


def test_long_form_uses_the_same_core_refinements() -> None:
    """The reduced path runs the core's known-count handling: a count above the graph's groups is
    reached by splitting, exactly as on the dense path (no second core that lacks it)."""
    embs, scales, truth = synthetic_session(120, n_spk=5, seed=3)
    dense = cluster(embs, scales, ClusteringConfig(), SpeakerCount(num=6))
    reduced = cluster(embs, scales, SMALL_CHUNKS, SpeakerCount(num=6))
    assert dense.num_speakers == reduced.num_speakers == 6
    merged = cluster(embs, scales, SMALL_CHUNKS, SpeakerCount(num=4))
    assert merged.num_speakers == 4


def test_short_sessions_keep_the_dense_path(monkeypatch: pytest.MonkeyPatch) -> None:
    embs, scales, truth = synthetic_session(30)
    assert len(scales[-1]) < ClusteringConfig().embeddings_per_chunk
    called = []
    monkeypatch.setattr(clustering, "reduce_long_form", lambda *a, **k: called.append(1))
    res = cluster(embs, scales, ClusteringConfig())
    assert not called and accuracy(res.labels, truth) > 0.99


def test_chunk_bounds_and_spherical_kmeans() -> None:
    assert chunk_bounds(1001, 300) == [(0, 250), (250, 500), (500, 751), (751, 1001)]
    assert chunk_bounds(10, 300) == [(0, 10)]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((50, 8)) * 0.05 + c for c in np.eye(8)[:3] * 3])
    labels, cent = spherical_kmeans(x, 3, seed=0)
    assert len(cent) == 3 and len(np.unique(labels)) == 3
    assert all(len(np.unique(labels[i * 50 : (i + 1) * 50])) == 1 for i in range(3))


def test_over_cluster_fits_on_every_other_row_and_assigns_all(monkeypatch: pytest.MonkeyPatch) -> None:
    fits: list[tuple[int, np.ndarray]] = []

    def spy(x, k, **kw):  # noqa: ANN001, ANN003, ANN202
        labels, cent = real(x, k, **kw)
        fits.append((len(x), cent))
        return labels, cent

    real = reduce.spherical_kmeans
    monkeypatch.setattr(reduce, "spherical_kmeans", spy)
    rng = np.random.default_rng(1)
    k = 4
    n = 2 * reduce.FIT_MIN_PER_GROUP * k + 1
    x = rng.standard_normal((n, 16)) + 2 * np.eye(16)[rng.integers(0, k, n)]
    labels, cent = reduce.over_cluster(x, k, seed=0)
    assert [f[0] for f in fits] == [len(x[:: reduce.FIT_STRIDE])]
    # Every row, fitted or not, joins the fitted centroid it is most like; the groups' means come back.
    assert np.array_equal(labels, (affinity.unit_rows(x) @ affinity.unit_rows(fits[0][1]).T).argmax(axis=1))
    assert np.allclose(cent, [x[labels == g].mean(axis=0) for g in range(len(cent))])
    fits.clear()
    reduce.over_cluster(x[:40], k, seed=0)  # too few rows per group to skip any
    assert [f[0] for f in fits] == [40]


@pytest.mark.parametrize("speakers", [4, 1])
def test_unreduced_sessions_hold_no_session_sized_matrix(monkeypatch, speakers) -> None:
    """Below the reduction threshold the core never allocates an N x N matrix either (an hour with 40 min of
    speech must fit in 1 GB): traced peak memory stays under one N x N float64 matrix, where the dense core
    held two or three. The top-p graph of these clean synthetic speakers keeps about a fifth of each row. One
    speaker is the hardest case: the split step bisects a cluster of every window, binarised with 15 % of them."""
    import tracemalloc

    embs, scales, truth = synthetic_session(200, seed=5)
    if speakers == 1:
        rng = np.random.default_rng(1)
        centre = rng.standard_normal(embs[0].shape[1])
        embs = [(centre + 0.6 * rng.standard_normal(e.shape)).astype(np.float32) for e in embs]
        truth = np.zeros_like(truth)
    n = len(scales[-1])
    monkeypatch.setattr(affinity, "KEEP_MATRIX_MAX", 0)  # what sessions above 4,096 windows do
    monkeypatch.setattr(affinity, "ROW_BLOCK", 128)
    tracemalloc.start()
    try:
        res = cluster(embs, scales, ClusteringConfig(embeddings_per_chunk=n + 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.num_speakers == speakers and accuracy(res.labels, truth) > 0.99
    assert peak < n * n * 8, (n, peak)


def test_sparse_spectral_embedding_matches_dense() -> None:
    embs, scales, _ = synthetic_session(80, noise=1.0)
    aff = affinity.fused_affinity(embs, scales)
    assert len(aff) >= spectral.SPARSE_EIGEN_MIN_N
    graph = affinity.binarized_graph(aff, 40)
    sparse = spectral.spectral_embedding(graph, 4)
    _, dense = np.linalg.eigh(spectral.laplacian(graph.dense()))
    dense = dense[:, :4]
    # Same subspace: the projectors agree.
    assert np.allclose(sparse @ sparse.T, dense @ dense.T, atol=1e-6)


# --------------------------------------------------------------------------- streaming pipeline


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


def run_file(path: Path, model, cfg: DiarizerConfig, block_s: float, **kw):  # noqa: ANN001, ANN003, ANN201
    return pipeline.diarize(AudioSource.from_file(path, block_seconds=block_s), model, cfg, block_seconds=block_s, **kw)


def run_waveform(path: Path, model, cfg: DiarizerConfig, **kw):  # noqa: ANN001, ANN003, ANN201
    src = AudioSource.from_waveform(load_audio(path), SAMPLE_RATE, uri=path.stem)
    return pipeline.diarize(src, model, cfg, **kw)


@pytest.mark.parametrize("block_s", [3.33, 7.0, 1000.0])
def test_blockwise_equals_one_block_exactly_with_toy_embedder(
    bursty_wav: Path, block_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = energy_config()
    model = ToyEmbedder()
    seen = capture_embeddings(monkeypatch)
    ref = run_waveform(bursty_wav, model, cfg)
    got = run_file(bursty_wav, model, cfg, block_s)
    assert len(ref.regions) > 5
    assert np.array_equal(got.regions, ref.regions)  # block-wise frame energies == whole-file ones
    assert got.duration == ref.duration
    (e_ref, _), (e_got, _) = seen
    for a, b in zip(e_ref, e_got):
        assert np.array_equal(a, b)
    assert got.annotation == ref.annotation


def test_blockwise_holds_at_most_one_block(bursty_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file longer than a block is never loaded whole; every buffer embedded from is one block
    plus < one window."""
    from diarize import audio, embeddings

    block_s = 5.0
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: pytest.fail("whole-file load of a long file"))
    blocks, buffers = [], []
    real_read, real_embed = audio.read_blocks, embeddings.embed_spans

    def spy_read(path, block_seconds=600.0):  # noqa: ANN001, ANN202
        for b in real_read(path, block_seconds):
            blocks.append(len(b))
            yield b

    def spy_embed(x, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        buffers.append(len(x))
        return real_embed(x, *a, **k)

    monkeypatch.setattr(audio, "read_blocks", spy_read)
    monkeypatch.setattr(embeddings, "embed_spans", spy_embed)
    res = run_file(bursty_wav, ToyEmbedder(), energy_config(), block_s)
    assert res.duration == pytest.approx(40.0)
    assert max(blocks) <= block_s * SAMPLE_RATE and len(blocks) >= 2 * 8  # two passes (energy VAD + embedding)
    longest_window = int(max(energy_config().windows.window_lengths) * SAMPLE_RATE)
    assert buffers and max(buffers) <= block_s * SAMPLE_RATE + longest_window
    assert set(res.timings) >= {"load", "vad", "windows", "embeddings", "clustering", "output"}


def test_long_file_with_uem_and_energy_vad(bursty_wav: Path) -> None:
    """The UEM is applied in one place, whatever the length (it used to be ignored for long files)."""
    uem = parse_uem(["bursty 1 10.0 20.0", "bursty 1 30.0 35.0"])["bursty"]
    for block_s in (5.0, 1000.0):
        res = run_file(bursty_wav, ToyEmbedder(), energy_config(), block_s, uem=uem)
        assert len(res.regions) and res.regions.min() >= 10.0 and res.regions.max() <= 35.0
        assert not np.any((res.regions[:, 0] < 30.0) & (res.regions[:, 1] > 20.0))
        turns = res.annotation.get_timeline()
        assert turns[0].start >= 10.0 - 1e-9 and turns[-1].end <= 35.0 + 1e-9


@pytest.mark.skipif(not AN4.is_file(), reason="shared data not found")
def test_neural_vad_joins_regions_at_block_seams() -> None:
    from diarize.vad import SEAM_GAP_S, detect_speech

    cfg = load_config("general")  # pyannote-seg
    src = AudioSource.from_file(AN4, block_seconds=1.3)
    regions = detect_speech(src.blocks(1.3), cfg.vad).speech
    assert len(regions) >= 1
    seams = np.arange(1, 5) * 1.3
    gaps = np.stack([regions[:-1, 1], regions[1:, 0]], axis=1)
    for a, b in gaps:  # no gap that is only a seam artefact survives
        assert not (b - a < SEAM_GAP_S and np.any((seams >= a - 1e-6) & (seams <= b + 1e-6)))
    whole, _ = speech_regions(load_audio(AN4), cfg.vad)
    assert abs(regions[0, 0] - whole[0, 0]) < 0.05 and abs(regions[-1, 1] - whole[-1, 1]) < 0.1


@pytest.mark.skipif(not AN4.is_file(), reason="shared data not found")
def test_overlap_assignment_on_blockwise_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlap regions found block by block reach the output (they used to be dropped for long files)."""
    from diarize import vad
    from diarize.models import load_model

    model = load_model("campplus", "cpu")
    cfg = load_config("general")
    real = vad._block_regions

    def with_overlap(block, c, progress=None):  # noqa: ANN001, ANN202 - a known overlap in every block's middle
        found = real(block, c, progress)
        mid = len(block) / SAMPLE_RATE / 2
        return vad.SpeechRegions(found.speech, np.array([[mid - 0.3, mid + 0.3]]))

    monkeypatch.setattr(vad, "_block_regions", with_overlap)
    res = run_file(AN4, model, cfg, 2.6, speakers=SpeakerCount(num=2))
    assert len(res.overlap) >= 2  # one per block that had speech
    assert res.num_speakers == 2 and len(res.annotation.get_overlap()) >= 1  # a second speaker was added


def test_blockwise_equals_one_block_on_real_speech(monkeypatch: pytest.MonkeyPatch) -> None:
    from diarize.models import load_model

    model = load_model("campplus", "cpu")
    cfg = load_config("general")
    cfg.vad.method = "energy"  # block-wise energy VAD is exact; neural VADs see shorter context per block
    seen = capture_embeddings(monkeypatch)
    ref = run_waveform(AN4, model, cfg)
    one = pipeline.Diarizer(cfg, model=model).run(AN4)  # a file shorter than a block: one block
    many = run_file(AN4, model, cfg, 1.3)
    (e_ref, _), (e_one, _), (e_many, _) = seen
    assert np.array_equal(one.regions, ref.regions) and np.array_equal(many.regions, ref.regions)
    assert all(np.array_equal(a, b) for a, b in zip(e_ref, e_one))
    # Many blocks: batches differ at block seams, so only float rounding may differ.
    assert all(np.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(e_ref, e_many))
    assert ref.num_speakers == 2
    assert one.annotation == ref.annotation
    assert many.annotation == ref.annotation


def test_energy_vad_blockwise_matches_whole_file(bursty_wav: Path) -> None:
    from diarize.vad import detect_speech

    cfg = energy_config().vad
    src = AudioSource.from_file(bursty_wav, block_seconds=2.71)
    regions = detect_speech(src.blocks(2.71), cfg).speech
    assert np.array_equal(regions, energy_vad(load_audio(bursty_wav), cfg.energy))


def test_freed_memory_is_handed_back_after_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    from diarize import spans

    trims, rss = [], [500 * 2**20]
    monkeypatch.setattr(spans, "_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(spans, "_resident_bytes", lambda: rss[0])
    monkeypatch.setattr(spans, "_rss_after_trim", 0)  # restored after the test
    spans.release_freed_memory()  # 0: always
    assert len(trims) == 1
    rss[0] += 200 * 2**20
    spans.release_freed_memory(256)  # grown 200 MB since the last trim: kept
    assert len(trims) == 1
    rss[0] += 100 * 2**20
    spans.release_freed_memory(256)  # 300 MB: handed back
    assert len(trims) == 2
    spans.release_freed_memory(256)  # measured from the last trim, not from the start
    assert len(trims) == 2
    monkeypatch.setattr(spans, "_malloc_trim", lambda: None)  # not glibc: nothing to do
    rss[0] += 10**12
    spans.release_freed_memory(256)
    assert len(trims) == 2
