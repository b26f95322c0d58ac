"""Refinements after the spectral step: split clusters whose halves are unlike, merge clusters whose
centroids are alike (centroids are size-weighted over `ClusterItems`, averaged over scales), and give
turns that resemble no cluster a speaker of their own."""

from __future__ import annotations

import numpy as np

from .affinity import Affinity, ClusterItems, TopPGraph, binarized_graph, unit_rows
from .config import ClusteringConfig
from .spectral import kmeans, nme_sc, spectral_embedding

# Turns `split_off_turns` considers, the least like any cluster first: bounds its joining step (quadratic
# in the turns per join) on long recordings, where far more turns than new speakers can pass the threshold.
MAX_TURN_CANDIDATES = 256


def centroid_similarity(
    labels: np.ndarray, items: ClusterItems, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity between cluster centroids, averaged over scales.

    A base window contributes its nearest window of every scale, so the centroids use the longer,
    cleaner windows too. Only items where `mask` is true count. Returns (cluster ids, similarities).
    """
    mask = np.ones(len(labels), dtype=bool) if mask is None else mask
    ids = np.unique(labels[mask])
    sims = np.zeros((len(ids), len(ids)))
    for x in items.vectors:
        cen = unit_rows(
            np.stack(
                [
                    (items.sizes[sel, None] * x[sel]).sum(axis=0)
                    for sel in (np.flatnonzero(mask & (labels == k)) for k in ids)
                ]
            ),
            eps=1e-12,
        )
        sims += cen @ cen.T
    return ids, sims / len(items.vectors)


def split_clusters(
    labels: np.ndarray,
    affinity: Affinity,
    items: ClusterItems,
    cfg: ClusteringConfig,
    max_k: int,
    threshold: float | None = None,
    look_past_cap: bool = False,
    search_p: bool = False,
) -> tuple[np.ndarray, float | None]:
    """Split off a group of items that a cluster absorbed although it is another speaker.

    NME-SC's p (the neighbours kept per row) is chosen for the whole session; a speaker with fewer
    windows than p links mostly to other speakers and disappears into their cluster. Each cluster is
    bisected spectrally on its own affinity, binarised with p = `split_p_ratio` of its items (with
    `search_p`: NME-SC's p-search on the cluster's affinity). The split is kept when the two halves'
    centroids have cosine below `split_threshold` and the smaller half stands for at least
    `split_min_windows` base windows. Repeated until nothing splits or `max_k` clusters exist.
    `threshold` overrides `cfg.split_threshold` (np.inf: always split the most distinct halves, used to
    reach a known speaker count).

    Returns the labels and, with `look_past_cap`, the cosine of the most distinct halves left unsplit
    because `max_k` clusters exist (None: nothing left to split; finding it costs bisecting the clusters
    at the cap).
    """
    threshold = cfg.split_threshold if threshold is None else threshold
    labels = labels.copy()
    halves: dict[tuple[int, ...], tuple[float, np.ndarray] | None] = {}  # cluster members -> (cosine, half)
    while look_past_cap or len(np.unique(labels)) < max_k:
        best = None
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            key = tuple(idx)
            if key not in halves:
                halves[key] = _bisect(idx, labels, affinity, items, cfg, search_p)
            cand = halves[key]
            if cand is not None and cand[0] < threshold and (best is None or cand[0] < best[0]):
                best = cand
        if best is None:
            break
        if len(np.unique(labels)) >= max_k:
            return np.unique(labels, return_inverse=True)[1], best[0]
        labels[best[1]] = labels.max() + 1
    return np.unique(labels, return_inverse=True)[1], None


def unlike_partition(
    graph: np.ndarray | TopPGraph, items: ClusterItems, cfg: ClusteringConfig, max_k: int
) -> np.ndarray | None:
    """The spectral partition of `graph` into the most clusters, `max_k` down to 2, whose centroids are
    all unlike (cosine < `split_threshold`) and which each stand for at least `split_min_windows` base
    windows; None if no count has one. A single speaker's parts stay alike at every count."""
    vecs = spectral_embedding(graph, max_k, cfg.device)
    for k in range(max_k, 1, -1):
        labels = kmeans(vecs[:, :k], k, seed=cfg.seed, n_init=cfg.kmeans_inits)
        sizes = np.bincount(labels, weights=items.sizes, minlength=k)
        if sizes.min() < cfg.split_min_windows:
            continue
        _, sims = centroid_similarity(labels, items)
        np.fill_diagonal(sims, -np.inf)
        if sims.max() < cfg.split_threshold:
            return labels
    return None


def _bisect(
    idx: np.ndarray,
    labels: np.ndarray,
    affinity: Affinity,
    items: ClusterItems,
    cfg: ClusteringConfig,
    search_p: bool = False,
) -> tuple[float, np.ndarray] | None:
    """Spectral 2-way split of the items `idx`: (centroid cosine of the halves, one half), or None.

    The cluster's affinity is binarised with p = `cfg.split_p_ratio` of its items, or NME-SC's p."""
    if items.sizes[idx].sum() < 2 * cfg.split_min_windows or len(idx) < 4:
        return None
    sub = affinity.take(idx)
    p = nme_sc(sub, cfg, max(2, cfg.max_num_speakers)).p if search_p else max(2, int(len(idx) * cfg.split_p_ratio))
    part = kmeans(spectral_embedding(binarized_graph(sub, p), 2, cfg.device), 2, seed=cfg.seed, n_init=cfg.kmeans_inits)
    if min(items.sizes[idx[part == 0]].sum(), items.sizes[idx[part == 1]].sum()) < cfg.split_min_windows:
        return None
    two = np.zeros(len(labels), dtype=np.int64)  # only the two halves matter for their cosine
    two[idx[part == 1]] = 1
    mask = np.zeros(len(labels), dtype=bool)
    mask[idx] = True
    _, sims = centroid_similarity(two, items, mask)
    return float(sims[0, 1]), idx[part == 1]


def merge_similar_clusters(labels: np.ndarray, items: ClusterItems, threshold: float, min_k: int = 1) -> np.ndarray:
    """Merge the most similar pair of clusters while their centroid cosine is >= threshold.

    The eigengap over-counts on short or overlapped sessions (a speaker's windows split
    into chunks); cluster centroids average many windows and are far more reliable than
    single windows, so one speaker split in two is recognised and joined (3D-Speaker's
    back end does a similar merge). Never goes below `min_k` clusters.
    """
    labels = labels.copy()
    while True:
        ids, sims = centroid_similarity(labels, items)
        if len(ids) <= max(min_k, 1):
            break
        np.fill_diagonal(sims, -np.inf)
        i, j = np.unravel_index(np.argmax(sims), sims.shape)
        if sims[i, j] < threshold:
            break
        labels[labels == ids[j]] = ids[i]
    return np.unique(labels, return_inverse=True)[1]


def turns(labels: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive base windows with one label and no gap between neighbours (a gap: the next
    window starts after this one ends, i.e. a pause between speech regions)."""
    if len(labels) == 0:
        return []
    breaks = np.flatnonzero((labels[1:] != labels[:-1]) | (starts[1:] > ends[:-1])) + 1
    return np.split(np.arange(len(labels)), breaks)


def split_off_turns(
    labels: np.ndarray,
    vectors: np.ndarray,
    runs: list[np.ndarray],
    threshold: float,
    min_windows: int,
    join_threshold: float | None,
    max_k: int,
) -> np.ndarray:
    """Turns (`runs` of at least `min_windows` rows) whose mean unit vector has cosine below `threshold`
    to the rest of their cluster and to every other cluster become speakers of their own; those turns
    then join each other while their centroids have cosine >= `join_threshold`. At most `max_k`
    clusters: the turns least like any cluster go first. `vectors` (N, D) are unit rows; `labels`
    are 0..K-1."""
    if not runs:
        return labels
    sums = np.stack([vectors[labels == k].sum(axis=0) for k in range(int(labels.max()) + 1)])
    sizes = np.bincount(labels, minlength=len(sums))
    own = np.array([labels[r[0]] for r in runs])
    lengths = np.array([len(r) for r in runs])
    run_sums = np.stack([vectors[r].sum(axis=0) for r in runs])
    means = unit_rows(run_sums, eps=1e-12)
    like = means @ unit_rows(sums, eps=1e-12).T  # (runs, clusters); own cluster: without the turn itself
    like[np.arange(len(runs)), own] = (means * unit_rows(sums[own] - run_sums, eps=1e-12)).sum(axis=1)
    best = like.max(axis=1)
    picked = np.flatnonzero((lengths >= min_windows) & (sizes[own] - lengths >= min_windows) & (best < threshold))
    if not len(picked):
        return labels
    picked = picked[np.argsort(best[picked], kind="stable")][:MAX_TURN_CANDIDATES]
    groups = _join_turns([runs[i] for i in picked], vectors, join_threshold)
    labels = labels.copy()
    for rows in groups[: max(0, max_k - len(sums))]:
        labels[rows] = labels.max() + 1
    return labels


def _join_turns(runs: list[np.ndarray], vectors: np.ndarray, threshold: float | None) -> list[np.ndarray]:
    """Greedy agglomeration of turns (`runs`): the most similar pair of groups joins while its centroid
    cosine is >= `threshold` (None: never); groups keep the order of their first turn."""
    groups = list(runs)
    while threshold is not None and len(groups) > 1:
        cen = unit_rows(np.stack([vectors[g].sum(axis=0) for g in groups]), eps=1e-12)
        sims = cen @ cen.T
        np.fill_diagonal(sims, -np.inf)
        i, j = sorted(np.unravel_index(np.argmax(sims), sims.shape))
        if sims[i, j] < threshold:
            break
        groups[i] = np.concatenate([groups[i], groups.pop(j)])
    return groups
