"""NeMo-style JSON-lines manifests: one recording (or a part of one) per line.

Fields honoured per line (NeMo's names): ``audio_filepath`` (required), ``offset`` and ``duration``
(seconds: only that part of the recording is diarized / embedded; times stay those of the whole
file), ``num_speakers`` (null or a whole number >= 1), ``rttm_filepath`` (reference turns: oracle VAD),
``uem_filepath`` (scored regions) and ``label`` (for `diarize embed`). Relative paths are taken
from the current folder, then from the manifest's folder. Every bad value is a FormatError
``MANIFEST:LINE: what is wrong``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline

from .errors import DiarizeError, FormatError, short
from .files import load_json, read_text
from .rttm import MAX_SECONDS, read_rttm, read_uem, rttm_token


@dataclass
class ManifestEntry:
    """One manifest line, checked; `where` is "MANIFEST:LINE" for messages."""

    audio: Path
    where: str
    offset: float = 0.0
    duration: float | None = None
    num_speakers: int | None = None
    rttm: Path | None = None
    uem: Path | None = None
    label: str = ""

    @property
    def uri(self) -> str:
        """The RTTM file id: the audio file's stem with whitespace made "_" (rttm.rttm_token)."""
        return rttm_token(self.audio.stem)

    def window(self) -> Timeline | None:
        """The part of the recording to use, as a timeline in file time (None: all of it)."""
        if self.offset == 0.0 and self.duration is None:
            return None
        end = self.offset + self.duration if self.duration is not None else float("inf")
        return Timeline([Segment(self.offset, end)], uri=self.uri)

    def oracle_vad(self) -> Annotation | None:
        """Reference turns for this recording from `rttm_filepath` (its only file id, or the audio's)."""
        return None if self.rttm is None else _pick(read_rttm(self.rttm), self, self.rttm, "turns")

    def scored(self) -> Timeline | None:
        """Scored regions from `uem_filepath`, matched like `oracle_vad`."""
        return None if self.uem is None else _pick(read_uem(self.uem), self, self.uem, "region")


def _pick(by_uri: dict, entry: ManifestEntry, path: Path, what: str):
    if entry.uri in by_uri:
        return by_uri[entry.uri]
    if len(by_uri) == 1:  # NeMo writes one RTTM per recording; its file id may differ from the stem
        return next(iter(by_uri.values()))
    raise FormatError(
        f"{entry.where}: {path} has no {what} for file id {entry.uri!r} (has {', '.join(sorted(by_uri)) or 'none'})"
    )


# More speakers than anyone diarizes; a bound keeps 1e300 from reaching the clustering as an int.
MAX_NUM_SPEAKERS = 10_000


def _finite(value: object) -> bool:
    """A JSON number that is finite as a float (a 400-digit integer is not: float() overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _path(value: object, key: str, where: str, base: Path, must_exist: bool) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise FormatError(f"{where}: {key!r} must be a file path, got {value!r}")
    p = Path(value)
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        p = base / p
    if must_exist and not p.is_file():
        raise FormatError(f"{where}: {key} {value}: no such file")
    return p


def _seconds(value: object, key: str, where: str, positive: bool) -> float:
    if not _finite(value) or abs(value) > MAX_SECONDS:
        raise FormatError(f"{where}: {key!r} must be a number of seconds up to {MAX_SECONDS:.0e}, got {short(value)}")
    if value < 0 or (positive and value == 0):
        raise FormatError(f"{where}: {key!r} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def parse_line(item: object, where: str, base: Path) -> ManifestEntry:
    """Check one decoded manifest line."""
    if not isinstance(item, dict) or "audio_filepath" not in item:
        raise FormatError(f"{where}: needs an 'audio_filepath' field")
    entry = ManifestEntry(_path(item["audio_filepath"], "audio_filepath", where, base, must_exist=False), where)
    if item.get("offset") is not None:
        entry.offset = _seconds(item["offset"], "offset", where, positive=False)
    if item.get("duration") is not None:
        entry.duration = _seconds(item["duration"], "duration", where, positive=True)
    n = item.get("num_speakers")
    if n is not None:
        if not _finite(n) or n != int(n) or not 1 <= n <= MAX_NUM_SPEAKERS:
            raise FormatError(
                f"{where}: 'num_speakers' must be null or a whole number from 1 to {MAX_NUM_SPEAKERS}, got {short(n)}"
            )
        entry.num_speakers = int(n)
    for key, attr in (("rttm_filepath", "rttm"), ("uem_filepath", "uem")):
        if item.get(key) is not None:
            setattr(entry, attr, _path(item[key], key, where, base, must_exist=True))
    entry.label = str(item.get("label") or "")
    return entry


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """All entries of a manifest; raises FormatError `MANIFEST:LINE: ...` on the first bad one."""
    path = Path(path)
    text = read_text(path, "manifest")
    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        item = load_json(line, where, numbered=False)
        entries.append(parse_line(item, where, path.parent))
    return entries


def load_references(entry: ManifestEntry) -> tuple[Annotation | None, Timeline | None]:
    """(oracle VAD turns, scored regions) of one entry; errors carry the manifest line."""
    try:
        return entry.oracle_vad(), entry.scored()
    except DiarizeError as e:
        msg = str(e)
        raise FormatError(msg if msg.startswith(entry.where) else f"{entry.where}: {msg}") from None


__all__ = ["ManifestEntry", "load_references", "parse_line", "read_manifest"]
