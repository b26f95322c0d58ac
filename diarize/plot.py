"""Speaker timeline picture (one row per speaker) with matplotlib."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pyannote.core import Annotation

from .files import atomic_path


def plot_timeline(annotation: Annotation, path: str | os.PathLike, duration: float | None = None,
                  reference: Annotation | None = None) -> None:
    import matplotlib

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
    ax.set_yticks(range(len(labels)), [f"{name}: {lab}" for name, lab in labels])
    ax.set_xlabel("time (s)")
    end = duration or max((s.end for s in annotation.get_timeline()), default=1.0)
    ax.set_xlim(0, end)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.invert_yaxis()
    ax.set_title(annotation.uri or "")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
