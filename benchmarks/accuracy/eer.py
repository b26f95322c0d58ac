"""Speaker-verification EER and minDCF on a trials list (`label enroll.wav test.wav` per line).

python -m benchmarks.accuracy.eer ../shared/data/speakers/trials.txt --model campplus
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


from diarize.audio import load_audio
from diarize.models import load_model
from diarize.verify import embed_waveform


def eer_and_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01) -> tuple[float, float]:
    """Equal error rate and normalised minimum detection cost (C_miss = C_fa = 1)."""
    order = np.argsort(-scores)
    labels = labels[order].astype(bool)
    n_t, n_n = labels.sum(), (~labels).sum()
    # Threshold after each sorted score: accept the top i trials.
    fa = np.concatenate([[0], np.cumsum(~labels)]) / n_n
    miss = 1 - np.concatenate([[0], np.cumsum(labels)]) / n_t
    i = np.argmin(np.abs(miss - fa))
    eer = (miss[i] + fa[i]) / 2
    dcf = p_target * miss + (1 - p_target) * fa
    return float(eer), float(dcf.min() / min(p_target, 1 - p_target))


def _trial_root(trials: Path, first: list[str]) -> Path:
    """Trial paths are relative to the trials file's folder or to its parent (shared/data layout)."""
    for root in (trials.parent, trials.parent.parent):
        if not first or (root / first[0]).exists():
            return root
    return trials.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trials", type=Path)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--crop",
        type=float,
        default=None,
        metavar="SECONDS",
        help="use only the middle SECONDS of each utterance (harder, diarization-like trials)",
    )
    args = ap.parse_args(argv)
    root = _trial_root(
        args.trials, [line.split()[1] for line in args.trials.read_text().splitlines() if line.strip()][:1]
    )
    trials = [line.split() for line in args.trials.read_text().splitlines() if line.strip()]
    model = load_model(args.model, args.device)
    t0 = time.perf_counter()
    cache: dict[str, np.ndarray] = {}
    for _, a, b in trials:
        for p in (a, b):
            if p not in cache:
                x = load_audio(root / p)
                if args.crop:
                    n = int(args.crop * 16000)
                    x = x[max(0, (len(x) - n) // 2) :][:n]
                e = embed_waveform(model, x)
                cache[p] = e / np.linalg.norm(e)
    scores = np.array([float(cache[a] @ cache[b]) for _, a, b in trials])
    labels = np.array([int(lab) for lab, _, _ in trials])
    eer, dcf = eer_and_min_dcf(scores, labels)
    crop = f" crop={args.crop}s" if args.crop else ""
    print(
        f"model={model.name}{crop} trials={len(trials)} (target {labels.sum()}, non-target {(1 - labels).sum()}) "
        f"EER={100 * eer:.2f}% minDCF(p=0.01)={dcf:.3f} files={len(cache)} time={time.perf_counter() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
