"""Spectral clustering's tools: NME-SC's p search and eigengap count (Park et al., 2019), the spectral
embedding, k-means, and the dense eigensolvers that run on a CUDA device for large matrices (torch,
float64, the same values to rounding).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh, eigvalsh

from .affinity import Affinity, TopPGraph, binarize, cosine_affinity, neighbour_ranks
from .config import NEMO_MAT_SIZE, NEMO_SEARCH_VOLUME, ClusteringConfig


# On a CUDA device, dense eigenproblems of at least this many rows go to the GPU (float64, cuSOLVER). On an
# H100 machine (16 cores) 30 Laplacians took 0.21 s there against 0.43 s in the host's LAPACK at 494 rows,
# 70 against 85 ms at 256; at 128-192 rows the two were level, below that the host won (RESULTS.md).
GPU_EIGEN_MIN_N = 256


GPU_EIGEN_BATCH_BYTES = 256 * 2**20  # float64 matrices sent to the GPU at a time

# BLAS threads for the host's dense eigenproblems (None: the process's setting). At the sizes the clustering
# solves (at most `nme_mat_size` rows in the p-search) a second OpenBLAS thread costs more in hand-offs than
# it computes, the more so while torch's threads still spin after the embeddings: on 2 cores it took 0.05-0.06
# s off the clustering of 2.5 to 12 minutes of audio (RESULTS.md, "Speed against senko on CPU").
EIGEN_BLAS_THREADS: int | None = 1


def on_gpu(device: str, n: int) -> bool:
    return n >= GPU_EIGEN_MIN_N and device.startswith("cuda")


@functools.cache
def _blas_pools():  # scanning the loaded libraries takes ~1 ms: once per process
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def eigen_threads() -> contextlib.AbstractContextManager:
    """BLAS limited to `EIGEN_BLAS_THREADS` for a `with` block. The eigenvalues are those of any other thread
    count to rounding (1e-13 at 393 rows), and those of the held-out benchmarks (one thread) exactly."""
    if EIGEN_BLAS_THREADS is None:
        return contextlib.nullcontext()
    return _blas_pools().limit(limits=EIGEN_BLAS_THREADS, user_api="blas")


def eigvalsh_many(matrices: Iterable[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """Ascending eigenvalues of each symmetric matrix (all n x n), taken one at a time from `matrices`,
    which it may overwrite. On a CUDA `device` (n >= GPU_EIGEN_MIN_N) they go in batches of at most
    GPU_EIGEN_BATCH_BYTES; on the host one at a time, so only one is held.
    """
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for m in matrices:
        if not on_gpu(device, len(m)):
            with eigen_threads():
                out.append(eigvalsh(m, overwrite_a=True, check_finite=False))
            continue
        batch.append(m)
        if 8 * m.size * (len(batch) + 1) > GPU_EIGEN_BATCH_BYTES:
            out += _torch_eigvalsh(batch, device)
            batch = []
    return out + _torch_eigvalsh(batch, device) if batch else out


def _torch_eigvalsh(batch: list[np.ndarray], device: str) -> list[np.ndarray]:
    import torch

    return list(torch.linalg.eigvalsh(torch.from_numpy(np.stack(batch)).to(device)).cpu().numpy())


def laplacian(affinity: np.ndarray) -> np.ndarray:
    """Unnormalised graph Laplacian D - A with the self-loops removed."""
    a = affinity.copy()
    np.fill_diagonal(a, 0.0)
    return np.diag(np.abs(a).sum(axis=1)) - a


def eigengap_count(eigvals: np.ndarray, min_k: int, max_k: int) -> tuple[int, float]:
    """Speaker count = position of the largest gap among the smallest eigenvalues, in [min_k, max_k].

    Returns the count and the gap normalised by the largest eigenvalue.
    """
    lam = np.sort(eigvals)
    gaps = np.diff(lam)
    hi = min(max_k, len(gaps))
    lo = min(max(min_k, 1), hi)
    if hi < 1:
        return 1, 0.0
    k = lo + int(np.argmax(gaps[lo - 1 : hi]))
    return k, float(gaps[k - 1] / (lam[-1] + 1e-10))


def is_connected(affinity: np.ndarray) -> bool:
    """Whether the graph with an edge wherever `affinity` > 0 (either direction) is connected: breadth-first
    from the first item, a whole frontier per step (scipy.sparse's `connected_components` would add its
    import, ~0.04 s, to every start)."""
    edges = affinity > 0
    n = len(edges)
    seen = np.zeros(n, dtype=bool)
    frontier = seen.copy()
    frontier[:1] = seen[:1] = True
    while frontier.any():
        frontier = (edges[frontier].any(axis=0) | edges[:, frontier].any(axis=1)) & ~seen
        seen |= frontier
    return n > 0 and bool(seen.all())


@dataclass
class NMEResult:
    num_speakers: int  # eigengap count at the chosen p, within the search bound (not clipped to a minimum)
    p: int  # top-p binarisation size for the full-size affinity


def nme_sc(affinity: Affinity, cfg: ClusteringConfig, max_k: int, fixed_ratio: float | None = None) -> NMEResult:
    """Normalised maximum eigengap search for the binarisation size p (Park et al., 2019).

    For each candidate p the affinity is binarised and the ratio (p/N) / g(p) is computed, where
    g(p) is the largest of the first `max_k` eigengaps normalised by the largest eigenvalue; the p
    minimising it is chosen (a small p that still gives a clear gap). With a number `cfg.nme_vote`, the
    count is the one most candidates within that factor of the best ratio give, and p the best of those.
    Large affinities are subsampled to at most `nme_mat_size` rows for the search; `sparse_search_volume` and
    `nme_mat_size` "auto" left unresolved by a direct call take NeMo's 30 candidates and 512 rows. Callers pass the
    count they search over as `max_k`: with a known count NeMo narrows it to that count.
    """
    n_full = len(affinity)
    # Every rho-th row and column, rho chosen so that at most `nme_mat_size` rows remain. (NeMo
    # floors n / nme_mat_size, which keeps up to 2 * nme_mat_size - 1 rows: 8x the eigen work at n = 1000.)
    rows = cfg.nme_mat_size if isinstance(cfg.nme_mat_size, int) else NEMO_MAT_SIZE
    rho = max(1, -(-n_full // rows))
    m = affinity.take(np.arange(0, n_full, rho)).dense()
    n = len(m)
    if fixed_ratio is not None:
        p_list = [max(int(n * fixed_ratio), 2)]
    else:
        p_max = max(int(n * cfg.max_rp_threshold), 2)
        volume = cfg.sparse_search_volume if isinstance(cfg.sparse_search_volume, int) else NEMO_SEARCH_VOLUME
        steps = min(p_max, max(volume, 2))
        p_list = sorted(set(int(v) for v in np.linspace(1, p_max, steps)))
    ranks = neighbour_ranks(m)
    spectra = eigvalsh_many((laplacian(binarize(m, p, ranks)) for p in p_list), cfg.device)
    counts, gaps = zip(*(eigengap_count(lam, 1, max_k) for lam in spectra))
    ratios = [p / n / (gap + 1e-10) for p, gap in zip(p_list, gaps)]
    best = int(np.argmin(ratios))
    # The vote; with None (or "auto" left unresolved by a direct call) the argmin stands, as in NeMo.
    if isinstance(cfg.nme_vote, (int, float)):
        bound = float(cfg.nme_vote) * ratios[best]
        say = [i for i, (gap, r) in enumerate(zip(gaps, ratios)) if gap > 0 and r <= bound] or [best]  # no gap: no say
        values, votes = np.unique([counts[i] for i in say], return_counts=True)
        best = min((i for i in say if counts[i] == values[np.argmax(votes)]), key=lambda i: ratios[i])
    p_star, lam_star = p_list[best], spectra[best]
    if not is_connected(binarize(m, p_star, ranks)):
        # A disconnected graph makes the eigengap count components, not speakers:
        # take the smallest larger p that connects the graph.
        for p, lam in zip(p_list[best + 1 :], spectra[best + 1 :]):
            if is_connected(binarize(m, p, ranks)):
                p_star, lam_star = p, lam
                break
    return NMEResult(num_speakers=eigengap_count(lam_star, 1, max_k)[0], p=max(1, int(rho * p_star)))


SPARSE_EIGEN_MIN_N = 1000  # below this a dense eigh is fast enough (and exact)


def spectral_embedding(graph: np.ndarray | TopPGraph, k: int, device: str = "cpu") -> np.ndarray:
    """Eigenvectors of the k smallest eigenvalues of the unnormalised Laplacian.

    Large top-p graphs use Lanczos (ARPACK, smallest algebraic) on the Laplacian as an operator: the
    graph keeps about p of N entries per row, and a dense eigh costs O(N^3) (7 s at N = 4,100 on one
    core vs 0.3 s). The subspace is the same, and the k-means that follows only sees distances within
    it, which any orthonormal basis preserves. A dense `graph` (a tiny session's affinity) and graphs
    below `SPARSE_EIGEN_MIN_N` take the dense solver (on a CUDA `device`, the GPU's), as do graphs where
    ARPACK does not converge.
    """
    n = len(graph)
    if isinstance(graph, TopPGraph) and n >= SPARSE_EIGEN_MIN_N and k < n // 2:
        from scipy.sparse.linalg import ArpackError, eigsh

        v0 = np.random.default_rng(0).standard_normal(n)  # fixed start vector: deterministic
        try:
            vals, vecs = eigsh(graph.laplacian_operator(), k=k, which="SA", v0=v0, maxiter=20 * n)
            return vecs[:, np.argsort(vals, kind="stable")]
        except ArpackError:
            pass
    lap = laplacian(graph.dense() if isinstance(graph, TopPGraph) else graph)
    if on_gpu(device, n):
        import torch

        return torch.linalg.eigh(torch.from_numpy(lap).to(device))[1][:, :k].cpu().numpy()
    with eigen_threads():
        _, vecs = eigh(lap, subset_by_index=[0, k - 1])
    return vecs


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 100) -> np.ndarray:
    """k-means++ initialised Lloyd iterations; the best of `n_init` runs by inertia. Deterministic."""
    n = len(x)
    if k <= 1 or n <= 1:
        return np.zeros(n, dtype=np.int64)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = None, np.inf
    for _ in range(max(1, n_init)):
        centers = _kmeans_pp(x, k, rng)
        labels = np.zeros(n, dtype=np.int64)
        for it in range(max_iter):
            d = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
            new = d.argmin(1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = x[labels == c]
                # An empty cluster takes the point farthest from its centre.
                centers[c] = members.mean(0) if len(members) else x[d.min(1).argmax()]
        inertia = ((x - centers[labels]) ** 2).sum()
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels.copy(), inertia
    return best_labels


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centers.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return np.array(centers, dtype=np.float64)


def enhanced_count(base_emb: np.ndarray, cfg: ClusteringConfig, min_k: int, max_k: int) -> int:
    """NeMo's count for short sessions: add 3 well-separated synthetic speakers, count, subtract 3.

    With few windows the eigengap is unreliable; random anchor speakers with a spread
    matched to the data give the spectrum a clear structure to measure against.
    """
    n_anchor, per_anchor = 3, 10
    std = base_emb.std(axis=0)
    sub = dataclasses.replace(cfg, max_rp_threshold=0.15, sparse_search_volume=10, nme_mat_size=300)
    counts = []
    for seed in range(cfg.enhanced_count_seeds):
        rng = np.random.default_rng(seed)
        anchors = []
        for _ in range(n_anchor):
            center = rng.standard_normal(base_emb.shape[1])
            z = rng.standard_normal((per_anchor, base_emb.shape[1]))
            anchors.append(center + 50 * std * (z / np.abs(z).max()))
        emb = np.concatenate([np.concatenate(anchors), base_emb])
        est = nme_sc(cosine_affinity(emb), sub, max(max_k + n_anchor, sub.max_num_speakers))
        counts.append(
            int(np.clip(est.num_speakers, min(min_k + n_anchor, len(emb) - 1), min(max_k + n_anchor, len(emb) - 1)))
        )
    values, freq = np.unique(counts, return_counts=True)
    mode = int(values[np.argmax(freq)])  # smallest value among ties, like torch.mode
    return int(np.clip(mode - n_anchor, min_k, max_k))
