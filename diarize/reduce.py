"""Reduction of long sessions before the clustering core (SpectralCluster's reduce-then-predict).

Long recordings (more base windows than `embeddings_per_chunk`) are reduced before the core: its blocks of
affinity rows cost O(N^2) time (9,300 windows: ~4 s per pass over all rows), while this is O(N):
1. each base window gets one fused vector: the concatenation over scales of sqrt(w_s) * unit(e_s[m_s(i)]),
   so a dot product of two fused vectors is exactly the weighted sum of per-scale cosines that
   `fused_affinity` adds up (minus its per-scale min-max scaling);
2. the windows are cut into contiguous chunks of near-equal size (at most `embeddings_per_chunk`);
3. each chunk is over-clustered by spherical k-means into `chunk_cluster_count` groups. k-means puts
   more centroids where there is more data, so a speaker's share of centroids follows their share of
   speech, which keeps the spectral step on the reduced set balanced like the full one would be.
   The k-means is fitted on every other window and then every window joins its nearest centroid
   (`over_cluster`);
4. the groups of all chunks go through the same core as a short session (`cluster_items`);
5. every window takes the speaker label of its group.
Memory is O(N * D) for the fused vectors of one chunk plus O(M^2) for M = chunks * chunk_cluster_count.
"""

from __future__ import annotations

import numpy as np

from .affinity import ClusterItems, scale_maps, unit_rows
from .config import ClusteringConfig
from .windows import ScaleWindows


def fused_vectors(
    embeddings: list[np.ndarray], maps: list[np.ndarray], weights: list[float], rows: slice
) -> np.ndarray:
    """Fused vectors of base windows `rows`: concatenation of sqrt(w_s) * unit embedding of the mapped window.

    Rows are normalised after gathering, so no full-size normalised copy of the embeddings exists.
    """
    return np.concatenate([np.sqrt(w) * unit_rows(e[m[rows]]) for e, m, w in zip(embeddings, maps, weights)], axis=1)


def _group_sums(labels: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Per-label row sums as one sparse one-hot product (np.add.at is ~50x slower)."""
    from scipy.sparse import csr_matrix  # here: only long sessions are reduced, and SciPy costs start-up time

    n = len(labels)
    onehot = csr_matrix((np.ones(n, dtype=x.dtype), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ x)


def spherical_kmeans(
    x: np.ndarray, k: int, seed: int = 0, n_init: int = 2, max_iter: int = 10, tol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the unit sphere (cosine similarity); returns (labels, centroids of the raw rows).

    Uses x @ centres.T rather than pairwise differences, so memory is O(n * k), not O(n * k * d).
    The Lloyd steps run in float32 (it only compresses a chunk, the precision is not needed) and
    stop once fewer than `tol` of the labels change, or after `max_iter` steps (10 gave the same DER as
    30 on sessions forced through this path, at a third of the time; benchmarks/RESULTS.md). Empty groups are dropped and labels
    renumbered 0..k'-1. Deterministic for a given seed.
    """
    n = len(x)
    k = max(1, min(k, n))
    xn = unit_rows(x).astype(np.float32)
    rng = np.random.default_rng(seed)
    best, best_score = None, -np.inf
    for _ in range(max(1, n_init)):
        # k-means++ on cosine distance 1 - cos.
        idx = [int(rng.integers(n))]
        dist = np.maximum(1.0 - xn @ xn[idx[0]], 0.0)
        for _ in range(1, k):
            total = dist.sum()
            j = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
            idx.append(j)
            dist = np.minimum(dist, np.maximum(1.0 - xn @ xn[j], 0.0))
        centres = xn[idx].copy()
        labels = np.full(n, -1, dtype=np.int64)
        for _ in range(max_iter):
            sim = xn @ centres.T
            new = sim.argmax(axis=1)
            changed = int((new != labels).sum())
            labels = new
            if changed <= tol * n:
                break
            sums = _group_sums(labels, xn, k)
            counts = np.bincount(labels, minlength=k)
            empty = counts == 0
            if empty.any():  # reseed empty groups with the worst-fitting points
                worst = np.argsort(sim[np.arange(n), labels], kind="stable")[: int(empty.sum())]
                sums[empty] = xn[worst]
            centres = unit_rows(sums).astype(np.float32)  # unit_rows is float64: keep the matmul float32
        score = float((xn * centres[labels]).sum())
        if score > best_score + 1e-9:
            best, best_score = labels.copy(), score
    used, labels = np.unique(best, return_inverse=True)
    counts = np.bincount(labels)
    cent = _group_sums(labels, np.asarray(x, dtype=np.float64), len(used))
    return labels.astype(np.int64), cent / counts[:, None]


FIT_STRIDE = 2  # fit the chunk k-means on every FIT_STRIDE-th window (benchmarks/RESULTS.md)


FIT_MIN_PER_GROUP = 20  # ... when that leaves at least this many windows per group


def over_cluster(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to `k` groups of the rows of `x` by cosine: (labels 0..k'-1, mean of the raw rows of each group).

    The spherical k-means is fitted on every other row, then every row joins the centroid it is most
    similar to. Neighbouring base windows (0.5 s every 0.25 s) share half their audio and mostly the
    same longer-scale windows, so skipping one in two loses little, and the k-means is most of a long
    session's clustering time (1 h: 2.5-2.8 -> 0.9-1.4 s, DER +0.01 points; benchmarks/RESULTS.md).
    """
    xn = unit_rows(x).astype(np.float32)
    fit = xn[::FIT_STRIDE] if len(x) >= FIT_STRIDE * FIT_MIN_PER_GROUP * k else xn  # small chunks: every row
    _, cent = spherical_kmeans(fit, k, seed=seed)
    nearest = (xn @ unit_rows(cent).astype(np.float32).T).argmax(axis=1)
    used, labels = np.unique(nearest, return_inverse=True)
    sums = _group_sums(labels, np.asarray(x, dtype=np.float64), len(used))
    return labels.astype(np.int64), sums / np.bincount(labels)[:, None]


def chunk_bounds(n: int, per_chunk: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) chunks of near-equal size, none larger than `per_chunk`."""
    n_chunks = max(1, -(-n // max(1, per_chunk)))
    edges = np.linspace(0, n, n_chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def reduce_long_form(
    embeddings: list[np.ndarray], scales: list[ScaleWindows], cfg: ClusteringConfig, groups_per_chunk: int
) -> tuple[np.ndarray, np.ndarray, ClusterItems]:
    """Over-cluster chunk by chunk.

    Returns (representatives (M, D'), owner (N_base,) index of each window's group, the groups as
    `ClusterItems` for the core's centroid comparisons).
    """
    n = len(scales[-1])
    maps = scale_maps(scales)
    used = [i for i, (e, s) in enumerate(zip(embeddings, scales)) if s.weight > 0 and len(e) > 0]
    embs = [embeddings[i] for i in used]
    maps_used = [maps[i] for i in used]
    weights = [float(scales[i].weight) for i in used]
    owner = np.empty(n, dtype=np.int64)
    reps: list[np.ndarray] = []
    group_vectors: list[list[np.ndarray]] = [[] for _ in embeddings]
    sizes: list[np.ndarray] = []
    offset = 0
    for a, b in chunk_bounds(n, cfg.embeddings_per_chunk):
        x = fused_vectors(embs, maps_used, weights, slice(a, b))
        labels, cent = over_cluster(x, groups_per_chunk, seed=cfg.seed)
        owner[a:b] = offset + labels
        reps.append(cent)
        k = len(cent)
        sizes.append(np.bincount(labels, minlength=k).astype(np.float64))
        for s, (e, m) in enumerate(zip(embeddings, maps)):
            # Mean unit vector of the members: with `sizes` as weights, centroids equal the full sums.
            group_vectors[s].append(_group_sums(labels, unit_rows(e[m[a:b]], eps=1e-12), k) / sizes[-1][:, None])
        offset += k
    items = ClusterItems([np.concatenate(v) for v in group_vectors], np.concatenate(sizes))
    return np.concatenate(reps), owner, items
