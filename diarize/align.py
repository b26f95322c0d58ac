"""Speaker labels on an ASR transcript: each word and segment gets the speaker it overlaps most.

Transcripts come in as whisper / whisperX JSON (``{"segments": [{"start", "end", "text",
"words": [{"word", "start", "end"}]}]}``), SRT / WebVTT cues, or a plain JSON list of words
(``[{"word", "start", "end"}]``). They go out as the same JSON with a "speaker" key on every
segment and word (None where no speaker is near enough), or as SRT / VTT with ``[speaker]``
prefixes.

The overlap of N intervals with each of S speakers comes from per-speaker cumulative speech
time evaluated with binary search: O((N + T) log T) per speaker for T turns, never N x T, so
three hours of words take a few milliseconds (benchmarks/align_speed.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from .errors import FormatError
from .files import atomic_write
from .formats import cues_to_srt, cues_to_vtt

TRANSCRIPT_FORMATS = ("json", "srt", "vtt")


def _speaker_tracks(annotation: Annotation) -> tuple[list[str], list[np.ndarray]]:
    """Labels and, per label, its disjoint sorted turns as a (K, 2) array."""
    labels = sorted(str(lab) for lab in annotation.labels())
    tracks = []
    for lab in labels:
        tl = annotation.label_timeline(lab).support()
        tracks.append(np.array([[s.start, s.end] for s in tl], dtype=np.float64).reshape(-1, 2))
    return labels, tracks


def _speech_before(track: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Seconds of `track` ((K, 2), disjoint, sorted) that lie before each time in `t`."""
    if len(track) == 0:
        return np.zeros_like(t)
    starts, ends = track[:, 0], track[:, 1]
    cum = np.concatenate([[0.0], np.cumsum(ends - starts)])
    i = np.searchsorted(starts, t, side="right")  # turns starting at or before t
    inside = np.clip(t - starts[np.maximum(i - 1, 0)], 0.0, (ends - starts)[np.maximum(i - 1, 0)])
    return cum[np.maximum(i - 1, 0)] + np.where(i > 0, inside, 0.0)


def _distance(track: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gap in seconds between each interval [a, b] and the nearest turn of `track` (0 when they touch)."""
    if len(track) == 0:
        return np.full_like(a, np.inf)
    starts, ends = track[:, 0], track[:, 1]
    i = np.searchsorted(starts, b, side="right")  # turns that start by b; the last of them ends latest
    before = np.where(i > 0, a - ends[np.maximum(i - 1, 0)], np.inf)
    after = np.where(i < len(starts), starts[np.minimum(i, len(starts) - 1)] - b, np.inf)
    return np.maximum(np.minimum(before, after), 0.0)


def assign_speakers(intervals: np.ndarray | list, annotation: Annotation, tolerance: float = 1.0) -> list[str | None]:
    """The speaker of each (start, end) interval: the one it overlaps most; if it overlaps none,
    the nearest speaker within `tolerance` seconds; else None.

    intervals: (N, 2) seconds, in any order (or a list of dicts with "start"/"end").
    Ties go to the label that sorts first. A zero-length interval (a word whisper could not time)
    is treated as a point.
    """
    if len(intervals) and isinstance(intervals[0], dict):
        intervals = [(w["start"], w["end"]) for w in intervals]
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    labels, tracks = _speaker_tracks(annotation)
    if len(iv) == 0:
        return []
    if not labels:
        return [None] * len(iv)
    a, b = iv[:, 0], np.maximum(iv[:, 1], iv[:, 0])
    overlap = np.stack([_speech_before(t, b) - _speech_before(t, a) for t in tracks], axis=1)
    # A point (or a word inside a turn boundary) counts as overlapping the turn that contains it.
    contains = np.stack([_distance(t, a, b) == 0 for t in tracks], axis=1)
    score = overlap + 1e-9 * contains
    best = np.argmax(score, axis=1)
    dist = np.stack([_distance(t, a, b) for t in tracks], axis=1)
    nearest = np.argmin(dist, axis=1)
    has = score[np.arange(len(iv)), best] > 0
    near = dist[np.arange(len(iv)), nearest] <= tolerance
    return [labels[best[i]] if has[i] else labels[nearest[i]] if near[i] else None for i in range(len(iv))]


# --------------------------------------------------------------------------- transcripts
def _number(x: object, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        raise FormatError(f"{where}: expected a number, got {x!r}")
    return float(x)


def _timed(item: object, where: str) -> bool:
    """Whether a word/segment dict carries start and end (whisper leaves some words untimed)."""
    if not isinstance(item, dict):
        raise FormatError(f"{where}: expected an object with 'start' and 'end'")
    if item.get("start") is None or item.get("end") is None:
        return False
    a, b = _number(item["start"], f"{where}.start"), _number(item["end"], f"{where}.end")
    if b < a:
        raise FormatError(f"{where}: end {b} is before start {a}")
    return True


_CUE_TIME = re.compile(r"(?:(\d+):)?(\d+):(\d+)[,.](\d+)")


def _cue_seconds(text: str) -> float:
    m = _CUE_TIME.fullmatch(text.strip().split()[0] if text.strip() else "")
    if not m:
        raise ValueError(text)
    h, mi, s, frac = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac)


def parse_cues(text: str, source: str = "<subtitles>") -> dict:
    """SRT or WebVTT text -> {"segments": [{"start", "end", "text"}]} (speaker prefixes are kept as text)."""
    segments = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "-->" not in line:
            i += 1
            continue
        left, right = line.split("-->", 1)
        try:
            a, b = _cue_seconds(left), _cue_seconds(right)
        except ValueError:
            raise FormatError(f"{source}:{i + 1}: bad cue timing {line.strip()!r}") from None
        body = []
        i += 1
        while i < len(lines) and lines[i].strip():
            body.append(lines[i].strip())
            i += 1
        segments.append({"start": a, "end": b, "text": " ".join(body)})
    if not segments:
        raise FormatError(f"{source}: no subtitle cues ('start --> end' lines) found")
    return {"segments": segments}


def read_transcript(path: str | os.PathLike) -> dict:
    """A transcript file as whisper-style {"segments": [...]} (plain word lists become one segment
    per word list under "words"). Raises FormatError naming the file on anything malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot read transcript ({e})") from None
    if path.suffix.lower() in (".srt", ".vtt"):
        return parse_cues(text, str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    return normalise_transcript(doc, str(path))


def normalise_transcript(doc: object, source: str = "<transcript>") -> dict:
    """Check a whisper / whisperX document (or a plain word list) and return it as {"segments": [...]}."""
    if isinstance(doc, list):  # plain word list
        doc = {"segments": [], "words": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("segments", []), list):
        raise FormatError(f"{source}: expected whisper JSON ({{'segments': [...]}}) or a list of words")
    doc = dict(doc)
    doc.setdefault("segments", [])
    for i, seg in enumerate(doc["segments"]):
        _timed(seg, f"{source}: segments[{i}]")
        for j, w in enumerate(seg.get("words") or []):
            _timed(w, f"{source}: segments[{i}].words[{j}]")
    for j, w in enumerate(doc.get("words") or []):
        _timed(w, f"{source}: words[{j}]")
    if not doc["segments"] and not doc.get("words"):
        raise FormatError(f"{source}: the transcript has no segments or words")
    return doc


def _items(doc: dict) -> list[dict]:
    """Every segment and word dict of `doc`, in document order."""
    out = []
    for seg in doc["segments"]:
        out.append(seg)
        out.extend(seg.get("words") or [])
    out.extend(doc.get("words") or [])
    return out


def label_transcript(doc: dict, annotation: Annotation, tolerance: float = 1.0) -> dict:
    """A copy of a whisper-style transcript with a "speaker" key on every segment and word.

    Timed items get `assign_speakers`; an untimed word takes its segment's speaker; an untimed
    segment takes the most common speaker of its words. The key is always present (None when
    no speaker is within `tolerance`), as downstream code indexes it without checking.
    """
    doc = copy.deepcopy(normalise_transcript(doc))
    items = _items(doc)
    timed = [x for x in items if x.get("start") is not None and x.get("end") is not None]
    for x, spk in zip(timed, assign_speakers([(x["start"], x["end"]) for x in timed], annotation, tolerance)):
        x["speaker"] = spk
    for seg in doc["segments"]:
        words = seg.get("words") or []
        if "speaker" not in seg:
            found = [w["speaker"] for w in words if w.get("speaker") is not None]
            seg["speaker"] = max(set(found), key=found.count) if found else None
        for w in words:
            w.setdefault("speaker", seg["speaker"])
    for w in doc.get("words") or []:
        w.setdefault("speaker", None)
    return doc


def _cues(doc: dict) -> list[tuple[float, float, str]]:
    out = []
    for seg in doc["segments"]:
        if seg.get("start") is None:
            continue
        text = str(seg.get("text", "")).strip()
        spk = seg.get("speaker")
        out.append((float(seg["start"]), float(seg["end"]), f"[{spk}] {text}" if spk else text))
    words = [w for w in doc.get("words") or [] if w.get("start") is not None]
    for w in words:
        text = str(w.get("word", w.get("text", ""))).strip()
        spk = w.get("speaker")
        out.append((float(w["start"]), float(w["end"]), f"[{spk}] {text}" if spk else text))
    return out


def write_transcript(path: str | os.PathLike, doc: dict, fmt: str | None = None) -> None:
    """Write a labelled transcript atomically as JSON, SRT or VTT (by `fmt` or the extension)."""
    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt == "json":
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    elif fmt == "srt":
        text = cues_to_srt(_cues(doc))
    elif fmt == "vtt":
        text = cues_to_vtt(_cues(doc))
    else:
        raise FormatError(f"{path}: transcript output must be .json, .srt or .vtt")
    atomic_write(path, text)


__all__ = [
    "TRANSCRIPT_FORMATS",
    "assign_speakers",
    "label_transcript",
    "normalise_transcript",
    "parse_cues",
    "read_transcript",
    "write_transcript",
]
