"""Speed of transcript alignment (diarize.align) on a synthetic 3-hour session.

3 hours of speech at 150 words per minute (27,000 words, each 0.1-0.6 s) against 8 speakers' turns
of 1-20 s with some overlap; times `assign_speakers` on the words and `label_transcript` on a
whisper-style document (segments of ~12 words), best of 5.

    python benchmarks/align_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diarize.align import assign_speakers, label_transcript  # noqa: E402


def session(hours: float = 3.0, speakers: int = 8, seed: int = 0) -> tuple[Annotation, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    total = hours * 3600
    ann, t = Annotation(uri="bench"), 0.0
    while t < total:
        d = rng.uniform(1, 20)
        ann[Segment(t, min(t + d, total)), len(ann)] = f"speaker_{rng.integers(speakers)}"
        t += d + rng.uniform(-0.5, 1.0)  # some overlap, some gaps
    n = int(hours * 60 * 150)
    starts = np.sort(rng.uniform(0, total, n))
    words = np.stack([starts, starts + rng.uniform(0.1, 0.6, n)], axis=1)
    segments = [
        {
            "start": float(words[i, 0]),
            "end": float(words[min(i + 11, n - 1), 1]),
            "text": "...",
            "words": [{"word": " w", "start": float(a), "end": float(b)} for a, b in words[i : i + 12]],
        }
        for i in range(0, n, 12)
    ]
    return ann, words, {"segments": segments}


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ann, words, doc = session()
    t_words = best_of(lambda: assign_speakers(words, ann))
    t_doc = best_of(lambda: label_transcript(doc, ann))
    print(
        f"3 h session: {len(ann)} turns, {len(ann.labels())} speakers, {len(words)} words, "
        f"{len(doc['segments'])} segments"
    )
    print(
        f"assign_speakers(words): {1000 * t_words:.1f} ms; label_transcript(whisper doc): {1000 * t_doc:.1f} ms "
        "(best of 5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
