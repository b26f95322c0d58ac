"""Overlap-aware output: where a segmentation model says two people talk at once, add a turn
for the second most likely speaker next to the one clustering chose.

Clustering gives each base-scale window one label. Inside a detected overlap region we
keep that label and add the cluster whose centroid is closest (cosine) to the window's
embedding among the *other* speakers heard within `context_s` of the region: an overlap
is nearly always an interruption or backchannel by someone who is in the conversation
nearby, and restricting to them keeps a distant, similar-sounding cluster out.
"""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from .clustering import unit_rows
from .rttm import cut_at_midpoints, labels_to_annotation, speaker_names


def second_speakers(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    overlap: np.ndarray,
    context_s: float = 3.0,
) -> list[tuple[float, float, int]]:
    """(start, end, label) turns of the second speaker inside `overlap` regions ((K, 2) seconds)."""
    labels = np.asarray(labels)
    if len(labels) == 0 or len(overlap) == 0:
        return []
    emb = unit_rows(embeddings, eps=1e-12)
    uniq = np.unique(labels)
    centroids = unit_rows(np.stack([emb[labels == k].mean(axis=0) for k in uniq]), eps=1e-12)
    order, s, e = cut_at_midpoints(starts, ends)
    lab, emb = labels[order], emb[order]
    mids = (s + e) / 2
    out: list[tuple[float, float, int]] = []
    for os_, oe in overlap:
        near = (mids >= os_ - context_s) & (mids <= oe + context_s)
        present = set(lab[near].tolist())
        for i in np.flatnonzero((s < oe) & (e > os_)):
            candidates = [k for k in present if k != lab[i]]
            if not candidates:
                continue
            sims = [float(centroids[np.searchsorted(uniq, k)] @ emb[i]) for k in candidates]
            out.append((max(s[i], os_), min(e[i], oe), int(candidates[int(np.argmax(sims))])))
    return out


def overlap_aware_annotation(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    overlap: np.ndarray,
    uri: str,
    context_s: float = 3.0,
) -> Annotation:
    """`labels_to_annotation` of the base windows plus second-speaker turns in `overlap` regions
    (so turns of different speakers may overlap there). Speaker names match labels_to_annotation's."""
    base = labels_to_annotation(starts, ends, labels, uri=uri)
    extra = second_speakers(starts, ends, labels, embeddings, overlap, context_s)
    if not extra:
        return base
    names = speaker_names(labels, starts, ends)
    ann = base.copy()
    for a, b, k in extra:
        if b > a and k in names:
            ann[Segment(float(a), float(b)), f"ov{len(ann)}"] = names[k]
    # Merge touching turns of the same speaker.
    return ann.support()
