"""Speaker labels on an ASR transcript: each word and segment gets the speaker it overlaps most.

Transcripts come in as whisper / whisperX JSON (``{"segments": [{"start", "end", "text",
"words": [{"word", "start", "end"}]}], "word_segments": [...]}``), SRT / WebVTT cues, or a plain
JSON list of words (``[{"word", "start", "end"}]``). They go out as the same JSON with a "speaker"
key on every segment and word (None where no speaker is near enough), as SRT / VTT with
``[speaker]`` prefixes (replacing a speaker prefix a cue already has), as text (one line per
speaker turn, ``[speaker] text``) or as TSV (``start``, ``end`` in integer milliseconds as
whisper writes them, ``speaker``, ``text``). With ``split=True`` a segment whose words change
speaker is cut there into segments of one speaker each.

The overlap of N intervals with each of S speakers comes from per-speaker cumulative speech
time evaluated with binary search: O((N + T) log T) per speaker for T turns, never N x T, so
three hours of words take a few milliseconds (benchmarks/speed/align_speed.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
from pyannote.core import Annotation

from .errors import FormatError, short
from .files import atomic_write, load_json, read_text
from .formats import cues_to_srt, cues_to_vtt
from .rttm import MAX_SECONDS

TRANSCRIPT_FORMATS = ("json", "srt", "vtt", "txt", "tsv")
# A whisper JSON with word times takes ~100 bytes a word: 32 MiB is ~300 000 words (days of speech),
# and parsed it stays below 1 GB (1 M words took 1.7 GB).
MAX_TRANSCRIPT_BYTES = 32 << 20


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
    try:  # a 400-digit integer overflows float()
        ok = not isinstance(x, bool) and isinstance(x, (int, float)) and abs(float(x)) <= MAX_SECONDS
    except OverflowError:
        ok = False
    if not ok:
        raise FormatError(f"{where}: expected a number of seconds up to {MAX_SECONDS:.0e}, got {short(x, 40)}")
    return float(x)


def _timed(item: object, where: str) -> bool:
    """Whether a word/segment dict carries start and end (whisper leaves some words untimed)."""
    if not isinstance(item, dict):
        raise FormatError(f"{where}: expected an object with 'start' and 'end'")
    for key in ("start", "end"):  # each one given is checked, also when its partner is missing
        if item.get(key) is not None:
            _number(item[key], f"{where}.{key}")
    if item.get("start") is None or item.get("end") is None:
        return False
    a, b = float(item["start"]), float(item["end"])
    if b < a:
        raise FormatError(f"{where}: end {b} is before start {a}")
    return True


_CUE_TIME = re.compile(r"(?:(\d+):)?(\d+):(\d+)[,.](\d+)")


def _cue_seconds(text: str) -> float:
    m = _CUE_TIME.fullmatch(text.strip().split()[0] if text.strip() else "")
    if not m:
        raise ValueError(text)
    h, mi, s, frac = m.groups()
    if max(len(h or ""), len(mi), len(s)) > 9:  # a 400-digit hour field: no real clock, and float() overflows
        raise ValueError(text)
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac[:9]}")


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
    text = read_text(path, "transcript", MAX_TRANSCRIPT_BYTES)
    if path.suffix.lower() in (".srt", ".vtt"):
        return parse_cues(text, str(path))
    return normalise_transcript(load_json(text, str(path)), str(path))


def normalise_transcript(doc: object, source: str = "<transcript>") -> dict:
    """Check a whisper / whisperX document (or a plain word list) and return it as {"segments": [...]}."""
    if isinstance(doc, list):  # plain word list
        doc = {"segments": [], "words": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("segments", []), list):
        raise FormatError(f"{source}: expected whisper JSON ({{'segments': [...]}}) or a list of words")
    doc = dict(doc)
    doc.setdefault("segments", [])
    if not isinstance(doc.get("words") or [], list):
        raise FormatError(f"{source}: 'words' must be a list of words, got {short(doc['words'], 40)}")
    for i, seg in enumerate(doc["segments"]):
        _timed(seg, f"{source}: segments[{i}]")
        if not isinstance(seg.get("words") or [], list):
            raise FormatError(f"{source}: segments[{i}].words must be a list, got {short(seg['words'], 40)}")
        for j, w in enumerate(seg.get("words") or []):
            _timed(w, f"{source}: segments[{i}].words[{j}]")
    for key in ("words", "word_segments"):
        for j, w in enumerate(doc.get(key) or []):
            _timed(w, f"{source}: {key}[{j}]")
    if not doc["segments"] and not doc.get("words") and not doc.get("word_segments"):
        raise FormatError(f"{source}: the transcript has no segments or words")
    return doc


def _items(doc: dict) -> list[dict]:
    """Every segment and word dict of `doc`, in document order."""
    out = []
    for seg in doc["segments"]:
        out.append(seg)
        out.extend(seg.get("words") or [])
    out.extend(doc.get("words") or [])
    out.extend(doc.get("word_segments") or [])  # whisperX's flat list of every word
    return out


def _join(words: list[dict]) -> str:
    """The text of consecutive words: whisper's words carry their leading space, whisperX's do not."""
    texts = [str(w.get("word", w.get("text", ""))) for w in words]
    glued = all(t[:1].isspace() for t in texts[1:])
    return ("".join(texts) if glued else " ".join(t.strip() for t in texts)).strip()


def split_segment(seg: dict) -> list[dict]:
    """A labelled segment cut at the word boundaries where the speaker changes, one speaker per part.

    A word without a speaker of its own (untimed, or no speaker near enough) stays with the part
    before it, and an untimed one takes that part's speaker. The first part keeps the segment's
    start, the last its end; the cuts are at the words' own times. A segment of one speaker comes
    back whole.

        words     a:A b:A c:B d:None e:A
        parts     [a b] A | [c d] B | [e] A
    """
    runs: list[tuple[list[dict], str | None]] = []  # (words, speaker)
    for w in seg.get("words") or []:
        spk = w.get("speaker") if w.get("start") is not None else None
        if runs and (spk is None or spk == runs[-1][1] or runs[-1][1] is None):
            runs[-1] = (runs[-1][0] + [w], runs[-1][1] if spk is None else spk)
        else:
            runs.append(([w], spk))
    if len(runs) <= 1:
        return [seg]
    parts = []
    for i, (run, spk) in enumerate(runs):
        timed = [w for w in run if w.get("start") is not None]
        part = {k: v for k, v in seg.items() if k != "tokens"}  # whisper's tokens belong to the whole segment
        part["start"] = seg.get("start") if i == 0 or not timed else timed[0]["start"]
        part["end"] = seg.get("end") if i == len(runs) - 1 or not timed else timed[-1]["end"]
        words = [w if w.get("start") is not None else {**w, "speaker": spk} for w in run]
        part.update(text=_join(run), words=words, speaker=spk)
        parts.append(part)
    return parts


def label_transcript(doc: dict, annotation: Annotation, tolerance: float = 1.0, split: bool = False) -> dict:
    """A copy of a whisper-style transcript with a "speaker" key on every segment and word.

    Timed items get `assign_speakers`; an untimed word takes its segment's speaker; an untimed
    segment takes the most common speaker of its words. The key is always present (None when
    no speaker is within `tolerance`), as downstream code indexes it without checking.
    `split`: cut segments where their words change speaker (`split_segment`); the default keeps
    whisperX's segments, each with its majority speaker.
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
    for w in (doc.get("words") or []) + (doc.get("word_segments") or []):
        w.setdefault("speaker", None)
    if split:
        doc["segments"] = [part for seg in doc["segments"] for part in split_segment(seg)]
    return doc


# A cue's speaker prefix as written before: one of this document's speakers or a diarize / pyannote
# label (`speaker_3`, `SPEAKER_03`). Other bracketed text ("[Music]", a name no longer among the
# speakers) is kept as text.
_PREFIX = re.compile(r"\[([^\]\s]+)\]\s*")
_LABEL = re.compile(r"(?:speaker_\d+|SPEAKER_\d+)")


def _prefixed(text: str, spk: str | None, speakers: set[str]) -> str:
    """`[spk] text`, replacing a speaker prefix `text` already carries (never doubling it)."""
    m = _PREFIX.match(text)
    if m and (m.group(1) in speakers or _LABEL.fullmatch(m.group(1))):
        text = text[m.end() :]
    return f"[{spk}] {text}" if spk else text


def _lines(doc: dict) -> list[tuple[float, float, str | None, str]]:
    """(start, end, speaker, text) of every timed segment, then of every timed top-level word."""
    out = []
    for seg in doc["segments"]:
        if seg.get("start") is not None and seg.get("end") is not None:
            out.append((float(seg["start"]), float(seg["end"]), seg.get("speaker"), str(seg.get("text", "")).strip()))
    for w in doc.get("words") or []:
        if w.get("start") is not None and w.get("end") is not None:
            text = str(w.get("word", w.get("text", ""))).strip()
            out.append((float(w["start"]), float(w["end"]), w.get("speaker"), text))
    return out


def _cues(doc: dict) -> list[tuple[float, float, str]]:
    lines = _lines(doc)
    speakers = {spk for _, _, spk, _ in lines if spk}
    return [(a, b, _prefixed(text, spk, speakers)) for a, b, spk, text in lines]


def _txt(doc: dict) -> str:
    """One line per speaker turn: consecutive segments of one speaker are joined."""
    lines = _lines(doc)
    speakers = {spk for _, _, spk, _ in lines if spk}
    turns: list[list] = []
    for _, _, spk, text in lines:
        text = _prefixed(text, None, speakers)
        if turns and turns[-1][0] == spk:
            turns[-1][1].append(text)
        else:
            turns.append([spk, [text]])
    return "".join(_prefixed(" ".join(t for t in texts if t), spk, set()) + "\n" for spk, texts in turns)


def _tsv(doc: dict) -> str:
    rows = ["start\tend\tspeaker\ttext"]
    for a, b, spk, text in _lines(doc):
        text = " ".join(text.split())  # a tab or newline in the text would break the row
        rows.append(f"{round(1000 * a)}\t{round(1000 * b)}\t{spk or ''}\t{text}")
    return "\n".join(rows) + "\n"


def write_transcript(path: str | os.PathLike, doc: dict, fmt: str | None = None) -> None:
    """Write a labelled transcript atomically as JSON, SRT, VTT, TXT or TSV (by `fmt` or the extension)."""
    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt == "json":
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    elif fmt == "srt":
        text = cues_to_srt(_cues(doc))
    elif fmt == "vtt":
        text = cues_to_vtt(_cues(doc))
    elif fmt == "txt":
        text = _txt(doc)
    elif fmt == "tsv":
        text = _tsv(doc)
    else:
        raise FormatError(f"{path}: transcript output must be one of .{', .'.join(TRANSCRIPT_FORMATS)}")
    atomic_write(path, text)


__all__ = [
    "TRANSCRIPT_FORMATS",
    "assign_speakers",
    "label_transcript",
    "normalise_transcript",
    "parse_cues",
    "read_transcript",
    "split_segment",
    "write_transcript",
]
