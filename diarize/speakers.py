"""Known speakers: enrol people once (a centroid embedding each), then name the clusters of any
recording that match them.

The database is an .npz file: "__names__" (N,) labels, "__centroids__" (N, D) unit vectors and
"__model__" (the embedding model's name, since centroids of different models are not comparable).
Files of the earlier layout (one member per name) are still read.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from .errors import ConfigError, FormatError, short
from .files import atomic_path
from .rttm import rttm_token

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

MODEL_KEY = "__model__"

# Cosine between an enrolled centroid and a diarization cluster centroid above which they are
# taken to be the same person, per embedding model. Chosen at the equal-error point of
# benchmarks/accuracy/enroll_threshold.py on ../shared/data/speakers/trials.txt (benchmarks/RESULTS.md,
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


# Generated cluster labels (speaker_0, SPEAKER_00 with --labels pyannote): an enrolled name of that
# shape would silently merge a stranger's cluster with the person's.
_GENERATED = re.compile(r"speaker_\d+", re.IGNORECASE)
# Members of the .npz: names and centroids are stored as arrays, never as member names, so a person
# called "file" or "allow_pickle" is not taken for an argument of np.savez.
NAMES_KEY, CENTROIDS_KEY = "__names__", "__centroids__"
# A header claiming more elements than this is refused before numpy allocates it.
MAX_DB_ELEMENTS = 1 << 24


def speaker_label(name: str) -> str:
    """The label a person's name gets in every output (RTTM, JSON, SRT, VTT, CSV, plot): one RTTM
    token, whitespace runs made "_" ("Alice Smith" -> "Alice_Smith"). Raises ConfigError for a name
    that is empty, starts with "__" or looks like a generated label (speaker_1, SPEAKER_01)."""
    label = rttm_token(name)
    if not str(name).strip() or label.startswith("__") or _GENERATED.fullmatch(label):
        raise ConfigError(
            f"invalid speaker name {short(name, 40)}: names must not be empty, start with '__' "
            "or look like a generated label (speaker_N, SPEAKER_NN)"
        )
    return label


def _check_members(path: Path) -> None:
    """Refuse a file that is not an .npz, or whose arrays are objects or claim absurd sizes."""
    if not zipfile.is_zipfile(path):
        raise FormatError(f"{path}: not a speakers database (not an .npz archive)")
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                try:
                    major, _ = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                except ValueError as e:
                    raise FormatError(f"{path}: member {short(info.filename, 40)} is not an array ({e})") from None
            if dtype.hasobject or math.prod(shape) > MAX_DB_ELEMENTS:
                raise FormatError(f"{path}: member {short(info.filename, 40)} claims shape {shape} of {dtype}")


def load_db(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str | None]:
    """(centroids by label, model name) from a speakers .npz; an absent file is an empty database.

    Raises FormatError naming the file: not an .npz, objects or absurd sizes, non-finite or
    differently sized centroids, names that collide once made labels (`speaker_label`)."""
    path = Path(path)
    if not path.exists():
        return {}, None
    if path.is_dir():
        raise FormatError(f"{path}: is a directory, not a speakers database")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            model = str(data[MODEL_KEY]) if MODEL_KEY in data.files else None
            if NAMES_KEY in data.files:
                names = [str(n) for n in np.atleast_1d(data[NAMES_KEY])]
                vectors = list(np.atleast_2d(data[CENTROIDS_KEY])) if names else []
            else:  # written before names were a member: one member per name
                names = [k for k in data.files if not k.startswith("__")]
                vectors = [data[k] for k in names]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise FormatError(f"{path}: not a speakers database ({e})") from None
    if len(names) != len(vectors):
        raise FormatError(f"{path}: {len(names)} names but {len(vectors)} centroids")
    db: dict[str, np.ndarray] = {}
    for name, v in zip(names, vectors):
        v = np.asarray(v)
        if v.ndim != 1 or v.size == 0 or v.dtype.kind not in "fiu" or not np.isfinite(v).all() or not v.any():
            raise FormatError(f"{path}: the centroid of {short(name, 40)} is not a finite, non-zero vector")
        try:
            label = speaker_label(name)
        except ConfigError as e:
            raise FormatError(f"{path}: {e}") from None
        if label in db:
            raise FormatError(f"{path}: two enrolled names give the speaker label {label!r}")
        db[label] = _unit(v)
    dims = {v.shape[0] for v in db.values()}
    if len(dims) > 1:
        raise FormatError(f"{path}: centroids of different sizes {sorted(dims)}")
    return db, model


def save_db(path: str | os.PathLike, db: dict[str, np.ndarray], model: str) -> None:
    """Write the database atomically (names as a member, see NAMES_KEY)."""
    names = [speaker_label(n) for n in db]
    vectors = np.stack([_unit(v) for v in db.values()]) if db else np.zeros((0, 0), np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the temp name
            np.savez(f, **{MODEL_KEY: np.array(model), NAMES_KEY: np.array(names, dtype=str), CENTROIDS_KEY: vectors})


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the database for a read-modify-write: two `enroll` at once into one
    file would otherwise both read it, and the later write would drop the earlier person. The lock
    is a hidden file beside the database (the database itself is replaced on every write)."""
    if fcntl is None:  # no advisory locks on this platform
        yield
        return
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def enroll(path: str | os.PathLike, name: str, centroid: np.ndarray, model: str) -> tuple[str, int]:
    """Add (or replace) one person in the database at `path` under an exclusive lock; returns
    (their label, the number of people now enrolled).

    Raises ConfigError for a bad name or another model's database, FormatError for a bad file."""
    path = Path(path)
    label = speaker_label(name)
    centroid = np.asarray(centroid)
    if not np.isfinite(centroid).all():
        raise ConfigError(f"{short(name, 40)}: the embedding is not finite")
    with _locked(path):
        db, db_model = load_db(path)
        if db_model is not None and db_model != model:
            raise ConfigError(f"{path}: enrolled with {db_model}, not {model} (use --model {db_model})")
        if db and next(iter(db.values())).shape != centroid.shape:
            raise ConfigError(f"{path}: holds {next(iter(db.values())).shape[0]}-dim centroids, not {centroid.size}")
        db[label] = _unit(centroid)
        save_db(path, db, model)
    return label, len(db)


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
    "enroll",
    "enroll_embeddings",
    "identify",
    "load_db",
    "match_threshold",
    "name_speakers",
    "save_db",
    "speaker_label",
]
