"""DER of fast-mode embeddings (`embedding.mode: fast`) against exact mode on the recordings in
../shared/data/diarization, oracle VAD, unknown speaker count, and the cosine between the two modes'
window embeddings per scale.

Calls the pipeline's stages (`speech` once per file, then `embed`, `label`, `assemble` per mode). Scoring
as in der_shared.py: forgiving = 0.25 s collar each side + overlap ignored; full = no collar.
`--local-context-s` left out: chunk-wide context (the embedding config's value is not used).

    python -m benchmarks.accuracy.fast_mode_der [--model campplus] [--config general] [--chunk-s 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
import warnings
from pathlib import Path


import numpy as np
import torch
from pyannote.metrics.diarization import DiarizationErrorRate

from benchmarks import DATA
from diarize import load_config, pipeline
from diarize.models import load_model
from diarize.rttm import read_rttm


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("--chunk-s", type=float, default=30.0)
    ap.add_argument("--context-s", type=float, default=3.0)
    ap.add_argument("--local-context-s", type=float, help="CAM++: sliding-window context instead of the chunk's")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = load_model(args.model, "cpu")
    rows = list(csv.DictReader(open(args.data / "diarization" / "manifest.tsv"), delimiter="\t"))
    metrics = {
        mode: (DiarizationErrorRate(collar=0.5, skip_overlap=True), DiarizationErrorRate())
        for mode in ("exact", "fast")
    }
    cosines: list[list[np.ndarray]] = [[] for _ in cfg.windows.window_lengths]
    seconds = {"exact": 0.0, "fast": 0.0}
    print(
        f"model={model.name} config={args.config} chunk_s={args.chunk_s} context_s={args.context_s} "
        f"local_context_s={args.local_context_s} threads={torch.get_num_threads()}"
    )
    print(f"{'file':24s} {'spk':>3s} | {'mode':5s} {'est':>3s} {'forgiving':>9s} {'full':>6s} {'emb s':>6s}")
    modes = {
        mode: dataclasses.replace(
            cfg,
            embedding=dataclasses.replace(
                cfg.embedding,
                mode=mode,
                fast_chunk_s=args.chunk_s,
                fast_context_s=args.context_s,
                fast_local_context_s=args.local_context_s,
            ),
        )
        for mode in ("exact", "fast")
    }
    for row in rows:
        wav = args.data / row["wav"]
        ref = read_rttm(args.data / row["rttm"])[wav.stem]
        source = pipeline.open_source(wav)
        speech = pipeline.speech(source, cfg, oracle_vad=ref)
        embs = {}
        for mode, mcfg in modes.items():
            t0 = time.perf_counter()
            embedded = pipeline.embed(source, speech, model, mcfg)
            dt = time.perf_counter() - t0
            seconds[mode] += dt
            embs[mode] = embedded.embeddings
            result = pipeline.label(embedded, mcfg)
            hyp = pipeline.assemble(embedded, result, mcfg).annotation
            fg, full = metrics[mode][0](ref, hyp), metrics[mode][1](ref, hyp)
            print(
                f"{wav.stem:24s} {len(ref.labels()):3d} | {mode:5s} {result.num_speakers:3d} "
                f"{100 * fg:8.2f}% {100 * full:5.2f}% {dt:6.2f}"
            )
        for i, (a, b) in enumerate(zip(embs["exact"], embs["fast"])):
            cosines[i].append((unit(a) * unit(b)).sum(1))
    print("pooled over files (oracle VAD, unknown #spk):")
    for mode, (fg, full) in metrics.items():
        print(
            f"  {mode:5s} forgiving {100 * abs(fg):6.2f}%  full {100 * abs(full):6.2f}%  "
            f"embedding time {seconds[mode]:.1f} s"
        )
    print("cosine(fast, exact) per scale: min / 1st pct / median (windows)")
    for w, c in zip(cfg.windows.window_lengths, cosines):
        c = np.concatenate(c)
        print(f"  {w:5.2f} s: {c.min():.3f} / {np.percentile(c, 1):.3f} / {np.median(c):.3f}  ({len(c)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
