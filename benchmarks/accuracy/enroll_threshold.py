"""Cosine threshold for naming diarization clusters after enrolled speakers (`diarize run --speakers`).

Each trial `label enroll.wav test.wav` is scored the way `diarize` uses it: the enrolled side is
`diarize enroll`'s centroid of the whole enrol file; the test side is the centroid
`DiarizationResult.centroids` gives after diarizing the test file with the default pipeline
(config "general", one speaker). Prints EER, the error-minimising threshold (midpoint of the
best range) and the score ranges.

    python -m benchmarks.accuracy.enroll_threshold ../shared/data/speakers/trials.txt --model campplus
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


from benchmarks.accuracy.eer import _trial_root, eer_and_min_dcf
from diarize.audio import load_audio
from diarize.pipeline import Diarizer
from diarize.speakers import enroll_embeddings
from diarize.verify import embed_waveform


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Threshold (accept score >= t) with the fewest errors (misses + false accepts), taken in the middle
    of the widest gap among the equally good cut points; and that error count."""
    order = np.argsort(scores)
    s, lab = scores[order], labels[order].astype(bool)
    # Cut between s[i-1] and s[i]: reject s[:i], accept s[i:].
    misses = np.concatenate([[0], np.cumsum(lab)])
    false_acc = (~lab).sum() - np.concatenate([[0], np.cumsum(~lab)])
    errors = misses + false_acc
    best = np.flatnonzero(errors == errors.min())
    lo = np.where(best > 0, s[np.maximum(best - 1, 0)], s[0] - 0.1)
    hi = np.where(best < len(s), s[np.minimum(best, len(s) - 1)], s[-1] + 0.1)
    k = int(np.argmax(hi - lo))
    return float((lo[k] + hi[k]) / 2), int(errors.min())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trials", type=Path)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    lines = [ln.split() for ln in args.trials.read_text().splitlines() if ln.strip()]
    root = _trial_root(args.trials, [lines[0][1]])
    d = Diarizer.from_config(args.config, model=args.model, device="cpu")
    t0 = time.perf_counter()
    enrolled: dict[str, np.ndarray] = {}
    tested: dict[str, np.ndarray | None] = {}
    for _, a, b in lines:
        if a not in enrolled:
            enrolled[a] = enroll_embeddings([embed_waveform(d.model, load_audio(root / a))])
        if b not in tested:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = d.run(root / b, num_speakers=1)
            tested[b] = next(iter(res.centroids.values()), None)
    kept = [(int(lab), a, b) for lab, a, b in lines if tested[b] is not None]
    scores = np.array([float(enrolled[a] @ tested[b]) for _, a, b in kept])
    labels = np.array([lab for lab, _, _ in kept])
    eer, dcf = eer_and_min_dcf(scores, labels)
    thr, errs = best_threshold(scores, labels)
    tgt, non = scores[labels == 1], scores[labels == 0]
    print(
        f"model={d.model.name} config={args.config} trials={len(kept)} (target {len(tgt)}, non-target {len(non)}; "
        f"{len(lines) - len(kept)} without speech) EER={100 * eer:.2f}% minDCF(p=0.01)={dcf:.3f}"
    )
    print(
        f"target cosine min={tgt.min():.3f} median={np.median(tgt):.3f}; non-target max={non.max():.3f} "
        f"median={np.median(non):.3f}"
    )
    print(
        f"threshold={thr:.3f} errors={errs} (misses {(tgt < thr).sum()}, false accepts {(non >= thr).sum()}) "
        f"time={time.perf_counter() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
