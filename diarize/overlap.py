"""Overlap-aware output: where a segmentation model says two people talk at once, add a turn
for a second speaker next to the one clustering chose.

Clustering gives each base-scale window one label. Inside a detected overlap region we keep
that label and add at most one other speaker per window piece:

* With the segmentation model's own windows (`LocalSpeakers`, pyannote-seg): each 10 s window
  names up to three local speakers per frame. A local speaker is matched to a global cluster by
  embedding: the mean cosine, over the frames where it talks alone, between the base window
  heard there and each cluster centroid; a window's local speakers get distinct clusters (the
  assignment maximising the summed cosine). A match needs `min_solo_s` of solo speech in the
  window and a mean cosine of at least `min_similarity`: background talkers (babble) are also
  "second speakers" to the model, but they are not one of the clustered voices. Where a window
  says two local speakers talk, both matched clusters get a vote, weighted by a Hamming taper
  (window edges see less context); the second speaker is the cluster other than the base label
  with the most votes over the piece, and a piece without votes gets the rule below. This is how
  pyannote's pipeline reconstructs overlap, with our clustering in place of its own.
* Without local speakers (overlap regions from elsewhere): the cluster whose centroid is
  closest to the window's embedding among the *other* speakers heard within `context_s` of the
  region: an overlap is nearly always an interruption or backchannel by someone in the
  conversation nearby, and restricting to them keeps a distant, similar-sounding cluster out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pyannote.core import Annotation, Segment

from .affinity import unit_rows
from .rttm import cut_at_midpoints, speaker_names

if TYPE_CHECKING:  # importing the model module loads torch; keep it out of a cold start
    from .models.pyannet import LocalSpeakers


def _centroids(labels: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique labels (K,), unit centroids (K, D)) of unit embeddings `emb` (N, D)."""
    uniq = np.unique(labels)
    return uniq, unit_rows(np.stack([emb[labels == k].mean(axis=0) for k in uniq]), eps=1e-12)


def local_speaker_votes(
    local: LocalSpeakers,
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    min_solo_s: float = 2.0,
    min_similarity: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Votes for each cluster being one of two overlapping speakers, on the frame grid of `local`.

    starts, ends: (N,) base windows; labels: (N,) their clusters; embeddings: (N, D).
    Returns (votes (T, K), uniq (K,) the cluster label of each column); frame t is centred at
    `local.offset + t * local.step` seconds.
    """
    from scipy.optimize import linear_sum_assignment  # here, not at the top: ~0.1 s of every start otherwise

    from .models.pyannet import powerset_matrix

    labels = np.asarray(labels)
    emb = unit_rows(np.asarray(embeddings, dtype=np.float32), eps=1e-12)
    uniq, cents = _centroids(labels, emb)
    order, s, e = cut_at_midpoints(starts, ends)
    sims = emb[order] @ cents.T  # (N, K) cosine of every window to every centroid
    num_w, num_f = local.classes.shape
    first = np.round(local.starts / local.step).astype(np.int64)
    total = int(first.max()) + num_f if num_w else 0
    # The (cut) base window heard at each grid frame, -1 where none is.
    times = local.offset + local.step * np.arange(total)
    at = np.searchsorted(s, times, side="right") - 1
    at = np.where((at >= 0) & (times < e[np.clip(at, 0, None)]), at, -1)
    # (T, K) float32: a 10 h file has ~2.1M frames.
    frame_sims = np.where((at >= 0)[:, None], sims[np.clip(at, 0, None)], 0.0).astype(np.float32)
    members = powerset_matrix()  # (classes, 3): who each powerset class activates
    solo = (members.sum(axis=1) == 1)[:, None] * members  # (classes, 3): speaker j talks alone
    pair = members.sum(axis=1) == 2
    taper = np.hamming(num_f)
    min_frames = max(1, int(round(min_solo_s / local.step)))
    votes = np.zeros((total, len(uniq)), dtype=np.float32)
    for c in range(num_w):
        cls = local.classes[c]
        span = slice(first[c], first[c] + num_f)
        alone = solo[cls] * (at[span] >= 0)[:, None]  # (F, 3)
        counts = alone.sum(axis=0)
        rows = np.flatnonzero(counts >= min_frames)
        both = np.flatnonzero(pair[cls])
        if len(rows) < 2 or len(both) == 0:
            continue  # a vote needs two matched local speakers talking together
        mean_sim = (alone.T @ frame_sims[span])[rows] / counts[rows, None]  # (R, K)
        r, k = linear_sum_assignment(-mean_sim)
        for j, kk in zip(rows[r], k):
            if mean_sim[np.flatnonzero(rows == j)[0], kk] < min_similarity:
                continue
            on = both[members[cls[both], j] > 0]
            votes[first[c] + on, kk] += taper[on]
    return votes, uniq


def second_speakers(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    overlap: np.ndarray,
    context_s: float = 3.0,
    local: LocalSpeakers | None = None,
    min_solo_s: float = 2.0,
    min_similarity: float = 0.5,
    fallback: bool = False,
) -> list[tuple[float, float, int]]:
    """(start, end, label) turns of the second speaker inside `overlap` regions ((K, 2) seconds), one
    per base window piece. With `local`, a piece no matched local speaker votes for gets the
    nearby-speaker rule when `fallback` is set (the overlap detector already said two people talk
    there), else no second speaker."""
    labels = np.asarray(labels)
    if len(labels) == 0 or len(overlap) == 0:
        return []
    emb = unit_rows(embeddings, eps=1e-12)
    uniq, centroids = _centroids(labels, emb)
    if local is not None and len(uniq) < 2:
        return []
    if local is not None:
        votes, _ = local_speaker_votes(local, starts, ends, labels, embeddings, min_solo_s, min_similarity)
    order, s, e = cut_at_midpoints(starts, ends)
    lab, emb = labels[order], emb[order]
    mids = (s + e) / 2
    out: list[tuple[float, float, int]] = []
    for os_, oe in overlap:
        near = (mids >= os_ - context_s) & (mids <= oe + context_s)
        present = set(lab[near].tolist())
        for i in np.flatnonzero((s < oe) & (e > os_)):
            a, b = max(s[i], os_), min(e[i], oe)
            if local is not None:
                lo = max(0, int(np.ceil((a - local.offset) / local.step)))
                hi = min(len(votes), int(np.floor((b - local.offset) / local.step)) + 1)
                v = votes[lo:hi].sum(axis=0) if hi > lo else np.zeros(len(uniq))
                v[np.searchsorted(uniq, lab[i])] = 0.0
                if v.max() > 0:
                    out.append((a, b, int(uniq[int(np.argmax(v))])))
                    continue
                if not fallback:
                    continue
            candidates = [k for k in present if k != lab[i]]
            if not candidates:
                continue
            sims = [float(centroids[np.searchsorted(uniq, k)] @ emb[i]) for k in candidates]
            out.append((a, b, int(candidates[int(np.argmax(sims))])))
    return out


def second_speaker_annotation(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    overlap: np.ndarray,
    uri: str,
    context_s: float = 3.0,
    local: LocalSpeakers | None = None,
    min_solo_s: float = 2.0,
    min_similarity: float = 0.5,
    fallback: bool = False,
) -> Annotation:
    """The `second_speakers` turns as an annotation, speakers named as `labels_to_annotation` names
    them. Each turn lies inside `overlap` and adds a speaker to the base window's own: the base
    annotation is the one-speaker-per-frame view, this one says who else talks there."""
    names = speaker_names(labels, starts, ends)
    ann = Annotation(uri=uri)
    extra = second_speakers(
        starts, ends, labels, embeddings, overlap, context_s, local, min_solo_s, min_similarity, fallback
    )
    for a, b, k in extra:
        if b > a and k in names:
            ann[Segment(float(a), float(b)), len(ann)] = names[k]
    return ann.support()


def with_second_speakers(base: Annotation, second: Annotation) -> Annotation:
    """`base` plus the turns of `second` (so turns of different speakers may overlap), touching turns
    of one speaker merged."""
    if not second:
        return base
    ann = base.copy()
    for seg, _, label in second.itertracks(yield_label=True):
        ann[seg, f"ov{len(ann)}"] = label
    return ann.support()
