"""Diarization output formats: RTTM, JSON, SRT, VTT and CSV writers, and readers for RTTM and our JSON.

JSON (``FORMAT_VERSION`` 1)::

    {"version": 1, "uri": "meeting", "duration": 30.0,
     "speakers": [{"label": "speaker_0", "speech": 12.3, "centroid": [...]}],   # centroid only when asked
     "turns":    [{"start": 0.5, "end": 3.2, "speaker": "speaker_0"}],
     "overlap":  [{"start": 2.9, "end": 3.2, "speakers": ["speaker_0", "speaker_1"]}]}

SRT / VTT carry one cue per turn with the speaker label as its text; CSV has a header
``uri,start,end,duration,speaker``. `exclusive` turns an annotation read from a file into one
speaker at a time; a pipeline result carries a better one (`DiarizationResult.exclusive_speaker_diarization`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

from .errors import FormatError, short
from .files import atomic_write, load_json, read_text
from .rttm import MAX_SECONDS, read_rttm, rttm_lines, rttm_token

FORMATS = ("rttm", "json", "srt", "vtt", "csv")
LABEL_STYLES = ("diarize", "pyannote")  # speaker_0, speaker_1 ... or pyannote's SPEAKER_00, SPEAKER_01 ...
FORMAT_VERSION = 1


def format_from_path(path: str | os.PathLike) -> str | None:
    """The format a file name asks for by its extension ("m.vtt" -> "vtt"), or None."""
    ext = Path(path).suffix.lower().lstrip(".")
    return ext if ext in FORMATS else None


def parse_formats(text: str) -> list[str]:
    """ "rttm,json" -> ["rttm", "json"]; raises FormatError naming an unknown one."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise FormatError(f"unknown output format {bad[0] if bad else text!r} (known: {', '.join(FORMATS)})")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- turn algebra
def turns(annotation: Annotation) -> list[tuple[float, float, str]]:
    """(start, end, label) of every turn, sorted by start then label."""
    out = [(float(s.start), float(s.end), str(lab)) for s, _, lab in annotation.itertracks(yield_label=True)]
    return sorted(out, key=lambda t: (t[0], t[1], t[2]))


def _elementary(annotation: Annotation) -> Iterable[tuple[float, float, list[tuple[float, str]]]]:
    """Sweep over the cuts between all turn boundaries: (start, end, [(turn length, label)...])
    for each piece where at least one turn is active."""
    items = turns(annotation)
    cuts = sorted({t for s, e, _ in items for t in (s, e)})
    events: list[tuple[float, int, int]] = []  # (time, +1 start / -1 end, turn index)
    for i, (s, e, _) in enumerate(items):
        events += [(s, 1, i), (e, -1, i)]
    events.sort(key=lambda x: (x[0], x[1]))
    active: set[int] = set()
    j = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        while j < len(events) and events[j][0] <= a:
            t, kind, i = events[j]
            (active.add if kind > 0 else active.discard)(i)
            j += 1
        if active:
            yield a, b, [(items[i][1] - items[i][0], items[i][2]) for i in active]


def overlap_regions(annotation: Annotation) -> list[tuple[float, float, list[str]]]:
    """(start, end, speakers) where two or more speakers talk at once, merged when contiguous."""
    out: list[tuple[float, float, list[str]]] = []
    for a, b, act in _elementary(annotation):
        speakers = sorted({lab for _, lab in act})
        if len(speakers) < 2:
            continue
        if out and abs(out[-1][1] - a) < 1e-9 and out[-1][2] == speakers:
            out[-1] = (out[-1][0], b, speakers)
        else:
            out.append((a, b, speakers))
    return out


def exclusive(annotation: Annotation) -> Annotation:
    """One speaker at a time: where turns overlap, the speaker whose turn there is longest keeps the
    time (an overlap is mostly a short interjection into a longer turn), then touching turns of one
    speaker are merged. The fallback for annotations without the pipeline's own exclusive view
    (`DiarizationResult.exclusive_speaker_diarization`, which keeps the speaker clustering heard).

        input       A |----------------|
                    B        |---|
        exclusive   A |----------------|
    """
    ann = Annotation(uri=annotation.uri)
    for a, b, act in _elementary(annotation):
        label = max(act, key=lambda x: (x[0], x[1]))[1]
        ann[Segment(a, b), len(ann)] = label
    return ann.support()


def speech_per_speaker(annotation: Annotation) -> dict[str, float]:
    """Seconds of speech per label (overlapped time counts for each speaker)."""
    return {str(lab): float(annotation.label_timeline(lab).support().duration()) for lab in annotation.labels()}


def relabel(annotation: Annotation, mapping: dict[str, str]) -> Annotation:
    """A copy with labels renamed; labels not in `mapping` are kept."""
    return annotation.rename_labels({k: v for k, v in mapping.items() if k in annotation.labels()})


def pyannote_labels(labels: Iterable[str]) -> dict[str, str]:
    """Mapping to pyannote's style: speaker names in first-appearance order -> SPEAKER_00, SPEAKER_01, ...

    `labels` in the order to number them (e.g. `[lab for _, _, lab in turns(ann)]`)."""
    out: dict[str, str] = {}
    for lab in labels:
        out.setdefault(lab, f"SPEAKER_{len(out):02d}")
    return out


# --------------------------------------------------------------------------- writers
def _clock(seconds: float, sep: str) -> str:
    if not (math.isfinite(seconds) and seconds <= MAX_SECONDS):
        raise FormatError(f"time {seconds} s is beyond {MAX_SECONDS:.0e} seconds; cannot write it as a subtitle")
    if seconds < 0:
        warnings.warn(f"time {seconds} s is before the start; written as 00:00:00", stacklevel=3)
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt_time(seconds: float) -> str:
    """SRT timestamp, "HH:MM:SS,mmm"."""
    return _clock(seconds, ",")


def vtt_time(seconds: float) -> str:
    """WebVTT timestamp, "HH:MM:SS.mmm"."""
    return _clock(seconds, ".")


_ARROW = re.compile(r"--+>")


def cue_text(text: str) -> str:
    """`text` folded to one cue line: whitespace runs (newlines, blank lines) become one space and
    "-->" becomes "->", so a transcript or a speaker name can never end a cue or start a fake one."""
    return _ARROW.sub("->", " ".join(str(text).split()))


def cues_to_srt(cues: Iterable[tuple[float, float, str]]) -> str:
    """SRT text from (start, end, text) cues; texts are folded with `cue_text`."""
    return "".join(
        f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{cue_text(text)}\n\n" for i, (a, b, text) in enumerate(cues, 1)
    )


def cues_to_vtt(cues: Iterable[tuple[float, float, str]]) -> str:
    """WebVTT text from (start, end, text) cues; texts are folded with `cue_text`."""
    return "WEBVTT\n\n" + "".join(f"{vtt_time(a)} --> {vtt_time(b)}\n{cue_text(text)}\n\n" for a, b, text in cues)


def to_json(
    annotation: Annotation, duration: float | None = None, centroids: dict[str, np.ndarray] | None = None
) -> dict:
    """The JSON document (a dict) described in the module docstring."""
    speech = speech_per_speaker(annotation)
    order = list(dict.fromkeys(lab for _, _, lab in turns(annotation)))
    speakers = []
    for lab in order:
        entry: dict = {"label": lab, "speech": round(speech[lab], 3)}
        if centroids is not None and lab in centroids:
            entry["centroid"] = [round(float(x), 6) for x in centroids[lab]]
        speakers.append(entry)
    return {
        "version": FORMAT_VERSION,
        "uri": annotation.uri,
        "duration": None if duration is None else round(float(duration), 3),
        "speakers": speakers,
        "turns": [{"start": round(a, 3), "end": round(b, 3), "speaker": lab} for a, b, lab in turns(annotation)],
        "overlap": [
            {"start": round(a, 3), "end": round(b, 3), "speakers": labs} for a, b, labs in overlap_regions(annotation)
        ],
    }


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def dump_json(doc: dict) -> str:
    """JSON text with one line per top-level key and per list item (readable, diff-friendly).

    A name from a non-UTF-8 file name (`caf\\udce9`) is written as the JSON escape `\\udce9`: the
    file stays valid UTF-8 and reads back as the same str."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n".join("  " + json.dumps(x, ensure_ascii=False) for x in value)
            parts.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def render(
    fmt: str, annotation: Annotation, duration: float | None = None, centroids: dict[str, np.ndarray] | None = None
) -> str:
    """The text of `annotation` in format `fmt` (one of FORMATS)."""
    if fmt == "rttm":
        return "".join(rttm_lines(annotation))
    if fmt == "json":
        return dump_json(to_json(annotation, duration, centroids))
    if fmt == "srt":
        return cues_to_srt(turns(annotation))
    if fmt == "vtt":
        return cues_to_vtt(turns(annotation))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["uri", "start", "end", "duration", "speaker"])
        for a, b, lab in turns(annotation):
            w.writerow([annotation.uri, f"{a:.3f}", f"{b:.3f}", f"{b - a:.3f}", lab])
        return buf.getvalue()
    raise FormatError(f"unknown output format {fmt!r} (known: {', '.join(FORMATS)})")


def write(
    path: str | os.PathLike,
    annotation: Annotation,
    fmt: str | None = None,
    duration: float | None = None,
    centroids: dict[str, np.ndarray] | None = None,
) -> None:
    """Write `annotation` atomically; the format is `fmt` or the file's extension."""
    fmt = fmt or format_from_path(path)
    if fmt is None:
        raise FormatError(f"{path}: cannot tell the output format from the extension (known: {', '.join(FORMATS)})")
    atomic_write(path, render(fmt, annotation, duration, centroids))


# --------------------------------------------------------------------------- a result as written
def _rename(
    annotation: Annotation, alone: Annotation, centroids: dict[str, np.ndarray], mapping: dict[str, str]
) -> tuple[Annotation, Annotation, dict[str, np.ndarray]]:
    return relabel(annotation, mapping), relabel(alone, mapping), {mapping.get(k, k): v for k, v in centroids.items()}


def output_labels(
    annotation: Annotation,
    alone: Annotation | None = None,
    centroids: dict[str, np.ndarray] | None = None,
    names: dict[str, str] | None = None,
    style: str = "diarize",
    exclusive_only: bool = False,
) -> tuple[Annotation, Annotation, dict[str, np.ndarray]]:
    """(annotation, one-speaker-at-a-time view, centroids) under the labels every output shows.

    `alone` is the exclusive view (None: `exclusive(annotation)`). Renamed alike: enrolled `names`
    first (cluster label -> person, `speakers.identify`), then `style` "pyannote" numbers the
    clusters left unnamed SPEAKER_00, ... in order of first turn; every label is made one RTTM token
    (enrolled names already are). `exclusive_only` (--exclusive) makes the exclusive view the annotation.
    """
    alone = alone if alone is not None else exclusive(annotation)
    views = annotation, alone, dict(centroids or {})
    if names is not None:
        views = _rename(*views, names)
    if style == "pyannote":
        views = _rename(*views, pyannote_labels(lab for _, _, lab in turns(views[0]) if lab.startswith("speaker_")))
    if exclusive_only:
        views = views[1], views[1], views[2]
    tokens = {lab: rttm_token(lab) for lab in set(views[0].labels()) | set(views[1].labels())}
    return _rename(*views, tokens)


def write_all(
    paths: list[Path],
    fmts: list[str],
    annotation: Annotation,
    alone: Annotation,
    duration: float | None = None,
    centroids: dict[str, np.ndarray] | None = None,
) -> None:
    """Write format `fmts[i]` to `paths[i]`. Subtitles show one cue at a time, so SRT and VTT take the
    exclusive view `alone`; the other formats take `annotation`."""
    for fmt, path in zip(fmts, paths):
        write(path, alone if fmt in ("srt", "vtt") else annotation, fmt, duration=duration, centroids=centroids)


# --------------------------------------------------------------------------- readers
def from_json(doc: dict, source: str = "<json>") -> tuple[Annotation, dict]:
    """(annotation, document) from our JSON; raises FormatError on a malformed document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("turns"), list):
        raise FormatError(f"{source}: not a diarize JSON document (needs a 'turns' list)")
    uri = doc.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise FormatError(f"{source}: 'uri' must be a string, got {short(uri, 40)}")
    ann = Annotation(uri=uri or Path(source).stem)
    for i, t in enumerate(doc["turns"]):
        try:
            a, b, lab = float(t["start"]), float(t["end"]), str(t["speaker"])
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
            raise FormatError(f"{source}: turns[{i}] needs numeric 'start', 'end' and a 'speaker'") from None
        if not (0 <= a <= b <= MAX_SECONDS):
            raise FormatError(f"{source}: turns[{i}]: need 0 <= start <= end <= {MAX_SECONDS:.0e}, got {a} {b}")
        if b > a:
            ann[Segment(a, b), len(ann)] = lab
    return ann, doc


def read_json(path: str | os.PathLike) -> tuple[Annotation, dict]:
    """Our JSON file -> (annotation, document); centroids, if any, are in document["speakers"]."""
    return from_json(load_json(read_text(path, "diarization JSON"), str(path)), str(path))


def read_diarization(path: str | os.PathLike) -> dict[str, Annotation]:
    """Annotations by file id from an RTTM (.rttm) or our JSON (.json) file."""
    if Path(path).suffix.lower() == ".json":
        ann, _ = read_json(path)
        return {ann.uri: ann}
    return read_rttm(path)


__all__ = [
    "FORMATS",
    "LABEL_STYLES",
    "exclusive",
    "format_from_path",
    "from_json",
    "output_labels",
    "overlap_regions",
    "parse_formats",
    "pyannote_labels",
    "read_diarization",
    "read_json",
    "relabel",
    "render",
    "speech_per_speaker",
    "to_json",
    "turns",
    "write",
    "write_all",
]
