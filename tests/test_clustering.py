import subprocess
import sys
import warnings

import numpy as np
import pytest

from diarize import affinity, clustering, spectral
from diarize.affinity import (
    binarize,
    binarized_graph,
    cosine_affinity,
    fused_affinity,
    nearest_window,
    neighbour_ranks,
    scale_maps,
    top_p_mask,
    unit_rows,
    window_items,
)
from diarize.clustering import cluster
from diarize.refine import merge_similar_clusters, split_clusters, split_off_turns, turns
from diarize.spectral import eigengap_count, kmeans, laplacian, nme_sc
from diarize.config import ClusteringConfig, SpeakerCount, WindowConfig
from diarize.windows import multiscale_windows


def speaker_embeddings(rng, labels, dim=64, spread=0.35):
    centers = rng.standard_normal((labels.max() + 1, dim))
    return centers[labels] + spread * rng.standard_normal((len(labels), dim))


def turns_to_scales(turn_speakers, turn_len=6.0):
    regions = np.array([[i * turn_len, (i + 1) * turn_len - 0.5] for i in range(len(turn_speakers))])
    scales = multiscale_windows(regions, WindowConfig())
    return regions, scales


def labels_for(scale, regions, turn_speakers):
    idx = np.searchsorted(regions[:, 0], scale.midpoints, side="right") - 1
    return np.asarray(turn_speakers)[idx]


def agreement(a, b):
    """Best label-permutation accuracy via the contingency table (greedy suffices for clean cases)."""
    from scipy.optimize import linear_sum_assignment

    k = max(a.max(), b.max()) + 1
    table = np.zeros((k, k))
    np.add.at(table, (a, b), 1)
    r, c = linear_sum_assignment(-table)
    return table[r, c].sum() / len(a)


def test_cosine_affinity_range_and_diagonal(rng):
    a = cosine_affinity(rng.standard_normal((20, 8))).dense()
    assert a.shape == (20, 20) and np.allclose(np.diag(a), 1.0)
    assert a.min() == pytest.approx(0.0) and a.max() == pytest.approx(1.0)
    assert np.allclose(a, a.T)


def test_binarize_keeps_top_p_and_is_symmetric(rng):
    a = cosine_affinity(rng.standard_normal((30, 8))).dense()
    b = binarize(a, 4)
    assert np.allclose(b, b.T) and set(np.unique(b)) <= {0.0, 0.5, 1.0}
    assert np.all((b > 0).sum(1) >= 4)


def test_binarize_from_ranks_equals_a_fresh_top_p(rng):
    a = cosine_affinity(rng.standard_normal((40, 8))).dense()
    ranks = neighbour_ranks(a)
    assert all(sorted(row) == list(range(40)) for row in ranks.tolist())  # each row a permutation
    for p in (1, 3, 10, 40):
        b = binarize(a, p, ranks)
        assert np.array_equal(b, binarize(a, p))
        # the kept entries of each row are its p largest
        kept = (ranks < p).astype(float)
        assert np.all(kept.sum(1) == p)
        assert np.all(np.where(kept > 0, a, np.inf).min(1) >= np.where(kept == 0, a, -np.inf).max(1))


def test_top_p_mask_equals_ranks_below_p_with_ties(rng):
    """The partial sort keeps the same entries as the full one, ties going to the lower index."""
    for a in (
        cosine_affinity(rng.standard_normal((37, 6))).dense(),
        np.round(cosine_affinity(rng.standard_normal((37, 6))).dense() * 4) / 4,  # many ties per row
    ):
        ranks = neighbour_ranks(a)
        for p in (1, 2, 5, 20, 36, 37, 50):
            assert np.array_equal(top_p_mask(a, p), ranks < min(p, 37)), p


def nemo_fused_affinity(embs, scales):
    """NeMo's fusion written out whole: per scale, cosine with unit diagonal, min-max scaled, weighted,
    mapped onto the base windows, summed."""
    total = 0.0
    for e, sc, m in zip(embs, scales, scale_maps(scales)):
        x = e / (np.linalg.norm(e, axis=1, keepdims=True) + 3.5e-4)
        cos = x @ x.T
        np.fill_diagonal(cos, 1.0)
        total = total + sc.weight * ((cos - cos.min()) / (cos.max() - cos.min()))[np.ix_(m, m)]
    return total


def test_affinity_rows_equal_nemos_whole_matrix(rng, monkeypatch):
    """The fused affinity kept as vectors gives NeMo's matrix (to rounding), also where neighbouring
    windows share a longer scale's window; its row blocks, subsets, top-p graphs and their Laplacians
    agree with the whole-matrix functions."""
    monkeypatch.setattr(affinity, "ROW_BLOCK", 7)
    monkeypatch.setattr(affinity, "KEEP_MATRIX_MAX", 0)  # every matrix computed in blocks, none kept
    lab = np.repeat([0, 1, 2], 20)
    regions = np.array([[0.0, 15.0]])
    scales = multiscale_windows(regions, WindowConfig())
    embs = [speaker_embeddings(rng, lab[np.minimum(np.arange(len(sc)) * 60 // len(sc), 59)]) for sc in scales]
    embs[0] = embs[0] * 0.05  # short vectors: NeMo's 3.5e-4 guard keeps |u| visibly below 1
    whole = nemo_fused_affinity(embs, scales)
    aff = fused_affinity(embs, scales)
    assert np.allclose(aff.dense(), whole, rtol=0, atol=1e-12)
    assert np.allclose(np.vstack([aff.rows(a, b) for a, b in affinity.row_blocks(len(aff))]), whole, atol=1e-12)
    idx = np.array([3, 4, 5, 20, 41, 42, 58])
    assert np.allclose(aff.take(idx).dense(), whole[np.ix_(idx, idx)], atol=1e-12)
    assert aff.matrix is None
    monkeypatch.setattr(affinity, "KEEP_MATRIX_MAX", 4096)  # small: the matrix is kept, subsets slice it
    kept = fused_affinity(embs, scales)
    assert np.allclose(kept.rows(7, 14), whole[7:14], atol=1e-12) and kept.matrix is not None
    assert kept.take(idx).matrix is not None and np.allclose(kept.take(idx).rows(2, 5), whole[np.ix_(idx, idx)][2:5])
    monkeypatch.setattr(affinity, "KEEP_MATRIX_MAX", 0)
    fused = aff.dense()
    x = rng.standard_normal(len(fused))
    for p in (1, 4, 17):
        assert np.array_equal(top_p_mask(fused, p), neighbour_ranks(fused) < p)
        graph = binarized_graph(aff, p)
        assert np.array_equal(graph.dense(), binarize(fused, p))
        assert np.allclose(graph.laplacian_operator() @ x, laplacian(binarize(fused, p)) @ x, rtol=0, atol=1e-12)


def test_nme_search_matrix_is_at_most_nme_mat_size(rng):
    """1.5x nme_mat_size rows are searched on every 2nd row (at most nme_mat_size), the found p scaled back."""
    cfg = ClusteringConfig(nme_mat_size=60)
    lab = np.repeat([0, 1, 2], 30)
    a = cosine_affinity(speaker_embeddings(rng, lab, spread=0.8))
    est = nme_sc(a, cfg, 8)
    sub = nme_sc(a.take(np.arange(0, len(a), 2)), ClusteringConfig(nme_mat_size=1000), 8)
    assert (est.num_speakers, est.p) == (sub.num_speakers, 2 * sub.p)


def test_eigengap_counts_disconnected_blocks():
    blocks = [np.ones((5, 5)), np.ones((7, 7)), np.ones((4, 4))]
    a = np.zeros((16, 16))
    i = 0
    for blk in blocks:
        a[i : i + len(blk), i : i + len(blk)] = blk
        i += len(blk)
    lam = np.linalg.eigvalsh(laplacian(a))
    assert eigengap_count(lam, 1, 8)[0] == 3
    assert eigengap_count(lam, 4, 8)[0] >= 4  # min_k is respected


def test_is_connected_agrees_with_scipy_components(rng):
    """The breadth-first test against scipy's connected components, on sparse random graphs, some of them
    split, some with one-way edges only (an edge in either direction connects)."""
    from scipy.sparse.csgraph import connected_components

    seen = set()
    for n in (1, 2, 7, 40, 120):
        for density in (0.0, 0.01, 0.03, 0.1, 0.5):
            a = np.triu(rng.random((n, n)) < density, 1) * rng.random((n, n))  # one-way: i < j only
            want = connected_components(a > 0, directed=False)[0] == 1
            assert spectral.is_connected(a) == want == spectral.is_connected(a.T), (n, density)
            seen.add(want)
    assert seen == {True, False}
    assert not spectral.is_connected(np.zeros((0, 0)))


def test_a_short_session_clusters_without_scipy_sparse():
    """scipy.sparse serves only graphs too large for a dense solver and the reduction of long sessions, so a
    short file's start-up does not pay its import (in a fresh process: imports are process-wide)."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from diarize.clustering import cluster\n"
        "from diarize.config import ClusteringConfig, WindowConfig\n"
        "from diarize.windows import multiscale_windows\n"
        "rng = np.random.default_rng(0)\n"
        "regions = np.array([[i * 6.0, i * 6.0 + 5.5] for i in range(8)])\n"
        "scales = multiscale_windows(regions, WindowConfig())\n"
        "centers = rng.standard_normal((3, 32))\n"
        "embs = [centers[(s.midpoints // 6).astype(int) % 3] + 0.3 * rng.standard_normal((len(s), 32)) for s in scales]\n"
        "print(cluster(embs, scales, ClusteringConfig()).num_speakers)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.sparse')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["3", "[]"]


def test_nearest_window_ties_go_to_earlier():
    assert list(nearest_window(np.array([0.0, 1.0, 2.0, 10.0]), np.array([0.5, 1.5, 9.0]))) == [0, 0, 1, 2]


@pytest.mark.parametrize("n_spk", [2, 3, 4, 5, 7])
def test_cluster_recovers_speakers_and_count(rng, n_spk):
    turn_speakers = [i % n_spk for i in range(4 * n_spk)]
    rng.shuffle(turn_speakers)
    regions, scales = turns_to_scales(turn_speakers)
    centers = rng.standard_normal((n_spk, 64))
    embs = []
    for sc in scales:
        lab = labels_for(sc, regions, turn_speakers)
        embs.append(centers[lab] + 0.4 * rng.standard_normal((len(lab), 64)))
    res = cluster(embs, scales, ClusteringConfig())
    truth = labels_for(scales[-1], regions, turn_speakers)
    assert res.num_speakers == n_spk
    assert agreement(truth, res.labels) > 0.98


def test_known_and_bounded_speaker_counts(rng):
    turn_speakers = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    regions, scales = turns_to_scales(turn_speakers)
    centers = rng.standard_normal((3, 32))
    embs = [centers[labels_for(sc, regions, turn_speakers)] + 0.3 * rng.standard_normal((len(sc), 32)) for sc in scales]
    assert cluster(embs, scales, ClusteringConfig(), SpeakerCount(num=2)).num_speakers == 2
    with pytest.warns(UserWarning, match=r"maximum \(2\)"):  # 3 unlike speakers, at most 2 allowed
        assert cluster(embs, scales, ClusteringConfig(), SpeakerCount(max=2)).num_speakers == 2
    assert cluster(embs, scales, ClusteringConfig(), SpeakerCount(min=4)).num_speakers == 4
    with pytest.raises(ValueError, match="more than"):
        cluster(embs, scales, ClusteringConfig(), SpeakerCount(num=10_000))


def test_cluster_is_deterministic(rng):
    turn_speakers = [0, 1, 0, 1, 2, 2, 1, 0]
    regions, scales = turns_to_scales(turn_speakers)
    embs = [speaker_embeddings(rng, labels_for(sc, regions, turn_speakers), spread=0.8) for sc in scales]
    a = cluster(embs, scales, ClusteringConfig())
    b = cluster([e.copy() for e in embs], scales, ClusteringConfig())
    assert np.array_equal(a.labels, b.labels) and a.p == b.p


def test_tiny_inputs():
    scales = multiscale_windows(np.array([[0.0, 0.5]]), WindowConfig())
    embs = [np.ones((len(s), 4)) for s in scales]
    res = cluster(embs, scales, ClusteringConfig())
    assert res.num_speakers == 1 and list(res.labels) == [0]
    empty = multiscale_windows(np.zeros((0, 2)), WindowConfig())
    assert cluster([np.zeros((0, 4))] * 5, empty, ClusteringConfig()).labels.shape == (0,)


def test_kmeans_separates_blobs(rng):
    x = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(3, 0.1, (20, 2)), rng.normal((0, 3), 0.1, (25, 2))])
    labels = kmeans(x, 3, seed=0)
    truth = np.repeat([0, 1, 2], [30, 20, 25])
    assert agreement(truth, labels) == 1.0
    assert np.array_equal(labels, kmeans(x, 3, seed=0))


def test_nme_prefers_clean_graph(rng):
    lab = np.repeat([0, 1, 2], 40)
    a = cosine_affinity(speaker_embeddings(rng, lab, spread=0.5))
    est = nme_sc(a, ClusteringConfig(), 8)
    assert est.num_speakers == 3 and 1 <= est.p <= 30


@pytest.mark.parametrize("model_name, volume, rows", [("campplus", 15, 225), ("titanet-large", 30, 450)])
def test_p_search_size_is_the_models(rng, monkeypatch, model_name, volume, rows):
    # One dense eigenproblem per p candidate: CAM++ searches 15 (chosen on dev) on at most 384 rows (450 items:
    # every 2nd), TitaNet NeMo's 30 on at most 512 (all 450).
    sizes = []
    solve = spectral.eigvalsh_many

    def counted(matrices, device="cpu"):
        spectra = solve(matrices, device)
        sizes.append((len(spectra), len(spectra[0])))
        return spectra

    monkeypatch.setattr(spectral, "eigvalsh_many", counted)
    lab = np.repeat([0, 1, 2], 150)  # p_max = 56 > either volume
    a = cosine_affinity(speaker_embeddings(rng, lab, spread=0.5))
    est = nme_sc(a, clustering.model_clustering(ClusteringConfig(), model_name), 8)
    assert sizes == [(volume, rows)] and est.num_speakers == 3
    sizes.clear()
    nme_sc(a, ClusteringConfig(), 8)  # "auto" left unresolved by a direct call: NeMo's search
    assert sizes == [(30, 450)]


def test_merge_joins_a_speaker_split_in_two(rng):
    turn_speakers = [0, 1, 0, 1, 0, 1]
    regions, scales = turns_to_scales(turn_speakers)
    centers = rng.standard_normal((2, 32))
    embs = [centers[labels_for(sc, regions, turn_speakers)] + 0.3 * rng.standard_normal((len(sc), 32)) for sc in scales]
    truth = labels_for(scales[-1], regions, turn_speakers)
    split = truth.copy()
    split[(truth == 0) & (scales[-1].starts > 12)] = 2  # speaker 0's later turns as a third cluster
    merged = merge_similar_clusters(split, window_items(embs, scales), threshold=0.6)
    assert agreement(truth, merged) == 1.0 and len(np.unique(merged)) == 2
    # different speakers stay apart, and min_k is respected
    assert len(np.unique(merge_similar_clusters(truth, window_items(embs, scales), threshold=0.6))) == 2
    assert len(np.unique(merge_similar_clusters(split, window_items(embs, scales), threshold=-1.0, min_k=2))) == 2


def short_turn_session(rng, turn_speakers, short_turns, short_s, dim=32, spread=0.6):
    """(embeddings per scale, scales, base-scale truth): turns 6 s apart, those in `short_turns` `short_s` long."""
    regions, _ = turns_to_scales(turn_speakers)
    for t in short_turns:
        regions[t, 1] = regions[t, 0] + short_s
    scales = multiscale_windows(regions, WindowConfig())
    centers = rng.standard_normal((max(turn_speakers) + 1, dim))
    embs = [
        centers[labels_for(sc, regions, turn_speakers)] + spread * rng.standard_normal((len(sc), dim)) for sc in scales
    ]
    return embs, scales, labels_for(scales[-1], regions, turn_speakers)


def test_split_recovers_a_speaker_absorbed_into_another_cluster(rng):
    # Speaker 2 talks once, briefly (one 2.5 s turn); the clustering put it into speaker 0's cluster.
    embs, scales, truth = short_turn_session(rng, [0, 1, 0, 1, 2, 0, 1, 0, 1], short_turns=[4], short_s=2.5)
    absorbed = np.where(truth == 2, 0, truth)
    cfg = ClusteringConfig(split_threshold=0.4, split_min_windows=6)
    aff = fused_affinity(embs, scales)
    fixed = split_clusters(absorbed, aff, window_items(embs, scales), cfg, max_k=8)[0]
    assert len(np.unique(fixed)) == 3 and agreement(truth, fixed) == 1.0
    # Clean clusters of one speaker each are left alone; max_k caps the number of clusters.
    assert agreement(truth, split_clusters(truth, aff, window_items(embs, scales), cfg, max_k=8)[0]) == 1.0
    assert len(np.unique(split_clusters(truth, aff, window_items(embs, scales), cfg, max_k=8)[0])) == 3
    assert len(np.unique(split_clusters(absorbed, aff, window_items(embs, scales), cfg, max_k=2)[0])) == 2
    # A group smaller than split_min_windows is not split off.
    big = ClusteringConfig(split_threshold=0.4, split_min_windows=int((truth == 2).sum()) + 1)
    assert len(np.unique(split_clusters(absorbed, aff, window_items(embs, scales), big, max_k=8)[0])) == 2


def test_turns_break_at_label_changes_and_pauses():
    starts, ends = np.array([0.0, 0.25, 0.5, 2.0, 2.25, 2.5]), np.array([0.5, 0.75, 1.0, 2.5, 2.75, 3.0])
    runs = turns(np.array([0, 0, 1, 1, 1, 1]), starts, ends)
    assert [r.tolist() for r in runs] == [[0, 1], [2], [3, 4, 5]]  # 1.0 -> 2.0 s is a pause
    assert turns(np.zeros(0, dtype=int), starts[:0], ends[:0]) == []


def test_turns_that_resemble_no_cluster_become_a_speaker_of_their_own(rng):
    # Speaker 2 says two short things (turns 3 and 7), which the clustering gave to speaker 0.
    embs, scales, truth = short_turn_session(rng, [0, 1, 0, 2, 1, 0, 1, 2, 0, 1], short_turns=[3, 7], short_s=1.5)
    x, base = unit_rows(embs[-1], eps=1e-12), scales[-1]
    absorbed = np.where(truth == 2, 0, truth)
    runs = turns(absorbed, base.starts, base.ends)
    fixed = split_off_turns(absorbed, x, runs, threshold=0.3, min_windows=3, join_threshold=0.65, max_k=8)
    assert len(np.unique(fixed)) == 3 and agreement(truth, fixed) == 1.0  # both turns, one new speaker
    # Without joining, each turn is a speaker; the maximum count caps what is added.
    apart = split_off_turns(absorbed, x, runs, threshold=0.3, min_windows=3, join_threshold=None, max_k=8)
    assert len(np.unique(apart)) == 4
    assert len(np.unique(split_off_turns(absorbed, x, runs, 0.3, 3, None, max_k=3))) == 3
    # Correct clusters are left alone, and so is a turn shorter than min_windows.
    assert (split_off_turns(truth, x, turns(truth, base.starts, base.ends), 0.3, 3, 0.65, 8) == truth).all()
    longest = max(len(r) for r in runs if truth[r[0]] == 2)
    assert (split_off_turns(absorbed, x, runs, 0.3, longest + 1, 0.65, 8) == absorbed).all()


def test_cluster_counts_a_speaker_who_says_a_few_words_unless_the_count_is_known(rng):
    embs, scales, truth = short_turn_session(rng, [0, 1, 0, 1, 2, 0, 1, 0, 1, 0, 1], short_turns=[4], short_s=1.5)
    off = ClusteringConfig(turn_split_threshold=None, split_threshold=None)
    assert cluster(embs, scales, off).num_speakers == 2  # the graph alone absorbs the short turn
    res = cluster(embs, scales, ClusteringConfig(split_threshold=None))
    assert res.num_speakers == 3 and agreement(truth, res.labels) == 1.0
    assert cluster(embs, scales, ClusteringConfig(split_threshold=None), SpeakerCount(num=2)).num_speakers == 2
    # A turn must also hold turn_min_share of the session's base windows (a stray in a long session).
    share = ((truth == 2).sum() + 1) / len(truth)
    assert cluster(embs, scales, ClusteringConfig(split_threshold=None, turn_min_share=share)).num_speakers == 2


# --------------------------------------------------------------------------- NeMo's toy clustering cases
# NeMo's own clustering test (tests/collections/asr/test_diar_utils.py, `test_offline_speaker_clustering`)
# builds 30 s sessions where n = 1..7 speakers talk one after another for 30/n s each; every window of
# every scale gets its speaker's centroid, a row of a random orthogonal 192 x 192 matrix, plus 0.1 x
# uniform [0, 1) noise per dimension, and requires the exact labels for an unknown count (max 8 speakers,
# sparse search volume 10, max_rp_threshold 0.15, enhanced counting for <= 40 windows). Facts only; the
# code below is our own. NeMo's test cuts three scales (1.5/1.0/0.5 s); we run those and its five
# default ones (1.5 -> 0.5 s), with NeMo's test settings and with our defaults, count unknown and known.
NEMO_TOY_SECONDS = 30.0
NEMO_TOY_CFG = dict(max_num_speakers=8, sparse_search_volume=10, max_rp_threshold=0.15, enhanced_count_threshold=40)
NEMO_TOY_SCALES = {
    "5scales": WindowConfig(),  # NeMo's default: 1.5, 1.25, 1.0, 0.75, 0.5 s, half-window shifts
    "3scales": WindowConfig(window_lengths=[1.5, 1.0, 0.5], shifts=[0.75, 0.5, 0.25], weights=[1.0, 1.0, 1.0]),
}


def nemo_toy_session(n_spk: int, windows: WindowConfig, seed: int = 0, dim: int = 192, noise: float = 0.1):
    """(embeddings per scale, scales, base-scale truth) of one toy session."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    centroids = q[:n_spk]  # orthonormal rows
    turn = NEMO_TOY_SECONDS / n_spk
    regions = np.array([[k * turn, (k + 1) * turn] for k in range(n_spk)])
    scales = multiscale_windows(regions, windows)  # windows never cross a turn (one region per turn)
    embs, truth = [], None
    for sc in scales:
        lab = np.minimum((sc.midpoints // turn).astype(int), n_spk - 1)
        embs.append(centroids[lab] + noise * rng.random((len(sc), dim)))
        truth = lab
    return embs, scales, truth


def test_nemo_toy_session_is_what_it_claims():
    embs, scales, truth = nemo_toy_session(7, NEMO_TOY_SCALES["5scales"])
    assert [s.window for s in scales] == [1.5, 1.25, 1.0, 0.75, 0.5]
    assert scales[-1].ends.max() == pytest.approx(NEMO_TOY_SECONDS)
    assert np.array_equal(np.unique(truth), np.arange(7)) and len(truth) == len(scales[-1])
    x = embs[-1] / np.linalg.norm(embs[-1], axis=1, keepdims=True)
    within = (x @ x.T)[truth[:, None] == truth[None]].min()
    between = (x @ x.T)[truth[:, None] != truth[None]].max()
    assert within > 0.8 and between < 0.5  # separable speakers: a failure below is the clustering's


@pytest.mark.parametrize("known", [False, True], ids=["unknown", "known"])
@pytest.mark.parametrize("cfg_name", ["nemo", "default"])
@pytest.mark.parametrize("scales_name", list(NEMO_TOY_SCALES))
@pytest.mark.parametrize("n_spk", range(1, 8))
def test_nemo_toy_cases_exact_labels(n_spk, scales_name, cfg_name, known):
    embs, scales, truth = nemo_toy_session(n_spk, NEMO_TOY_SCALES[scales_name])
    cfg = ClusteringConfig(**NEMO_TOY_CFG) if cfg_name == "nemo" else ClusteringConfig()
    res = cluster(embs, scales, cfg, SpeakerCount(num=n_spk if known else None))
    assert res.num_speakers == n_spk
    assert agreement(truth, res.labels) == 1.0


@pytest.mark.parametrize("n_spk", range(2, 8))
def test_nemo_toy_cases_known_count_nemo_way(n_spk):
    """NeMo's own known-count path (eigengap search narrowed to the count, k-means to it) is exact too."""
    embs, scales, truth = nemo_toy_session(n_spk, NEMO_TOY_SCALES["5scales"])
    res = cluster(embs, scales, ClusteringConfig(known_count="nemo"), SpeakerCount(num=n_spk))
    assert res.num_speakers == n_spk and agreement(truth, res.labels) == 1.0


def test_more_speakers_than_the_maximum_fill_it_instead_of_collapsing_to_one():
    # 16 distinct speakers, one 4 s turn each (about 13 base windows), searched for at most 8: every
    # speaker has fewer windows than NME-SC's p, the binarised graph is one blob and the eigengap
    # says 1. The split must still find the unlike halves, up to the maximum.
    rng = np.random.default_rng(0)
    turn_speakers = list(range(16))
    regions, scales = turns_to_scales(turn_speakers, turn_len=4.0)
    centers = rng.standard_normal((16, 64))
    embs = [centers[labels_for(sc, regions, turn_speakers)] + 0.8 * rng.standard_normal((len(sc), 64)) for sc in scales]
    truth = labels_for(scales[-1], regions, turn_speakers)
    assert nme_sc(fused_affinity(embs, scales), ClusteringConfig(), 8).num_speakers == 1  # the collapse
    with pytest.warns(UserWarning, match=r"stopped at its maximum \(8\).*raise max_speakers"):
        res = cluster(embs, scales, ClusteringConfig(max_num_speakers=8))
    assert res.num_speakers == 8
    # Clusters are unions of speakers, mostly whole ones (most windows of each speaker in one cluster).
    assert np.mean([np.bincount(res.labels[truth == s]).max() / (truth == s).sum() for s in range(16)]) > 0.8
    # With room for them, the eigengap finds all 16.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the count is below the maximum
        wide = cluster(embs, scales, ClusteringConfig(), SpeakerCount(max=30))
    assert wide.num_speakers == 16 and agreement(truth, wide.labels) > 0.98
    # One speaker's halves are alike: a single-speaker session stays one speaker.
    one = [centers[0] + 0.8 * rng.standard_normal((len(sc), 64)) for sc in scales]
    assert cluster(one, scales, ClusteringConfig()).num_speakers == 1


def test_many_speakers_whose_halves_look_alike_fill_the_maximum(monkeypatch):
    # 60 speakers sharing a common direction, as real embeddings do (4 s each, at most 8 searched for).
    # The eigengap says 1, and the spectral halves of the blob average 30 voices each, so their
    # centroids look alike and the split does not start (an hour of 57 LibriSpeech speakers on an
    # H100 came out as 1 speaker this way). A partition into 8 clusters that are all unlike does exist.
    rng = np.random.default_rng(0)
    turn_speakers = list(range(60))
    regions, scales = turns_to_scales(turn_speakers, turn_len=4.0)
    centers = 0.4 * rng.standard_normal(64) + rng.standard_normal((60, 64))
    embs = [centers[labels_for(sc, regions, turn_speakers)] + 0.8 * rng.standard_normal((len(sc), 64)) for sc in scales]
    assert nme_sc(fused_affinity(embs, scales), ClusteringConfig(), 8).num_speakers == 1
    capped = ClusteringConfig(max_num_speakers=8)
    with pytest.warns(UserWarning, match=r"stopped at its maximum \(8\)"):
        res = cluster(embs, scales, capped)
    assert res.num_speakers == 8
    with monkeypatch.context() as m:  # the split alone, from one cluster: the halves look alike
        m.setattr(clustering, "unlike_partition", lambda *a: None)
        split_only = ClusteringConfig(max_num_speakers=8, turn_split_threshold=None)
        assert cluster(embs, scales, split_only).num_speakers == 1
        # Each speaker's turn resembles neither the blob nor the others: turn splitting alone fills the maximum.
        assert cluster(embs, scales, capped).num_speakers == 8
    # One speaker with the same common direction stays one speaker.
    one = [centers[0] + 0.8 * rng.standard_normal((len(sc), 64)) for sc in scales]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cluster(one, scales, ClusteringConfig()).num_speakers == 1


def test_eigvalsh_many_on_the_gpu_path_batches_and_matches_lapack(rng, monkeypatch):
    """The GPU path (torch, batches bounded in bytes) run on the CPU: the same eigenvalues as LAPACK."""
    from scipy.linalg import eigvalsh

    mats = [laplacian(cosine_affinity(rng.standard_normal((40, 8))).dense()) for _ in range(7)]
    want = [eigvalsh(m) for m in mats]
    sizes = []
    torch_eigvalsh = spectral._torch_eigvalsh
    monkeypatch.setattr(spectral, "on_gpu", lambda device, n: True)
    monkeypatch.setattr(spectral, "GPU_EIGEN_BATCH_BYTES", 3 * 8 * 40 * 40)
    monkeypatch.setattr(spectral, "_torch_eigvalsh", lambda b, d: sizes.append(len(b)) or torch_eigvalsh(b, d))
    got = spectral.eigvalsh_many((m.copy() for m in mats), "cpu")
    assert sizes == [3, 3, 1]
    assert len(got) == 7 and all(np.allclose(g, w, atol=1e-10) for g, w in zip(got, want))


def test_host_eigenvalues_stay_on_the_host_for_small_or_non_cuda(rng, monkeypatch):
    monkeypatch.setattr(spectral, "_torch_eigvalsh", lambda b, d: pytest.fail("sent to torch"))
    big = laplacian(cosine_affinity(rng.standard_normal((spectral.GPU_EIGEN_MIN_N, 8))).dense())
    small = big[:10, :10].copy()
    assert len(spectral.eigvalsh_many([big.copy()], "cpu")) == 1
    assert len(spectral.eigvalsh_many([big.copy()], "mps")) == 1
    assert len(spectral.eigvalsh_many([small], "cuda")) == 1


def test_host_eigenproblems_run_on_one_blas_thread_and_give_the_pool_back(rng, monkeypatch):
    """The p-search's and the split's dense solves run with `EIGEN_BLAS_THREADS`; the process's BLAS
    setting is what it was afterwards, and the count is the one any thread count gives."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("no BLAS that threadpoolctl can set (NumPy and SciPy's wheels bundle OpenBLAS)")
    seen = []
    solve, solve_vectors = spectral.eigvalsh, spectral.eigh
    monkeypatch.setattr(spectral, "eigvalsh", lambda *a, **k: seen.append(blas_threads()) or solve(*a, **k))
    monkeypatch.setattr(spectral, "eigh", lambda *a, **k: seen.append(blas_threads()) or solve_vectors(*a, **k))
    emb = np.concatenate([rng.standard_normal(16) * 3 + rng.standard_normal((60, 16)) for _ in range(3)])
    with threadpool_limits(2, user_api="blas"):
        one = nme_sc(cosine_affinity(emb), ClusteringConfig(), 8)
        spectral.spectral_embedding(laplacian(cosine_affinity(emb).dense()), 3)
        assert seen and all(s == {1} for s in seen)
        assert blas_threads() == {2}
        seen.clear()
        monkeypatch.setattr(spectral, "EIGEN_BLAS_THREADS", None)
        assert nme_sc(cosine_affinity(emb), ClusteringConfig(), 8) == one
        assert seen and all(s == {2} for s in seen)
    assert one.num_speakers == 3


def test_pipeline_clusters_on_the_embedding_device_unless_told(monkeypatch):
    """clustering.device "auto" follows the embedding model's device; an explicit one is kept."""
    from pyannote.core import Annotation, Segment

    from diarize import pipeline
    from diarize.config import DiarizerConfig

    class Model:  # embeddings are stubbed below; only where the model lives matters
        name, device = "stub", "meta"

    seen = []
    monkeypatch.setattr(pipeline, "embed_blocks", lambda b, scales, *a, **k: [np.eye(len(s), 4) for s in scales])
    monkeypatch.setattr(pipeline, "cluster", lambda e, s, cfg, *a, **k: seen.append(cfg.device) or cluster(e, s, cfg))
    source = pipeline.open_source(np.zeros(32000, dtype=np.float32), 16000)
    oracle = Annotation()
    oracle[Segment(0.0, 2.0)] = "A"
    for device in ("auto", "cpu"):
        cfg = DiarizerConfig()
        cfg.clustering.device = device
        pipeline.diarize(source, Model(), cfg, oracle_vad=oracle)
    assert seen == ["meta", "cpu"]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_eigendecompositions_give_the_cpu_labels(rng):
    turn_speakers = [i % 5 for i in range(20)]
    rng.shuffle(turn_speakers)
    regions, scales = turns_to_scales(turn_speakers)
    embs = [speaker_embeddings(rng, labels_for(sc, regions, turn_speakers), spread=0.8) for sc in scales]
    assert len(scales[-1]) >= spectral.GPU_EIGEN_MIN_N
    cpu = cluster(embs, scales, ClusteringConfig(device="cpu"))
    gpu = cluster(embs, scales, ClusteringConfig(device="cuda"))
    assert np.array_equal(cpu.labels, gpu.labels) and cpu.p == gpu.p
