"""Cold start of `diarize run` as a whole process on a 30 s file (issue 11, target 2), split into
import, model load and the run itself. Weights must already be cached (`diarize models fetch`).

    python -m benchmarks.speed.cold_start [--wav FILE] [--repeat 3] [--threads 2] [--config general]
    python -m benchmarks.speed.cold_start --repeat 15 --against /path/to/other/checkout

Each repeat is a fresh interpreter; the script prints the median of each part and of the whole
`diarize run` process (wall clock, including interpreter start-up). With `--against`, each repeat also
times the whole process of another checkout of the repository (`git worktree add DIR COMMIT`), in turn with
this one, and prints both medians and the median of the paired differences: one process moves by about
+-0.4 s between runs on a shared 2-core machine, so only runs in turn compare two trees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO

WAV = REPO / "rttm_examples" / "dev00.wav"

# Runs in a fresh interpreter: times each part of what `diarize run` does.
PARTS = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[2]))
from diarize.__main__ import import_pyannote_core_without_notebook
import_pyannote_core_without_notebook()  # as the `diarize` command does first
from diarize.cli import main
from diarize.pipeline import Diarizer
from diarize.config import load_config
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    d = Diarizer(load_config(sys.argv[3]))
t2 = time.perf_counter()
res = d.run(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "model_load": t2 - t1, "run": t3 - t2, "stages": res.timings}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wav", type=Path, default=WAV)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="general", help="preset or YAML [general]")
    ap.add_argument("--against", type=Path, help="another checkout whose whole process is timed in turn")
    args = ap.parse_args(argv)
    if args.against is not None and not (args.against / "diarize" / "__main__.py").is_file():
        ap.error(f"--against {args.against}: not a checkout of this repository (no diarize/__main__.py)")
    parts, whole, other = [], [], []
    with tempfile.TemporaryDirectory() as tmp:

        def whole_process(checkout: Path) -> float:
            """Wall time of `python -m diarize run` with `checkout`'s package (-m puts the working directory first)."""
            cmd = [sys.executable, "-m", "diarize", "run", str(args.wav.resolve()), "--out", f"{tmp}/x.rttm"]
            cmd += ["--quiet", "--threads", str(args.threads), "--config", args.config]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=checkout)
            return time.perf_counter() - t0

        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", PARTS, str(args.wav), str(args.threads), args.config],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            parts.append(json.loads(out.stdout.strip().splitlines()[-1]))
            whole.append(whole_process(REPO))
            if args.against is not None:
                other.append(whole_process(args.against))
    for key in ("import", "model_load", "run"):
        print(f"{key:10s} {statistics.median(p[key] for p in parts):6.2f} s")
    stages = {k: statistics.median(p["stages"].get(k, 0.0) for p in parts) for k in parts[0]["stages"]}
    print("run stages " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    print(
        f"whole `diarize run` process: median {statistics.median(whole):.2f} s over {args.repeat} "
        f"({', '.join(f'{w:.2f}' for w in whole)})"
    )
    if args.against is not None:
        diffs = [w - o for w, o in zip(whole, other)]
        print(
            f"{args.against}, in turn: median {statistics.median(other):.2f} s "
            f"({', '.join(f'{o:.2f}' for o in other)}); this tree minus it, median of the pairs: "
            f"{statistics.median(diffs):+.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
