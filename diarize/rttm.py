"""RTTM and UEM: reading, writing (atomically) and turning window labels into turns.

RTTM (NIST Rich Transcription Time Marked) lines have ten fields:
``SPEAKER <file> <chnl> <tbeg> <tdur> <NA> <NA> <speaker> <NA> <NA>``.
UEM lines are ``<file> <chnl> <tbeg> <tend>``.
"""

from __future__ import annotations

import math
import re
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment, Timeline

from . import regions as rg
from .errors import FormatError, short
from .files import atomic_write, read_text

_WHITESPACE = re.compile(r"\s+")


def rttm_token(name: str) -> str:
    """`name` as one RTTM field: each run of whitespace becomes "_" ("my meeting" -> "my_meeting").

    RTTM fields are separated by whitespace, so a file id or speaker label containing a space
    would shift every later field. The writer (`rttm_lines`) applies this to file ids and labels,
    and callers that look a file id up in a parsed RTTM (oracle VAD, UEM) apply it to their key,
    so "my meeting.wav" is written and found as "my_meeting". An empty name becomes "unknown".
    """
    return _WHITESPACE.sub("_", str(name).strip()) or "unknown"


# Every record type of the NIST RTTM format (the RT-09 validator's list, matched case-insensitively).
# Only SPEAKER lines carry speaker turns; the others are ignored on purpose. A type outside this
# list (a misspelt `SPEKAER`, free text) is an error rather than a silently lost turn.
RTTM_TYPES = frozenset(
    {
        "SPEAKER",
        "SPKR-INFO",
        "SEGMENT",
        "NOSCORE",
        "NO_RT_METADATA",
        "LEXEME",
        "NON-LEX",
        "NON-SPEECH",
        "FILLER",
        "EDIT",
        "SU",
        "IP",
        "CB",
        "A/P",
    }
)


# Times beyond this (three years) are refused when read: no recording is that long, and subtitle
# clocks and float milliseconds stay exact below it.
MAX_SECONDS = 1e8


def _read_text(path: Path, what: str) -> str:
    """The file as text, bounded; a UTF-8 byte-order mark is dropped (it would hide the first line's type)."""
    return read_text(path, what)


def _float_field(value: str, what: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise FormatError(f"{where}: {what} {short(value, 40)} is not a number") from None
    if not math.isfinite(x):
        raise FormatError(f"{where}: {what} {short(value, 40)} is not finite")
    if abs(x) > MAX_SECONDS:
        raise FormatError(f"{where}: {what} {short(value, 40)} is beyond {MAX_SECONDS:.0e} seconds")
    return x


def _records(lines: Iterable[str], source: str) -> Iterator[tuple[str, list[str]]]:
    """(`SOURCE:LINE`, fields) of every line that is not blank or a comment (`;;`, `#`); a UTF-8
    byte-order mark is dropped, also when lines are given to us directly."""
    for lineno, raw in enumerate(lines, start=1):
        line = raw.lstrip("\ufeff").strip()
        if line and not line.startswith((";;", "#")):
            yield f"{source}:{lineno}", line.split()


def parse_rttm(lines: Iterable[str], source: str = "<rttm>") -> dict[str, Annotation]:
    """Parse RTTM text into one `Annotation` per file id (SPEAKER lines; the other NIST types are skipped).

    Raises FormatError (`SOURCE:LINE: ...`) for a malformed SPEAKER line or an unknown record type.
    """
    annotations: dict[str, Annotation] = {}
    for where, fields in _records(lines, source):
        kind = fields[0].upper()
        if kind not in RTTM_TYPES:
            raise FormatError(
                f"{where}: unknown RTTM record type {short(fields[0], 40)} (expected SPEAKER or another NIST type)"
            )
        if kind != "SPEAKER":
            continue  # SPKR-INFO, LEXEME, ...: no turns
        if not 8 <= len(fields) <= 10:
            hint = " (a file id or speaker label with spaces? they are written with '_')" if len(fields) > 10 else ""
            raise FormatError(
                f"{where}: expected 10 fields 'SPEAKER file chnl tbeg tdur <NA> <NA> speaker <NA> <NA>', "
                f"got {len(fields)}{hint}"
            )
        uri, start_s, dur_s, speaker = fields[1], fields[3], fields[4], fields[7]
        start = _float_field(start_s, "onset", where)
        duration = _float_field(dur_s, "duration", where)
        if start < 0 or duration < 0:
            raise FormatError(f"{where}: negative onset or duration")
        ann = annotations.setdefault(uri, Annotation(uri=uri))
        if duration > 0:
            ann[Segment(start, start + duration), len(ann)] = speaker
    return annotations


def read_rttm(path: str | os.PathLike) -> dict[str, Annotation]:
    path = Path(path)
    return parse_rttm(_read_text(path, "RTTM").splitlines(), source=str(path))


def parse_uem(lines: Iterable[str], source: str = "<uem>") -> dict[str, Timeline]:
    """Parse UEM text into one `Timeline` of scored regions per file id."""
    uems: dict[str, Timeline] = {}
    for where, fields in _records(lines, source):
        if len(fields) != 4:
            raise FormatError(f"{where}: expected 4 fields 'file chnl tbeg tend', got {len(fields)}")
        start = _float_field(fields[2], "tbeg", where)
        end = _float_field(fields[3], "tend", where)
        if start < 0 or end < start:
            raise FormatError(f"{where}: need 0 <= tbeg <= tend, got {start} {end}")
        tl = uems.setdefault(fields[0], Timeline(uri=fields[0]))
        if end > start:
            tl.add(Segment(start, end))
    return {uri: tl.support() for uri, tl in uems.items()}


def read_uem(path: str | os.PathLike) -> dict[str, Timeline]:
    path = Path(path)
    return parse_uem(_read_text(path, "UEM").splitlines(), source=str(path))


def rttm_lines(annotation: Annotation, uri: str | None = None) -> list[str]:
    """One RTTM line per turn; whitespace in the file id and labels becomes "_" (`rttm_token`)."""
    uri = rttm_token(uri or annotation.uri or "unknown")
    lines = []
    for segment, _, label in annotation.itertracks(yield_label=True):
        lines.append(
            f"SPEAKER {uri} 1 {segment.start:.3f} {segment.duration:.3f} <NA> <NA> {rttm_token(label)} <NA> <NA>\n"
        )
    return lines


def write_rttm(path: str | os.PathLike, annotations: Annotation | Sequence[Annotation]) -> None:
    if isinstance(annotations, Annotation):
        annotations = [annotations]
    atomic_write(path, "".join(line for ann in annotations for line in rttm_lines(ann)))


def cut_at_midpoints(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort windows by time and cut overlapping neighbours at the middle of their overlap (as NeMo
    does), so every instant belongs to one window. Returns (order, starts, ends) in sorted order."""
    order = np.lexsort((ends, starts))
    s = np.asarray(starts, dtype=np.float64)[order].copy()
    e = np.asarray(ends, dtype=np.float64)[order].copy()
    if len(s) > 1:
        overlap = e[:-1] > s[1:]
        mid = (s[1:] + e[:-1]) / 2
        e[:-1] = np.where(overlap, mid, e[:-1])
        s[1:] = np.where(overlap, mid, s[1:])
    return order, s, e


def speaker_names(
    labels: np.ndarray, starts: np.ndarray, ends: np.ndarray, label_prefix: str = "speaker_"
) -> dict[int, str]:
    """Name cluster labels by first appearance in time (after `cut_at_midpoints`): stable output names."""
    order, s, e = cut_at_midpoints(starts, ends)
    names: dict[int, str] = {}
    for k, a, b in zip(np.asarray(labels)[order], s, e):
        if b > a:
            names.setdefault(int(k), f"{label_prefix}{len(names)}")
    return names


def labels_to_annotation(
    starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, uri: str, label_prefix: str = "speaker_"
) -> Annotation:
    """Turn (possibly overlapping) labelled windows into speaker turns.

    Overlapping neighbours are cut at the middle of their overlap, then touching windows with
    the same label are merged. Gaps between windows (non-speech) are kept. Speakers are named
    `speaker_0, speaker_1, ...` by first appearance.
    """
    ann = Annotation(uri=uri)
    if len(starts) == 0:
        return ann
    order, s, e = cut_at_midpoints(starts, ends)
    lab = np.asarray(labels)[order]
    names = speaker_names(labels, starts, ends, label_prefix)
    cur_start, cur_end, cur_lab = s[0], e[0], lab[0]
    turns = []
    for i in range(1, len(s)):
        if lab[i] == cur_lab and s[i] <= cur_end + 1e-9:
            cur_end = max(cur_end, e[i])
        else:
            turns.append((cur_start, cur_end, cur_lab))
            cur_start, cur_end, cur_lab = s[i], e[i], lab[i]
    turns.append((cur_start, cur_end, cur_lab))
    for start, end, label in turns:
        if end - start > 0:
            ann[Segment(float(start), float(end)), len(ann)] = names[int(label)]
    return ann


def widen_turns(
    annotation: Annotation, regions: np.ndarray, pad_s: float, join_s: float, within: np.ndarray
) -> Annotation:
    """Speaker turns that reach into the silence around the speech `regions` (K, 2). A region's first turns
    start `pad_s` earlier and its last turns end `pad_s` later, at most to the middle of the pause before the
    next region; a speaker who ends one region and opens the next after a pause shorter than `join_s` keeps
    one turn across it. Nothing reaches outside `within` (M, 2), the scored part of the audio. A turn opens
    (closes) its region where the region's earliest (latest) turn does, so both speakers of an overlap
    widen alike. Turns inside a region are unchanged."""
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
    if (pad_s <= 0 and join_s <= 0) or len(r) == 0 or not len(annotation):
        return annotation
    pause = r[1:, 0] - r[:-1, 1]
    before = np.minimum(pad_s, np.concatenate([[np.inf], pause / 2]))
    after = np.minimum(pad_s, np.concatenate([pause / 2, [np.inf]]))
    turns = list(annotation.itertracks(yield_label=True))
    starts = np.array([seg.start for seg, _, _ in turns])
    ends = np.array([seg.end for seg, _, _ in turns])
    labels = np.array([label for _, _, label in turns], dtype=object)
    region = np.clip(np.searchsorted(r[:, 0], (starts + ends) / 2, side="right") - 1, 0, len(r) - 1)
    first = np.full(len(r), np.inf)
    last = np.full(len(r), -np.inf)
    np.minimum.at(first, region, starts)
    np.maximum.at(last, region, ends)
    opens, closes = starts <= first[region] + 1e-9, ends >= last[region] - 1e-9
    closing = {(region[i], labels[i]) for i in np.flatnonzero(closes)}
    bridges = [
        (r[k - 1, 1], r[k, 0], labels[i])
        for i in np.flatnonzero(opens)
        if (k := region[i]) > 0 and pause[k - 1] < join_s and (k - 1, labels[i]) in closing
    ]
    spans = [
        *zip(
            np.where(opens, np.minimum(starts, r[region, 0] - before[region]), starts),
            np.where(closes, np.maximum(ends, r[region, 1] + after[region]), ends),
            labels,
        ),
        *bridges,
    ]
    # pyannote.core's support() and crop() take seconds on an hour's turns; the same with region arithmetic
    scored = rg.merge(within)
    widened = [
        (a, b, label)
        for label in dict.fromkeys(labels)
        for a, b in rg.intersect(rg.merge([(a, b) for a, b, lab in spans if lab == label]), scored)
    ]
    out = Annotation(uri=annotation.uri)
    for i, (a, b, label) in enumerate(sorted(widened, key=lambda t: (t[0], t[1]))):
        out[Segment(float(a), float(b)), i] = label
    return out
