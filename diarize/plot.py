"""Speaker timelines: a picture (PNG/SVG/PDF with matplotlib, the `plot` extra) or a self-contained
HTML page (no dependencies): one lane per speaker, overlapped speech marked, times on hover, and a
click plays the recording from that point (the page links the audio by a path relative to itself,
or by a URL given; without either it says so)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from pyannote.core import Annotation

from .errors import OutputError
from .files import atomic_path, atomic_write
from .formats import overlap_regions, turns


class MissingExtra(OutputError):
    """An optional dependency needed for this output is not installed; the message names the extra."""


def plot_timeline(
    annotation: Annotation,
    path: str | os.PathLike,
    duration: float | None = None,
    reference: Annotation | None = None,
    audio: str | os.PathLike | None = None,
    audio_url: str | None = None,
) -> None:
    """Draw the timeline to `path`: HTML for .html/.htm (see `timeline_html`), else a matplotlib image.

    The page plays `audio_url` when given, else the `audio` file by its path relative to the page."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        src = audio_url or _audio_src(audio, path)
        atomic_write(path, timeline_html(annotation, duration, reference, audio_src=src))
        return
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra(
            f"{path}: image plots need matplotlib: pip install 'diarize[plot]' "
            "(or write an .html timeline, which needs nothing)"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("hyp", annotation)] + ([("ref", reference)] if reference is not None else [])
    labels = [(name, lab) for name, ann in rows for lab in sorted(ann.labels())]
    fig, ax = plt.subplots(figsize=(12, 0.4 * max(len(labels), 2) + 1.2))
    cmap = plt.get_cmap("tab10")
    for y, (name, lab) in enumerate(labels):
        ann = dict(rows)[name]
        spans = [(s.start, s.duration) for s in ann.label_timeline(lab)]
        ax.broken_barh(spans, (y - 0.4, 0.8), color=cmap(y % 10))
    # parse_math=False: a "$" in a file name or speaker label is text, not a mathtext formula.
    ax.set_yticks(range(len(labels)), [f"{name}: {lab}" for name, lab in labels], parse_math=False)
    ax.set_xlabel("time (s)")
    end = duration or max((s.end for s in annotation.get_timeline()), default=1.0)
    ax.set_xlim(0, end)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.invert_yaxis()
    ax.set_title(annotation.uri or "", parse_math=False)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def _audio_src(audio: str | os.PathLike | None, page: Path) -> str | None:
    """The audio's path relative to the page's folder as a URL ("../audio/my%20talk.wav"): it keeps
    working when both move together, and names no absolute path. None when there is no such file."""
    if audio is None or not Path(audio).is_file():
        return None
    try:
        rel = os.path.relpath(Path(audio).resolve(), page.resolve().parent)
    except (OSError, ValueError):  # ValueError: another drive (Windows), no relative path exists
        return None
    return quote(Path(rel).as_posix())


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; }}
#timeline {{ position: relative; border-left: 1px solid #999; }}
.lane {{ position: relative; height: 26px; margin: 4px 0; background: #f3f3f3; cursor: pointer; }}
.lane .name {{ position: absolute; left: -11em; width: 10.5em; text-align: right; line-height: 26px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
.turn {{ position: absolute; top: 2px; bottom: 2px; border-radius: 2px; opacity: .85; }}
.overlap {{ position: absolute; top: 0; bottom: 0; background: repeating-linear-gradient(45deg,
  rgba(200,0,0,.35) 0 4px, transparent 4px 8px); pointer-events: none; }}
#cursor {{ position: absolute; top: 0; bottom: 0; width: 1px; background: #c00; display: none; }}
#wrap {{ margin-left: 11em; }}
#axis {{ position: relative; height: 18px; color: #555; font-size: 12px; }}
#axis span {{ position: absolute; transform: translateX(-50%); }}
</style></head>
<body>
<h2>{title}</h2>
<p>{summary}. {hint}</p>
<div id="wrap"><div id="timeline"></div><div id="axis"></div></div>
{audio_tag}
<script id="diarization" type="application/json">{data}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("diarization").textContent);
const T = Math.max(D.duration, 1e-3);
const colors = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
const pct = t => (100 * t / T) + "%";
const fmt = t => {{ const m = Math.floor(t / 60); return m + ":" + (t - 60 * m).toFixed(2).padStart(5, "0"); }};
const tl = document.getElementById("timeline");
const audio = document.getElementById("audio");
const cursor = document.createElement("div"); cursor.id = "cursor";
D.speakers.forEach((spk, i) => {{
  const lane = document.createElement("div"); lane.className = "lane"; lane.dataset.speaker = spk;
  const name = document.createElement("div"); name.className = "name"; name.textContent = spk; lane.appendChild(name);
  D.turns.filter(t => t.speaker === spk).forEach(t => {{
    const el = document.createElement("div"); el.className = "turn";
    el.style.left = pct(t.start); el.style.width = pct(t.end - t.start);
    el.style.background = colors[i % colors.length];
    el.title = spk + ": " + fmt(t.start) + " \\u2013 " + fmt(t.end) + " (" + (t.end - t.start).toFixed(2) + " s)";
    lane.appendChild(el);
  }});
  D.overlap.filter(o => o.speakers.includes(spk)).forEach(o => {{
    const el = document.createElement("div"); el.className = "overlap";
    el.style.left = pct(o.start); el.style.width = pct(o.end - o.start);
    el.title = "overlap: " + o.speakers.join(", ");
    lane.appendChild(el);
  }});
  lane.addEventListener("click", ev => {{
    const r = lane.getBoundingClientRect();
    const t = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1) * T;
    cursor.style.left = pct(t); cursor.style.display = "block";
    tl.dataset.clicked = t.toFixed(3);
    if (audio) {{ audio.currentTime = t; audio.play().catch(() => {{}}); }}
  }});
  tl.appendChild(lane);
}});
tl.appendChild(cursor);
if (audio) audio.addEventListener("timeupdate", () => {{
  cursor.style.left = pct(audio.currentTime); cursor.style.display = "block"; }});
const axis = document.getElementById("axis");
const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find(s => T / s <= 12) || 7200;
for (let t = 0; t <= T + 1e-9; t += step) {{
  const s = document.createElement("span"); s.style.left = pct(t); s.textContent = fmt(t); axis.appendChild(s);
}}
</script>
</body></html>
"""


def timeline_html(
    annotation: Annotation,
    duration: float | None = None,
    reference: Annotation | None = None,
    audio_src: str | None = None,
) -> str:
    """A self-contained HTML page (inline CSS/JS, no network) with one lane per speaker.

    `reference` adds its speakers as "ref: NAME" lanes; `audio_src` (a URL relative to the page)
    adds a player that the lanes seek on click."""
    items = [(a, b, lab) for a, b, lab in turns(annotation)]
    if reference is not None:
        items += [(a, b, f"ref: {lab}") for a, b, lab in turns(reference)]
    speakers = list(dict.fromkeys(lab for _, _, lab in sorted(items)))
    end = duration or max((b for _, b, _ in items), default=1.0)
    data = {
        "uri": annotation.uri,
        "duration": float(end),
        "speakers": speakers,
        "turns": [{"start": round(a, 3), "end": round(b, 3), "speaker": lab} for a, b, lab in items],
        "overlap": [
            {"start": round(a, 3), "end": round(b, 3), "speakers": labs} for a, b, labs in overlap_regions(annotation)
        ],
    }
    speech = sum(b - a for a, b, lab in items if not lab.startswith("ref: "))
    summary = f"{len(annotation.labels())} speakers, {len(annotation)} turns, {speech:.1f} s of turns in {end:.1f} s"
    # "</" would end the <script> element early and "<!--" would swallow the page's script; "\u003c"
    # is "<" to JSON, and "<" only ever appears inside its strings.
    payload = json.dumps(data).replace("<", "\\u003c")
    if audio_src:
        audio_tag = (
            f'<p><audio id="audio" controls preload="metadata" src="{html.escape(audio_src, quote=True)}"></audio></p>'
        )
        hint = "Hover a turn for its times; click anywhere on a lane to play from there."
    else:
        audio_tag = ""
        hint = (
            '<span id="no-audio">Hover a turn for its times; clicking a lane marks a time. No audio: the '
            "recording was not found when the page was written (<code>diarize run --plot-audio URL</code> "
            "links one).</span>"
        )
    return _PAGE.format(
        title=html.escape(str(annotation.uri or "diarization")),
        summary=html.escape(summary),
        hint=hint,
        data=payload,
        audio_tag=audio_tag,
    )


__all__ = ["MissingExtra", "plot_timeline", "timeline_html"]
