"""Real-time factor per stage on a >= 5-minute recording, CPU.

The recording is dense speech built from the shared LibriSpeech utterances (written to a
temp file so the load stage reads a real WAV).

    python benchmarks/speed.py [--minutes 5] [--model campplus] [--threads N] [--vad energy]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from diarize import Diarizer, load_config  # noqa: E402
from diarize.audio import load_audio  # noqa: E402
from diarize.pipeline import STAGES  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_recording(minutes: float) -> np.ndarray:
    """Dense speech (the worst case for speed): LibriSpeech utterances of several speakers
    in turn, 0.3 s pauses, until `minutes` long."""
    files = sorted((DATA / "speakers").glob("librispeech_*/*/*.wav"))
    pause = np.zeros(int(0.3 * 16000), dtype=np.float32)
    parts, total = [], 0
    while total < minutes * 60 * 16000:
        for f in files:
            parts += [load_audio(f), pause]
            total += len(parts[-2]) + len(pause)
            if total >= minutes * 60 * 16000:
                break
    return np.concatenate(parts)[: int(minutes * 60 * 16000)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vad", help="energy | silero | pyannote-seg [the config's]")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    if args.vad:
        cfg.vad.method = args.vad
    d = Diarizer(cfg, model=args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        sf.write(wav, build_recording(args.minutes), 16000, subtype="PCM_16")
        d.run(wav)  # warm-up (allocator, thread pools)
        t0 = time.perf_counter()
        res = d.run(wav)
        wall = time.perf_counter() - t0
    n_windows = sum(len(s) for s in __import__("diarize.windows", fromlist=["x"]).multiscale_windows(
        res.regions, d.config.windows))
    print(f"model={d.model.name} vad={cfg.vad.method} device={args.device} threads={torch.get_num_threads()} audio={res.duration:.0f}s "
          f"speech={float(np.sum(res.regions[:, 1] - res.regions[:, 0])):.0f}s windows={n_windows} "
          f"speakers={res.num_speakers}")
    for stage in STAGES:
        t = res.timings.get(stage, 0.0)
        print(f"  {stage:11s} {t:7.2f} s  RTF {t / res.duration:.4f}")
    print(f"  {'total':11s} {wall:7.2f} s  RTF {wall / res.duration:.4f}  "
          f"(embedding throughput {n_windows / res.timings['embeddings']:.0f} windows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
