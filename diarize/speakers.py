"""Known speakers: enrol people once (a centroid embedding each), then name the clusters of any
recording that match them.

The database is an .npz file: one (D,) unit vector per name plus "__model__" (the embedding
model's name, since centroids of different models are not comparable).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from .errors import ConfigError, FormatError
from .files import atomic_path

MODEL_KEY = "__model__"

# Cosine between an enrolled centroid and a diarization cluster centroid above which they are
# taken to be the same person, per embedding model. Chosen at the equal-error point of
# benchmarks/enroll_threshold.py on ../shared/data/speakers/trials.txt (benchmarks/RESULTS.md,
# "Known speakers").
MATCH_THRESHOLDS = {"campplus": 0.404}
FALLBACK_THRESHOLD = 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return (x / (np.linalg.norm(x) + 1e-12)).astype(np.float32)


def enroll_embeddings(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """One person's centroid: the unit mean of the unit embeddings of their recordings, (D,)."""
    if len(embeddings) == 0:
        raise ValueError("enrolment needs at least one embedding")
    return _unit(np.mean([_unit(e) for e in embeddings], axis=0))


def load_db(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str | None]:
    """(centroids by name, model name) from a speakers .npz; an absent file is an empty database."""
    path = Path(path)
    if not path.exists():
        return {}, None
    try:
        with np.load(path, allow_pickle=False) as data:
            model = str(data[MODEL_KEY]) if MODEL_KEY in data.files else None
            db = {k: _unit(data[k]) for k in data.files if k != MODEL_KEY}
    except (OSError, ValueError, EOFError) as e:
        raise FormatError(f"{path}: not a speakers database ({e})") from None
    dims = {v.shape[0] for v in db.values()}
    if len(dims) > 1:
        raise FormatError(f"{path}: centroids of different sizes {sorted(dims)}")
    return db, model


def save_db(path: str | os.PathLike, db: dict[str, np.ndarray], model: str) -> None:
    """Write the database atomically."""
    bad = [n for n in db if not n or n.startswith("__")]
    if bad:
        raise ConfigError(f"invalid speaker name {bad[0]!r}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the temp name
            np.savez(f, **{MODEL_KEY: np.array(model)}, **{k: _unit(v) for k, v in db.items()})


def match_threshold(model: str) -> float:
    """The measured cosine threshold for `model`; warns and falls back when it was never measured."""
    if model in MATCH_THRESHOLDS:
        return MATCH_THRESHOLDS[model]
    warnings.warn(
        f"no measured speaker-match threshold for model {model!r}; using {FALLBACK_THRESHOLD} "
        "(set one with --speaker-threshold)",
        stacklevel=2,
    )
    return FALLBACK_THRESHOLD


def identify(centroids: dict[str, np.ndarray], db: dict[str, np.ndarray], threshold: float) -> dict[str, str]:
    """Map cluster labels to enrolled names: one-to-one, best cosine first, only at or above `threshold`.

    Clusters without a match are left out of the mapping (they keep their speaker_N label)."""
    if not centroids or not db:
        return {}
    labels, names = list(centroids), list(db)
    dims = {centroids[labels[0]].shape[-1], db[names[0]].shape[-1]}
    if len(dims) > 1:
        raise ConfigError(
            f"speaker database has {db[names[0]].shape[-1]}-dim centroids but the model gives "
            f"{centroids[labels[0]].shape[-1]}-dim ones (enrolled with another model?)"
        )
    sims = np.stack([_unit(centroids[k]) for k in labels]) @ np.stack([_unit(db[n]) for n in names]).T
    mapping: dict[str, str] = {}
    for flat in np.argsort(-sims, axis=None):
        i, j = divmod(int(flat), len(names))
        if sims[i, j] < threshold:
            break
        if labels[i] not in mapping and names[j] not in mapping.values():
            mapping[labels[i]] = names[j]
    return mapping


def name_speakers(annotation: Annotation, mapping: dict[str, str]) -> Annotation:
    """`annotation` with matched clusters renamed to enrolled names."""
    return annotation.rename_labels({k: v for k, v in mapping.items() if k in annotation.labels()})


__all__ = [
    "MATCH_THRESHOLDS",
    "enroll_embeddings",
    "identify",
    "load_db",
    "match_threshold",
    "name_speakers",
    "save_db",
]
