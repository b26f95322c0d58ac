"""The clustering core: speaker count bounds -> NME-SC -> spectral labels -> split/merge refinements, with
the long-form reduction in front (SpectralCluster's layout):

    affinity.py  multi-scale affinity, top-p graph, the items clustered
    spectral.py  NME-SC p search, eigengap, spectral embedding, k-means, device eigensolvers
    refine.py    split and merge
    reduce.py    long sessions reduced to groups before the core

All NumPy/SciPy and deterministic for a given seed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .affinity import Affinity, ClusterItems, TopPGraph, binarized_graph, cosine_affinity, fused_affinity, unit_rows
from .affinity import window_items
from .config import ClusteringConfig, SpeakerCount, model_clustering
from .errors import SpeakerCountError
from .reduce import reduce_long_form
from .refine import merge_similar_clusters, split_clusters, split_off_turns, turns, unlike_partition
from .spectral import NMEResult, enhanced_count, kmeans, nme_sc, spectral_embedding
from .windows import ScaleWindows


def count_bounds(n: int, cfg: ClusteringConfig, count: SpeakerCount) -> tuple[int, int]:
    """(min, max) speaker count to search over `n` items; a known count gives min = max.

    Raises SpeakerCountError when more speakers are asked for than there are base windows.
    """
    if count.num is not None:
        if count.num > n:
            raise SpeakerCountError(f"--num-speakers {count.num} is more than the {n} base-scale windows of speech")
        return count.num, count.num
    lo = count.min or 1
    if lo > n:
        raise SpeakerCountError(f"--min-speakers {lo} is more than the {n} base-scale windows of speech")
    # An explicit minimum above the preset's maximum raises the maximum, never the other way round.
    hi = count.max or max(cfg.max_num_speakers, lo)
    return lo, hi


@dataclass
class ClusteringResult:
    labels: np.ndarray  # (N_base,) speaker index of each base-scale window
    num_speakers: int
    p: int | None  # binarisation p chosen by NME-SC (None for tiny inputs)


def _result(labels: np.ndarray, p: int | None) -> ClusteringResult:
    labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return ClusteringResult(labels, int(len(np.unique(labels))), p)


def cluster_items(
    affinity: Affinity, items: ClusterItems, cfg: ClusteringConfig, count: SpeakerCount = SpeakerCount()
) -> ClusteringResult:
    """Count bounds -> NME-SC -> spectral labels -> refinements, on the affinity of `items`.

    `cfg` has its "auto" fields resolved (`config.model_clustering`; `cluster` does that). With an
    unknown count see `_unknown_count`, with a known one `_known_count`.
    """
    n = len(affinity)
    min_k, max_k = count_bounds(n, cfg, count)
    if n <= 1:
        return ClusteringResult(np.zeros(n, dtype=np.int64), n, None)
    if count.num == n:
        return ClusteringResult(np.arange(n, dtype=np.int64), n, None)
    if count.num is not None:
        return _known_count(affinity, items, cfg, count.num)
    max_k = max(min(max_k, n - 1), 1)
    return _unknown_count(affinity, items, cfg, min(min_k, max_k), max_k)


def _p_search(affinity: Affinity, cfg: ClusteringConfig, search_k: int) -> tuple[NMEResult, np.ndarray | TopPGraph]:
    """NME-SC's estimate and the graph the spectral step runs on: the affinity itself for tiny inputs
    (p fixed at `max_rp_threshold`), else its top-p binarisation."""
    tiny = len(affinity) <= cfg.min_samples_for_nmesc
    est = nme_sc(affinity, cfg, search_k, fixed_ratio=cfg.max_rp_threshold if tiny else None)
    return est, affinity.dense() if tiny else binarized_graph(affinity, est.p)


def _spectral_labels(graph: np.ndarray | TopPGraph, k: int, cfg: ClusteringConfig) -> np.ndarray:
    return kmeans(spectral_embedding(graph, k, cfg.device), k, seed=cfg.seed, n_init=cfg.kmeans_inits)


def _known_count(affinity: Affinity, items: ClusterItems, cfg: ClusteringConfig, num: int) -> ClusteringResult:
    """`num` speakers (1 <= num < items). `known_count` "nemo": NeMo's way, the eigengap search narrowed
    to the count and k-means to it. Otherwise the graph's own groups, merged or split to the count
    (small speakers absorbed by others come back as split-off halves)."""
    nemo = cfg.known_count == "nemo"
    # p is chosen on the unconstrained spectrum (a user's bound must not hide the structure the
    # search measures), except for NeMo's known-count search, which it narrows to the count.
    est, graph = _p_search(affinity, cfg, num if nemo else max(num, cfg.max_num_speakers))
    if not nemo and cfg.merge_threshold is not None:
        free = est.num_speakers
        if free > num:
            return _result(merge_similar_clusters(_spectral_labels(graph, free, cfg), items, -np.inf, num), est.p)
        if 1 < free < num and cfg.split_threshold is not None:
            labels = _spectral_labels(graph, free, cfg)
            # The halves that reach the count come from a p-search per cluster: a fixed share of each
            # cluster (`split_p_ratio`) was worse here (held-out dev 4.17 -> 4.81 %, RESULTS.md).
            labels = split_clusters(labels, affinity, items, cfg, num, threshold=np.inf, search_p=True)[0]
            if len(np.unique(labels)) == num:
                return _result(labels, est.p)
    if num == 1:
        return ClusteringResult(np.zeros(len(affinity), dtype=np.int64), 1, est.p)
    return _result(_spectral_labels(graph, num, cfg), est.p)


def _unknown_count(
    affinity: Affinity, items: ClusterItems, cfg: ClusteringConfig, min_k: int, max_k: int
) -> ClusteringResult:
    """Between `min_k` and `max_k` speakers: the eigengap count (NeMo's enhanced count on short
    sessions), then clusters whose spectral halves are unlike are split (`split_threshold`) and
    clusters whose centroids are alike are merged (`merge_threshold`)."""
    n = len(affinity)
    est, graph = _p_search(affinity, cfg, max(max_k, cfg.max_num_speakers))
    k = int(np.clip(est.num_speakers, min_k, max_k))
    if n <= cfg.enhanced_count_threshold and min_k < max_k:
        k = enhanced_count(items.vectors[-1], cfg, min_k, max_k)
    split = cfg.split_threshold is not None
    if k == 1 and not split:
        return ClusteringResult(np.zeros(n, dtype=np.int64), 1, est.p)
    # A count of 1 also goes through the split: with more speakers than the search's max_k, each with
    # fewer items than p, the graph is one blob (the first eigengap is the largest), although its halves
    # are unlike. A single speaker's halves are alike, and it stays one cluster.
    labels = np.zeros(n, dtype=np.int64) if k == 1 else _spectral_labels(graph, k, cfg)
    left = None
    if split:
        labels, left = split_clusters(labels, affinity, items, cfg, max_k, look_past_cap=True)
        if k == 1 and labels.max() == 0:
            # The halves of a blob of many speakers each average many voices, so they can look alike
            # (60 min of 57 speakers: halves at cosine 0.453, partitions into 3-8 clusters all below
            # 0.42). A partition into clusters that are all unlike shows it is not one speaker.
            part = unlike_partition(graph, items, cfg, max_k)
            if part is not None:
                labels, left = split_clusters(part, affinity, items, cfg, max_k, look_past_cap=True)
    if cfg.merge_threshold is not None:
        labels = merge_similar_clusters(labels, items, cfg.merge_threshold, min_k)
    if left is not None and len(np.unique(labels)) >= max_k:
        warnings.warn(
            f"the speaker count stopped at its maximum ({max_k}) with a cluster whose halves still look like "
            f"two speakers (centroid cosine {left:.2f} < split_threshold {cfg.split_threshold}); the recording "
            "may have more speakers: raise max_speakers (clustering.max_num_speakers)",
            stacklevel=4,
        )
    return _result(labels, est.p)


def cluster(
    embeddings: list[np.ndarray],
    scales: list[ScaleWindows],
    cfg: ClusteringConfig,
    count: SpeakerCount = SpeakerCount(),
    model_name: str | None = None,
) -> ClusteringResult:
    """Speaker label for every base-scale window. "auto" thresholds take `model_name`'s values.

    Sessions with more base windows than `embeddings_per_chunk` are first reduced (each chunk
    over-clustered, see `reduce_long_form`), the same core clusters the groups, and each window
    takes its group's label (SpectralCluster's reduce-then-predict). With an unknown count, turns
    that resemble no cluster then become speakers of their own (`split_off_turns`).
    """
    n = len(scales[-1])
    if n == 0:
        return ClusteringResult(np.zeros(0, dtype=np.int64), 0, None)
    cfg = model_clustering(cfg, model_name)
    max_k = count_bounds(n, cfg, count)[1]  # refuses an impossible count before any work
    if cfg.embeddings_per_chunk and n > cfg.embeddings_per_chunk:
        groups = max(cfg.chunk_cluster_count, 2 * max_k + 1)
        reps, owner, items = reduce_long_form(embeddings, scales, cfg, groups)
        res = cluster_items(cosine_affinity(reps), items, cfg, count)
        res = ClusteringResult(res.labels[owner], res.num_speakers, res.p)
    else:
        res = cluster_items(fused_affinity(embeddings, scales), window_items(embeddings, scales), cfg, count)
    if count.num is not None or cfg.turn_split_threshold is None:
        return res
    base = scales[-1]
    labels = split_off_turns(
        res.labels,
        unit_rows(embeddings[-1], eps=1e-12),
        turns(res.labels, base.starts, base.ends),
        cfg.turn_split_threshold,
        max(cfg.turn_min_windows, math.ceil(cfg.turn_min_share * n)),
        cfg.merge_threshold,
        max_k,
    )
    return _result(labels, res.p)
