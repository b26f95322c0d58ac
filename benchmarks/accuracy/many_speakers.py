"""Speaker count on recordings with more speakers than the preset's maximum (the 60 min speed recording).

benchmarks/speed/speed.py's dense recording (`build_recording`: the 57 LibriSpeech speakers of
../shared/data/speakers, utterances one after another with 0.3 s pauses, cycling) is embedded once with
the preset's VAD and `embedding.mode=fast` on the CPU, and saved (`--cache`: `pipeline.save_embedded`, every scale's windows and
embeddings and the speech regions). Then, for each prefix of the recording
(`--prefixes` minutes: the scale windows ending before it), the clustering runs with the preset's
maximum and each `--max-speakers`, and prints: the reference speakers in the prefix, NME-SC's eigengap
count over k <= max (what the count started from), the final count, window accuracy against the
LibriSpeech speaker of each base window (best one-to-one mapping), whether the cap warning was given,
and the clustering seconds.

    python -m benchmarks.accuracy.many_speakers --minutes 60 --cache /tmp/dense60.npz [--prefixes 5,9,20,60] [--max-speakers 8,64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path


import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmarks import DATA
from benchmarks.speed.speed import build_recording
from diarize import load_config, pipeline
from diarize.affinity import fused_affinity
from diarize.audio import load_audio
from diarize.config import SpeakerCount, model_clustering
from diarize.models import load_model
from diarize.spectral import nme_sc
from diarize.windows import ScaleWindows


def reference_turns(minutes: float) -> tuple[np.ndarray, np.ndarray]:
    """(starts (K,), speaker ids (K,)) of `build_recording(minutes)`, following the same loop."""
    files = sorted((DATA / "speakers").glob("librispeech_*/*/*.wav"))
    names = sorted({f.parent.name for f in files})
    starts, spk, total, end = [], [], 0, int(minutes * 60 * 16000)
    while total < end:
        for f in files:
            starts.append(total / 16000)
            spk.append(names.index(f.parent.name))
            total += len(load_audio(f)) + int(0.3 * 16000)
            if total >= end:
                break
    return np.array(starts), np.array(spk)


def embed(minutes: float, cache: Path, preset: str) -> None:
    """The pipeline's speech and embedding stages on the recording, saved to `cache`."""
    cfg = load_config(preset, ["embedding.mode=fast"])
    source = pipeline.open_source(build_recording(minutes), 16000, uri=f"dense{minutes:g}")
    speech = pipeline.speech(source, cfg)
    pipeline.save_embedded(pipeline.embed(source, speech, load_model(cfg.embedding.model, "cpu"), cfg), cache)


def prefix(embedded: pipeline.Embedded, minutes: float) -> pipeline.Embedded:
    """The windows of `embedded` that end within the first `minutes`."""
    scales, embs = [], []
    for s, e in zip(embedded.scales, embedded.embeddings):
        keep = s.ends <= minutes * 60 + 1e-9
        scales.append(ScaleWindows(s.window, s.shift, s.weight, s.starts[keep], s.ends[keep]))
        embs.append(e[keep])
    return pipeline.Embedded(embedded.speech, scales, embs, embedded.model_name, embedded.device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--cache", type=Path, required=True, help="npz of the embeddings (written if missing)")
    ap.add_argument("--config", default="general")
    ap.add_argument("--prefixes", default="", help="minutes, comma-separated [the whole recording]")
    ap.add_argument("--max-speakers", default="", help="comma-separated; the preset's maximum always runs")
    args = ap.parse_args(argv)
    if not args.cache.exists():
        t0 = time.perf_counter()
        embed(args.minutes, args.cache, args.config)
        print(f"embedded {args.minutes} min in {time.perf_counter() - t0:.0f} s -> {args.cache}")
    embedded = pipeline.load_embedded(args.cache)
    ref_start, ref_spk = reference_turns(args.minutes)
    model = embedded.model_name
    full_cfg = load_config(args.config)
    cfg = model_clustering(full_cfg.clustering, model)
    maxima = [None] + [int(m) for m in args.max_speakers.split(",") if m]
    print(f"model={model} config={args.config} threads={os.environ.get('OMP_NUM_THREADS', '?')}")
    for minutes in [float(m) for m in args.prefixes.split(",") if m] or [args.minutes]:
        part = prefix(embedded, minutes)
        scales, embs = part.scales, part.embeddings
        turn = np.searchsorted(ref_start, scales[-1].midpoints, side="right") - 1
        truth = np.unique(ref_spk[turn], return_inverse=True)[1]
        n = len(truth)
        for mx in maxima:
            k_max = mx or cfg.max_num_speakers
            # The eigengap count the core starts from (short sessions; long ones count chunk groups).
            eig = (
                nme_sc(fused_affinity(embs, scales), cfg, k_max).num_speakers if n <= cfg.embeddings_per_chunk else None
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                res = pipeline.label(part, full_cfg, SpeakerCount(max=mx))
                secs = time.perf_counter() - t0
            k = max(res.labels.max(), truth.max()) + 1
            table = np.zeros((k, k))
            np.add.at(table, (res.labels, truth), 1)
            r, c = linear_sum_assignment(-table)
            print(
                f"{minutes:5.1f} min  base windows {n:6d}  reference speakers {truth.max() + 1:3d}  max {k_max:3d}  "
                f"eigengap {eig if eig is not None else '-':>2}  count {res.num_speakers:3d}  window accuracy "
                f"{table[r, c].sum() / n:.3f}  cap warning {'yes' if caught else 'no ':3s}  clustering {secs:5.2f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
