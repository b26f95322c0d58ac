"""Multi-scale affinity fusion and NME-SC spectral clustering (Park et al., 2019), as in NeMo.

All functions are NumPy/SciPy and deterministic for a given seed. With a CUDA `ClusteringConfig.device`,
the large dense eigendecompositions run on the GPU through torch (float64, the same values to rounding).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh, eigvalsh
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import LinearOperator
from scipy.sparse.csgraph import connected_components

from .config import ClusteringConfig, SpeakerCount, model_clustering
from .errors import SpeakerCountError
from .windows import ScaleWindows


# --------------------------------------------------------------------------- affinities
ROW_BLOCK = 512  # affinity rows computed at a time: 38 MB of float64 at 9,000 windows
# An affinity of at most this many items computes its whole matrix once (a symmetric product, half the work of
# its row blocks) and keeps it (128 MB at most), so that the split step's clusters are slices of it, not new
# products (9-min session, 1,816 windows: 1.4 -> 1.1 s).
KEEP_MATRIX_MAX = 4096


def row_blocks(n: int) -> list[tuple[int, int]]:
    return [(a, min(a + ROW_BLOCK, n)) for a in range(0, n, ROW_BLOCK)]


@dataclass
class Affinity:
    """An N x N affinity held as vectors: blocks of rows are computed when asked for (`dense()` for small ones).

    Entry (i, j) is NeMo's multi-scale fusion: the sum over scales of w_s times the min-max scaled
    cosine similarity of the windows that items i and j map to at scale s. With a_s = w_s / (hi_s - lo_s)
    and unit embeddings u_s, that is sum_s a_s * (u_s[m_s(i)] . u_s[m_s(j)] - lo_s): one dot product of
    the concatenated vectors sqrt(a_s) * u_s[m_s(i)], minus a constant. Where i and j map to the same
    window the scale's cosine is 1 (its diagonal), while |u|^2 is a little below 1 (NeMo's guard against
    zero vectors), so that pair gains a_s * (1 - |u|^2). At 9,000 base windows the matrix would take
    650 MB per copy; the vectors take 70 MB and a block of rows 38 MB. Up to `KEEP_MATRIX_MAX` items the
    matrix is computed once and kept, and subsets of it (the split step's clusters) are slices.
    """

    vectors: np.ndarray  # (N, D) float64
    windows: np.ndarray  # (S, N) each item's window at each scale
    deficits: np.ndarray  # (S, N) a_s * (1 - |u_s|^2) of that window
    offset: float  # sum_s a_s * lo_s
    matrix: np.ndarray | None = dataclasses.field(default=None, repr=False)  # read-only, kept when small

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, idx: np.ndarray) -> Affinity:
        """The affinity among the items `idx` (in that order)."""
        if len(idx) == len(self) and np.array_equal(idx, np.arange(len(self))):
            return self  # a cluster of every item: no 70 MB copy at 9,000 windows
        sub = Affinity(self.vectors[idx], self.windows[:, idx], self.deficits[:, idx], self.offset)
        if self.matrix is not None:
            sub.matrix = self.matrix[np.ix_(idx, idx)]
            sub.matrix.flags.writeable = False
        return sub

    def rows(self, a: int, b: int) -> np.ndarray:
        """Rows a..b-1 of the matrix (read-only if kept)."""
        if self.matrix is not None:
            return self.matrix[a:b]
        keep = len(self) <= KEEP_MATRIX_MAX
        lo, hi = (0, len(self)) if keep else (a, b)
        out = self.vectors[lo:hi] @ self.vectors.T
        out -= self.offset
        for win, deficit in zip(self.windows, self.deficits):
            r, c = equal_pairs(win[lo:hi], win)
            out[r, c] += deficit[lo + r]
        if not keep:
            return out
        out.flags.writeable = False
        self.matrix = out
        return out[a:b]

    def dense(self) -> np.ndarray:
        return self.rows(0, len(self))


def equal_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with x[i] == y[j], by a sorted search (windows share a scale window with a few neighbours)."""
    order = np.argsort(y, kind="stable")
    ys = y[order]
    lo, hi = np.searchsorted(ys, x, "left"), np.searchsorted(ys, x, "right")
    count = hi - lo
    i = np.repeat(np.arange(len(x)), count)
    j = order[np.arange(count.sum()) + np.repeat(lo - (np.cumsum(count) - count), count)]
    return i, j


def unit_rows(x: np.ndarray, eps: float = 3.5e-4) -> np.ndarray:
    """Rows scaled to unit length, float64. The default eps is NeMo's guard against zero vectors."""
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)


def cosine_range(u: np.ndarray) -> tuple[float, float]:
    """Smallest and largest cosine similarity among the rows of `u` (unit rows), the diagonal counted as 1."""
    lo, hi = 1.0, 1.0
    for a, b in row_blocks(len(u)):
        cos = u[a:b] @ u[a:].T  # from the diagonal on: the matrix is symmetric, half the work
        cos[np.arange(b - a), np.arange(b - a)] = 1.0
        lo, hi = min(lo, float(cos.min())), max(hi, float(cos.max()))
    return lo, hi


def scaled_affinity(embeddings: list[np.ndarray], maps: list[np.ndarray], weights: list[float]) -> Affinity:
    """Weighted sum over scales of each scale's cosine affinity, min-max scaled to [0, 1] over the scale's
    windows, on the items that `maps` take to those windows."""
    n = len(maps[0]) if maps else 0
    vectors, windows, deficits, offset = [], [], [], 0.0
    for emb, m, w in zip(embeddings, maps, weights):
        if w == 0 or len(emb) == 0:
            continue
        u = unit_rows(emb)
        lo, hi = cosine_range(u)
        if hi <= lo:  # every window alike: NeMo's scaled affinity is all ones, a constant w
            offset -= w
            continue
        a = w / (hi - lo)
        vectors.append(np.sqrt(a) * u[m])
        windows.append(m)
        deficits.append((a * (1.0 - (u * u).sum(axis=1)))[m])
        offset += a * lo
    return Affinity(
        np.concatenate(vectors, axis=1) if vectors else np.zeros((n, 0)),
        np.array(windows, dtype=np.int64).reshape(len(windows), n),
        np.array(deficits, dtype=np.float64).reshape(len(deficits), n),
        offset,
    )


def cosine_affinity(emb: np.ndarray) -> Affinity:
    """Cosine similarity with unit diagonal, min-max scaled to [0, 1] over the whole matrix."""
    return scaled_affinity([emb], [np.arange(len(emb))], [1.0])


def nearest_window(base_mid: np.ndarray, scale_mid: np.ndarray) -> np.ndarray:
    """For each base-scale midpoint, the index of the scale window with the closest midpoint.

    Uses a sorted search instead of NeMo's N_base x N_scale distance matrix (which
    exhausts memory on long recordings); ties go to the earlier window, as in NeMo.
    """
    order = np.argsort(scale_mid, kind="stable")
    sm = scale_mid[order]
    pos = np.clip(np.searchsorted(sm, base_mid), 1, len(sm) - 1) if len(sm) > 1 else np.zeros(len(base_mid), int)
    if len(sm) == 1:
        return np.zeros(len(base_mid), dtype=np.int64)
    left, right = pos - 1, pos
    pick = np.where(np.abs(base_mid - sm[right]) < np.abs(base_mid - sm[left]), right, left)
    return order[pick]


def scale_maps(scales: list[ScaleWindows]) -> list[np.ndarray]:
    base = scales[-1].midpoints
    return [nearest_window(base, s.midpoints) for s in scales]


def fused_affinity(embeddings: list[np.ndarray], scales: list[ScaleWindows]) -> Affinity:
    """Weighted sum over scales of each scale's affinity, on the base-scale windows."""
    return scaled_affinity(embeddings, scale_maps(scales), [float(s.weight) for s in scales])


# --------------------------------------------------------------------------- spectral tools
def neighbour_ranks(affinity: np.ndarray) -> np.ndarray:
    """rank[i, j] = position of j among row i's affinities, largest first (ties: lower index first).

    Sorting once lets the p-search binarise for every candidate p by a comparison."""
    n = len(affinity)
    order = np.argsort(-affinity, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(n), (n, n)), axis=1)
    return ranks


def top_p_mask(rows: np.ndarray, p: int) -> np.ndarray:
    """True at each row's p largest entries (ties: lower index first): `neighbour_ranks(affinity) < p`
    by a partial sort, for rows of a matrix binarised once."""
    n = rows.shape[1]
    p = max(1, min(p, n))
    kth = np.partition(rows, n - p, axis=1)[:, n - p : n - p + 1]  # each row's p-th largest value
    above, tie = rows > kth, rows == kth
    mask = above | tie
    # Rows with more than p entries tied at the p-th value keep the first ties only (rare with float values).
    over = np.flatnonzero(mask.sum(axis=1) > p)
    if len(over):
        need = p - above[over].sum(axis=1, keepdims=True)
        mask[over] = above[over] | (tie[over] & (np.cumsum(tie[over], axis=1) <= need))
    return mask


def binarize(affinity: np.ndarray, p: int, ranks: np.ndarray | None = None) -> np.ndarray:
    """Keep the top-p entries of each row (self included), then symmetrise: values in {0, .5, 1}.

    `ranks` (from `neighbour_ranks(affinity)`) saves the sort when binarising one matrix many times."""
    mask = top_p_mask(affinity, p) if ranks is None else ranks < max(1, min(p, len(ranks)))
    b = mask.astype(np.float64)
    np.add(b, mask.T, out=b)  # from the boolean transpose: no float copy of b.T
    b *= 0.5
    return b


@dataclass
class TopPGraph:
    """The binarised affinity (M + M^T) / 2 held as M, which keeps each row's p largest entries: `binarize`
    without the N x N matrix. M is p entries per row, about half of the symmetric graph's, and needs no
    copy to act as M^T, which is all a Lanczos solver asks of the Laplacian."""

    top: csr_matrix  # M: exactly p ones per row

    def __len__(self) -> int:
        return self.top.shape[0]

    def dense(self) -> np.ndarray:
        top = self.top.toarray()
        return 0.5 * (top + top.T)

    def laplacian_operator(self) -> LinearOperator:
        """x -> (D - A) x for A = (M + M^T) / 2 with the self-loops removed, as in `laplacian`.

        A self-loop adds as much to an item's degree as to A's diagonal, so it cancels: the diagonal of
        D - A plus the self-loop is A's whole row sum, (row count + column count of M) / 2 (halves: exact)."""
        top = self.top
        row_sum = 0.5 * (np.diff(top.indptr) + np.asarray(top.sum(axis=0)).ravel())
        top_t = top.T  # CSC view, no copy

        def matvec(x: np.ndarray) -> np.ndarray:
            x = x.ravel()
            return row_sum * x - 0.5 * (top @ x + top_t @ x)

        n = len(self)
        return LinearOperator((n, n), matvec=matvec, dtype=np.float64)


def binarized_graph(affinity: Affinity, p: int) -> TopPGraph:
    """Each row's top p entries (self included, ties to the lower index), a block of rows at a time."""
    n = len(affinity)
    p = max(1, min(p, n))
    cols = np.empty((n, p), dtype=np.int32)
    for a, b in row_blocks(n):
        cols[a:b] = np.nonzero(top_p_mask(affinity.rows(a, b), p))[1].reshape(b - a, p)
    top = csr_matrix((np.ones(n * p), cols.ravel(), np.arange(n + 1) * p), shape=(n, n))
    return TopPGraph(top)


# On a CUDA device, dense eigenproblems of at least this many rows go to the GPU (float64, cuSOLVER). On an
# H100 machine (16 cores) 30 Laplacians took 0.21 s there against 0.43 s in the host's LAPACK at 494 rows,
# 70 against 85 ms at 256; at 128-192 rows the two were level, below that the host won (RESULTS.md).
GPU_EIGEN_MIN_N = 256
GPU_EIGEN_BATCH_BYTES = 256 * 2**20  # float64 matrices sent to the GPU at a time


def on_gpu(device: str, n: int) -> bool:
    return n >= GPU_EIGEN_MIN_N and device.startswith("cuda")


def eigvalsh_many(matrices: Iterable[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """Ascending eigenvalues of each symmetric matrix (all n x n), taken one at a time from `matrices`,
    which it may overwrite. On a CUDA `device` (n >= GPU_EIGEN_MIN_N) they go in batches of at most
    GPU_EIGEN_BATCH_BYTES; on the host one at a time, so only one is held.
    """
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for m in matrices:
        if not on_gpu(device, len(m)):
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
    return connected_components(affinity > 0, directed=False)[0] == 1


@dataclass
class NMEResult:
    num_speakers: int  # eigengap count at the chosen p, within the search bound (not clipped to a minimum)
    p: int  # top-p binarisation size for the full-size affinity


def nme_sc(affinity: Affinity, cfg: ClusteringConfig, max_k: int, fixed_ratio: float | None = None) -> NMEResult:
    """Normalised maximum eigengap search for the binarisation size p (Park et al., 2019).

    For each candidate p the affinity is binarised and the ratio (p/N) / g(p) is computed, where
    g(p) is the largest of the first `max_k` eigengaps normalised by the largest eigenvalue; the p
    minimising it is chosen (a small p that still gives a clear gap). Large affinities are
    subsampled to at most `nme_mat_size` rows for the search. Callers pass the count they search
    over as `max_k`: with a known count NeMo narrows it to that count.
    """
    n_full = len(affinity)
    # Every rho-th row and column, rho chosen so that at most `nme_mat_size` rows remain. (NeMo
    # floors n / nme_mat_size, which keeps up to 2 * nme_mat_size - 1 rows: 8x the eigen work at n = 1000.)
    rho = max(1, -(-n_full // cfg.nme_mat_size))
    m = affinity.take(np.arange(0, n_full, rho)).dense()
    n = len(m)
    if fixed_ratio is not None:
        p_list = [max(int(n * fixed_ratio), 2)]
    else:
        p_max = max(int(n * cfg.max_rp_threshold), 2)
        steps = min(p_max, max(min(p_max, cfg.sparse_search_volume), 2))
        p_list = sorted(set(int(v) for v in np.linspace(1, p_max, steps)))
    ranks = neighbour_ranks(m)
    spectra = eigvalsh_many((laplacian(binarize(m, p, ranks)) for p in p_list), cfg.device)
    results = []
    for p, lam in zip(p_list, spectra):
        _, gap = eigengap_count(lam, 1, max_k)
        results.append((p / n / (gap + 1e-10), p, lam))
    best = min(range(len(results)), key=lambda i: results[i][0])
    _, p_star, lam_star = results[best]
    if not is_connected(binarize(m, p_star, ranks)):
        # A disconnected graph makes the eigengap count components, not speakers:
        # take the smallest larger p that connects the graph.
        for _, p, lam in results[best + 1 :]:
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


# --------------------------------------------------------------------------- speaker counting
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


# --------------------------------------------------------------------------- what the core clusters
@dataclass
class ClusterItems:
    """The N things the clustering core assigns speakers to: base windows, or groups of them.

    `vectors[s]` holds each item's direction at scale s (for a window: its unit embedding at its
    nearest window of that scale; for a group: the sum of its members' unit embeddings), and
    `sizes` how many base windows each item stands for. Cluster centroids are size-weighted sums,
    so a group of windows weighs what its windows would.
    """

    vectors: list[np.ndarray]  # per scale, (N, D)
    sizes: np.ndarray  # (N,) base windows per item

    def __len__(self) -> int:
        return len(self.sizes)


def window_items(embeddings: list[np.ndarray], scales: list[ScaleWindows]) -> ClusterItems:
    """Every base window as an item."""
    vectors = [unit_rows(e, eps=1e-12)[m] for e, m in zip(embeddings, scale_maps(scales))]
    return ClusterItems(vectors, np.ones(len(scales[-1])))


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


# --------------------------------------------------------------------------- the core
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

    Refinements: with an unknown count, clusters whose spectral halves are unlike are split
    (`split_threshold`) and clusters whose centroids are alike are merged (`merge_threshold`);
    with a known count, `known_count` picks NeMo's way (eigengap search narrowed to the count,
    k-means to it) or the graph's own groups merged or split to the count.
    """
    n = len(affinity)
    cfg = model_clustering(cfg, None)  # no-op unless called directly with "auto" fields
    min_k, max_k = count_bounds(n, cfg, count)
    if n <= 1:
        return ClusteringResult(np.zeros(n, dtype=np.int64), n, None)
    if count.num == n:
        return ClusteringResult(np.arange(n, dtype=np.int64), n, None)
    max_k = max(min(max_k, n - 1), 1)
    min_k = min(min_k, max_k)
    known = count.num is not None
    nemo_known = known and cfg.known_count == "nemo"
    # p is chosen on the unconstrained spectrum (a user's bound must not hide the structure the
    # search measures), except for NeMo's known-count search, which it narrows to the count.
    search_k = count.num if nemo_known else max(max_k, cfg.max_num_speakers)
    tiny = n <= cfg.min_samples_for_nmesc
    est = nme_sc(affinity, cfg, search_k, fixed_ratio=cfg.max_rp_threshold if tiny else None)
    graph = affinity.dense() if tiny else binarized_graph(affinity, est.p)
    if known and not nemo_known and cfg.merge_threshold is not None:
        # Known count: cluster into the groups the graph shows, then merge the most alike down to the
        # count, or split off the most distinct halves up to it (small speakers absorbed by others).
        free = est.num_speakers
        if free > count.num:
            labels = kmeans(spectral_embedding(graph, free, cfg.device), free, seed=cfg.seed, n_init=cfg.kmeans_inits)
            return _result(merge_similar_clusters(labels, items, -np.inf, count.num), est.p)
        if 1 < free < count.num and cfg.split_threshold is not None:
            labels = kmeans(spectral_embedding(graph, free, cfg.device), free, seed=cfg.seed, n_init=cfg.kmeans_inits)
            # The halves that reach the count come from a p-search per cluster: a fixed share of each
            # cluster (`split_p_ratio`) was worse here (held-out dev 4.17 -> 4.81 %, RESULTS.md).
            labels = split_mixed_clusters(labels, affinity, items, cfg, count.num, threshold=np.inf, search_p=True)
            if len(np.unique(labels)) == count.num:
                return _result(labels, est.p)
    k = int(np.clip(est.num_speakers, min_k, max_k))
    if not known and n <= cfg.enhanced_count_threshold and min_k < max_k:
        k = enhanced_count(items.vectors[-1], cfg, min_k, max_k)
    split = not known and cfg.split_threshold is not None
    if k == 1 and not split:
        return ClusteringResult(np.zeros(n, dtype=np.int64), 1, est.p)
    # A count of 1 also goes through the split: with more speakers than the search's max_k, each with
    # fewer items than p, the graph is one blob (the first eigengap is the largest), although its halves
    # are unlike. A single speaker's halves are alike, and it stays one cluster.
    labels = (
        np.zeros(n, dtype=np.int64)
        if k == 1
        else kmeans(spectral_embedding(graph, k, cfg.device), k, seed=cfg.seed, n_init=cfg.kmeans_inits)
    )
    left = None
    if split:
        labels, left = _split_clusters(labels, affinity, items, cfg, max_k, look_past_cap=True)
        if k == 1 and labels.max() == 0:
            # The halves of a blob of many speakers each average many voices, so they can look alike
            # (60 min of 57 speakers: halves at cosine 0.453, partitions into 3-8 clusters all below
            # 0.42). A partition into clusters that are all unlike shows it is not one speaker.
            part = unlike_partition(graph, items, cfg, max_k)
            if part is not None:
                labels, left = _split_clusters(part, affinity, items, cfg, max_k, look_past_cap=True)
    if not known and cfg.merge_threshold is not None:
        labels = merge_similar_clusters(labels, items, cfg.merge_threshold, min_k)
    if left is not None and len(np.unique(labels)) >= max_k:
        warnings.warn(
            f"the speaker count stopped at its maximum ({max_k}) with a cluster whose halves still look like "
            f"two speakers (centroid cosine {left:.2f} < split_threshold {cfg.split_threshold}); the recording "
            "may have more speakers: raise max_speakers (clustering.max_num_speakers)",
            stacklevel=3,
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
    takes its group's label (SpectralCluster's reduce-then-predict).
    """
    n = len(scales[-1])
    if n == 0:
        return ClusteringResult(np.zeros(0, dtype=np.int64), 0, None)
    cfg = model_clustering(cfg, model_name)
    count_bounds(n, cfg, count)  # refuse an impossible count before any work
    if cfg.embeddings_per_chunk and n > cfg.embeddings_per_chunk:
        groups = max(cfg.chunk_cluster_count, 2 * count_bounds(n, cfg, count)[1] + 1)
        reps, owner, items = reduce_long_form(embeddings, scales, cfg, groups)
        res = cluster_items(cosine_affinity(reps), items, cfg, count)
        return ClusteringResult(res.labels[owner], res.num_speakers, res.p)
    return cluster_items(fused_affinity(embeddings, scales), window_items(embeddings, scales), cfg, count)


# --------------------------------------------------------------------------- refinements
def split_mixed_clusters(
    labels: np.ndarray,
    affinity: Affinity,
    items: ClusterItems,
    cfg: ClusteringConfig,
    max_k: int,
    threshold: float | None = None,
    search_p: bool = False,
) -> np.ndarray:
    """Split off a group of items that a cluster absorbed although it is another speaker.

    NME-SC's p (the neighbours kept per row) is chosen for the whole session; a speaker with fewer
    windows than p links mostly to other speakers and disappears into their cluster. Each cluster is
    bisected spectrally on its own affinity, binarised with p = `split_p_ratio` of its items (with
    `search_p`: NME-SC's p-search on the cluster's affinity). The split is kept when the two halves'
    centroids have cosine below `split_threshold` and the smaller half stands for at least
    `split_min_windows` base windows. Repeated until nothing splits or `max_k` clusters exist.
    `threshold` overrides `cfg.split_threshold` (np.inf: always split the most distinct halves, used to
    reach a known speaker count).
    """
    return _split_clusters(labels, affinity, items, cfg, max_k, threshold, search_p=search_p)[0]


def _split_clusters(
    labels: np.ndarray,
    affinity: Affinity,
    items: ClusterItems,
    cfg: ClusteringConfig,
    max_k: int,
    threshold: float | None = None,
    look_past_cap: bool = False,
    search_p: bool = False,
) -> tuple[np.ndarray, float | None]:
    """`split_mixed_clusters`, plus the cosine of the most distinct halves left unsplit because `max_k`
    clusters exist (None: nothing left to split). That costs bisecting the clusters at the cap, so only
    with `look_past_cap`."""
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


# --------------------------------------------------------------------------- reduction for long sessions
# Long recordings (more base windows than `embeddings_per_chunk`) are reduced before the core: its blocks of
# affinity rows cost O(N^2) time (9,300 windows: ~4 s per pass over all rows), while this is O(N):
# 1. each base window gets one fused vector: the concatenation over scales of sqrt(w_s) * unit(e_s[m_s(i)]),
#    so a dot product of two fused vectors is exactly the weighted sum of per-scale cosines that
#    `fused_affinity` adds up (minus its per-scale min-max scaling);
# 2. the windows are cut into contiguous chunks of near-equal size (at most `embeddings_per_chunk`);
# 3. each chunk is over-clustered by spherical k-means into `chunk_cluster_count` groups. k-means puts
#    more centroids where there is more data, so a speaker's share of centroids follows their share of
#    speech, which keeps the spectral step on the reduced set balanced like the full one would be.
#    The k-means is fitted on every other window and then every window joins its nearest centroid
#    (`over_cluster`);
# 4. the groups of all chunks go through the same core as a short session (`cluster_items`);
# 5. every window takes the speaker label of its group.
# Memory is O(N * D) for the fused vectors of one chunk plus O(M^2) for M = chunks * chunk_cluster_count.


def fused_vectors(
    embeddings: list[np.ndarray], maps: list[np.ndarray], weights: list[float], rows: slice
) -> np.ndarray:
    """Fused vectors of base windows `rows`: concatenation of sqrt(w_s) * unit embedding of the mapped window.

    Rows are normalised after gathering, so no full-size normalised copy of the embeddings exists.
    """
    return np.concatenate([np.sqrt(w) * unit_rows(e[m[rows]]) for e, m, w in zip(embeddings, maps, weights)], axis=1)


def _group_sums(labels: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Per-label row sums as one sparse one-hot product (np.add.at is ~50x slower)."""
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
