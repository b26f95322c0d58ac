"""What the clustering core measures: multi-scale affinities between the items it clusters.

NeMo's multi-scale fusion (per-scale cosine, min-max scaled, weighted, mapped onto the base windows) held as
vectors (`Affinity`), its top-p binarisation (`binarize`, `TopPGraph`) and the items themselves
(`ClusterItems`: base windows, or groups of them). NumPy (SciPy for the largest graphs), deterministic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .windows import ScaleWindows

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator


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

    cols: np.ndarray  # (N, p): the columns of M's ones in each row

    def __len__(self) -> int:
        return len(self.cols)

    def dense(self) -> np.ndarray:
        top = np.zeros((len(self), len(self)))
        np.put_along_axis(top, self.cols, 1.0, axis=1)
        return 0.5 * (top + top.T)

    def laplacian_operator(self) -> LinearOperator:
        """x -> (D - A) x for A = (M + M^T) / 2 with the self-loops removed, as in `laplacian`.

        A self-loop adds as much to an item's degree as to A's diagonal, so it cancels: the diagonal of
        D - A plus the self-loop is A's whole row sum, (row count + column count of M) / 2 (halves: exact)."""
        # Imported here: only graphs too large for a dense solver need scipy.sparse (~0.04 s of start-up).
        from scipy.sparse import csr_matrix
        from scipy.sparse.linalg import LinearOperator

        n, p = self.cols.shape
        top = csr_matrix((np.ones(n * p), self.cols.ravel(), np.arange(n + 1) * p), shape=(n, n))
        row_sum = 0.5 * (p + np.bincount(self.cols.ravel(), minlength=n))
        top_t = top.T  # CSC view, no copy

        def matvec(x: np.ndarray) -> np.ndarray:
            x = x.ravel()
            return row_sum * x - 0.5 * (top @ x + top_t @ x)

        return LinearOperator((n, n), matvec=matvec, dtype=np.float64)


def binarized_graph(affinity: Affinity, p: int) -> TopPGraph:
    """Each row's top p entries (self included, ties to the lower index), a block of rows at a time."""
    n = len(affinity)
    p = max(1, min(p, n))
    cols = np.empty((n, p), dtype=np.int32)
    for a, b in row_blocks(n):
        cols[a:b] = np.nonzero(top_p_mask(affinity.rows(a, b), p))[1].reshape(b - a, p)
    return TopPGraph(cols)


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
