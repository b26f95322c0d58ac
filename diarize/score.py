"""DER / JER scoring of hypothesis RTTM against reference RTTM, on pyannote.metrics.

Collar convention: `collar` here is seconds on EACH side of every reference boundary,
as in NeMo and md-eval (`-c 0.25`). pyannote's `collar` is the total width, so we pass
2 * collar to it. The model card's "forgiving" setting is collar 0.25 + overlap ignored.
Without a UEM, the scored region of a file is the union extent of reference and
hypothesis (pyannote's default).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pyannote.core import Annotation, Timeline

from .rttm import FormatError, read_rttm

# (collar on each side in seconds, ignore overlapped speech) of the presets `diarize score --preset` offers.
COLLAR_PRESETS = {"forgiving": (0.25, True), "full": (0.0, False)}


def _rate(errors: float, total: float) -> float:
    # pyannote.metrics' convention: 0 / 0 is 0, but x / 0 is 1 (a hypothesis on a reference without speech).
    return errors / total if total > 0 else (1.0 if errors > 0 else 0.0)


@dataclass
class FileScore:
    total: float  # scored reference speech, seconds
    miss: float  # seconds
    false_alarm: float
    confusion: float
    jer: float | None = None

    @property
    def der(self) -> float:
        """Error / scored reference speech. With no reference speech, any error is 100 % (pyannote.metrics)."""
        return _rate(self.miss + self.false_alarm + self.confusion, self.total)

    def percent(self) -> dict[str, float]:
        pct = lambda x: 100.0 * _rate(x, self.total)  # noqa: E731
        return {
            "der": 100.0 * self.der,
            "miss": pct(self.miss),
            "false_alarm": pct(self.false_alarm),
            "confusion": pct(self.confusion),
            "total": self.total,
        }


@dataclass
class ScoreReport:
    files: dict[str, FileScore] = field(default_factory=dict)
    collar: float = 0.0
    ignore_overlap: bool = False

    @property
    def total(self) -> FileScore:
        """Pooled over files (sum of error seconds / sum of scored seconds), like NeMo and md-eval."""
        fs = list(self.files.values())
        jers = [f.jer for f in fs if f.jer is not None]
        return FileScore(
            sum(f.total for f in fs),
            sum(f.miss for f in fs),
            sum(f.false_alarm for f in fs),
            sum(f.confusion for f in fs),
            sum(jers) / len(jers) if jers else None,
        )

    def to_json(self) -> dict:
        return {"files": {uri: f.percent() for uri, f in self.files.items()}, "total": self.total.percent()}

    def table(self) -> str:
        head = f"{'file':30s} {'DER%':>7s} {'miss%':>7s} {'FA%':>7s} {'conf%':>7s} {'JER%':>7s} {'scored s':>9s}"
        lines = [f"collar {self.collar:g} s each side, overlap {'ignored' if self.ignore_overlap else 'scored'}", head]
        for uri, f in list(self.files.items()) + [("TOTAL (pooled)", self.total)]:
            p = f.percent()
            jer = f"{100 * f.jer:7.2f}" if f.jer is not None else f"{'-':>7s}"
            lines.append(
                f"{uri:30s} {p['der']:7.2f} {p['miss']:7.2f} {p['false_alarm']:7.2f} {p['confusion']:7.2f} "
                f"{jer} {f.total:9.2f}"
            )
        return "\n".join(lines)


def score(
    refs: dict[str, Annotation],
    hyps: dict[str, Annotation],
    uems: dict[str, Timeline] | None = None,
    collar: float = 0.0,
    ignore_overlap: bool = False,
    jer: bool = True,
) -> ScoreReport:
    """Score every reference file; a file without hypothesis counts as all missed."""
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise FormatError(f"hypothesis has file id(s) not in the reference: {', '.join(extra[:5])}")
    if not math.isfinite(collar) or collar < 0:
        raise FormatError(f"collar must be a finite number >= 0, got {collar}")
    missing = sorted(uri for uri in set(refs) - set(hyps) if len(refs[uri]))
    if missing:
        what = "has no turns at all" if not hyps else f"has no turns for {len(missing)} of {len(refs)} file(s)"
        warnings.warn(
            f"hypothesis {what} ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): scored as all missed",
            stacklevel=2,
        )
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate  # slow to import: only here

    report = ScoreReport(collar=collar, ignore_overlap=ignore_overlap)
    der = DiarizationErrorRate(collar=2 * collar, skip_overlap=ignore_overlap)
    jer_metric = JaccardErrorRate(collar=2 * collar, skip_overlap=ignore_overlap)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
        for uri in sorted(refs):
            ref = refs[uri]
            hyp = hyps.get(uri, Annotation(uri=uri))
            uem = uems.get(uri) if uems else None
            if uems and uem is None:
                raise FormatError(f"UEM has no region for file id {uri!r}")
            c = der(ref, hyp, uem=uem, detailed=True)
            j = jer_metric(ref, hyp, uem=uem) if jer and len(ref.labels()) else None
            report.files[uri] = FileScore(c["total"], c["missed detection"], c["false alarm"], c["confusion"], j)
    return report


def load_rttms(path: Path) -> dict[str, Annotation]:
    """One RTTM file, or every `*.rttm` (any case: `.RTTM` too) of a folder; a folder without one is an error."""
    if path.is_dir():
        out: dict[str, Annotation] = {}
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".rttm" and p.is_file())
        if not files:
            raise FormatError(f"{path}: folder has no .rttm files")
        for p in files:
            for uri, ann in read_rttm(p).items():
                if uri in out:
                    raise FormatError(f"{p}: file id {uri!r} appears in more than one RTTM")
                out[uri] = ann
        return out
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    return read_rttm(path)
