"""Speed of transcript alignment (diarize.align): the library on a synthetic 3-hour session, and
`diarize align` as a whole process on a 30 s transcript (start-up bound).

3 hours of speech at 150 words per minute (27,000 words, each 0.1-0.6 s) against 8 speakers' turns
of 1-20 s with some overlap; times `assign_speakers` on the words and `label_transcript` on a
whisper-style document (segments of ~12 words), best of 5. Then the wall time of the `diarize`
command (the console script next to this Python, else `python -m diarize`), `--runs` times each:
`diarize align --help`, and `diarize align` of a 30 s whisper JSON (75 words) against its RTTM,
written as SRT; median and best. It also says whether the command imported torch (it must not).

    python -m benchmarks.speed.align_speed [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment


from diarize.align import assign_speakers, label_transcript


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


def command() -> list[str]:
    """The `diarize` console script of this Python's environment, else `python -m diarize`."""
    script = Path(sys.executable).with_name("diarize")
    return [str(script)] if script.exists() else [sys.executable, "-m", "diarize"]


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def startup(runs: int) -> None:
    ann, words, doc = session(hours=30 / 3600, speakers=2)
    folder = Path(tempfile.mkdtemp(prefix="align_speed-"))
    try:
        from diarize.rttm import write_rttm

        write_rttm(folder / "d.rttm", ann)
        (folder / "t.json").write_text(json.dumps(doc))
        cmd = command()
        align = [*cmd, "align", str(folder / "t.json"), str(folder / "d.rttm"), "--out", str(folder / "t.srt")]
        for name, argv in (("diarize align --help", [*cmd, "align", "--help"]), ("diarize align (30 s)", align)):
            t = wall_times(argv, runs)
            print(f"{name}: median {statistics.median(t):.3f} s, best {min(t):.3f} s ({runs} runs)")
        probe = "import sys; from diarize.__main__ import main; main(sys.argv[1:]); print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", probe, *align[len(cmd) :]], capture_output=True, text=True)
        print(f"{len(words)} words, {len(doc['segments'])} segments; torch imported: {out.stdout.strip()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="process runs per command [10]")
    args = parser.parse_args()
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
    startup(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
