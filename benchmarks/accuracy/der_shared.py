"""DER on every multi-speaker recording in ../shared/data/diarization.

Oracle VAD (from the reference) and system VAD, unknown and known speaker count.
Forgiving = 0.25 s collar each side + overlap ignored (pyannote collar=0.5, skip_overlap=True);
full = no collar, overlap scored.

    python -m benchmarks.accuracy.der_shared [--model campplus] [--config general]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path


from pyannote.metrics.diarization import DiarizationErrorRate

from benchmarks import DATA
from diarize import Diarizer, load_config
from diarize.rttm import read_rttm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    d = Diarizer(load_config(args.config), model=args.model)
    rows = list(csv.DictReader(open(args.data / "diarization" / "manifest.tsv"), delimiter="\t"))
    print(f"model={d.model.name} config={args.config}")
    print(
        f"{'file':24s} {'dur':>5s} {'spk':>3s} | {'vad':6s} {'count':7s} {'est':>3s} {'forgiving':>9s} {'full':>6s} {'rtf':>6s}"
    )
    totals: dict[tuple[str, str], list[DiarizationErrorRate]] = {}
    for row in rows:
        wav, ref_path = args.data / row["wav"], args.data / row["rttm"]
        ref = read_rttm(ref_path)[wav.stem]
        n_ref = len(ref.labels())
        for vad in ("oracle", "system"):
            for count in ("unknown", "known"):
                t0 = time.perf_counter()
                res = d.run(
                    wav, oracle_vad=ref if vad == "oracle" else None, num_speakers=n_ref if count == "known" else None
                )
                rtf = (time.perf_counter() - t0) / res.duration
                mets = totals.setdefault(
                    (vad, count), [DiarizationErrorRate(collar=0.5, skip_overlap=True), DiarizationErrorRate()]
                )
                fg, full = mets[0](ref, res.annotation), mets[1](ref, res.annotation)
                print(
                    f"{wav.stem:24s} {res.duration:5.1f} {n_ref:3d} | {vad:6s} {count:7s} {res.num_speakers:3d} "
                    f"{100 * fg:8.2f}% {100 * full:5.2f}% {rtf:6.3f}"
                )
    print("pooled over files:")
    for (vad, count), (fg, full) in totals.items():
        print(f"  {vad:6s} {count:7s} forgiving {100 * abs(fg):6.2f}%  full {100 * abs(full):6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
