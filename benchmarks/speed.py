"""Wall time per stage, ours against senko 0.2.2 in the same run on the same files (issue 11).

Files: (a) dense speech built from the shared LibriSpeech utterances (the worst case for speed;
`--minutes`), (b) the six ../shared/data recordings concatenated. Each is written to a temp WAV so
the load stage reads a real file. Ours: a warm-up run, then a timed `Diarizer.run` per embedding mode.
senko (its CPU default, model loaded, warm-up done by senko itself): the `diarize()` call only, in its own
venv (`--senko-python`), each file twice, the second timed. Same thread count for both.

    python benchmarks/speed.py [--minutes 5] [--threads 2] [--modes exact,fast] [--senko-python /work/senko-venv/bin/python]

Set up senko's venv with: python3 -m venv /work/senko-venv && /work/senko-venv/bin/pip install torch==2.13.0 senko==0.2.2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


SENKO_RUNNER = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
import senko
d = senko.Diarizer(device="cpu", vad="auto", warmup=True, quiet=True)
out = {}
for f in sys.argv[2:]:
    d.diarize(f)
    t = time.perf_counter(); r = d.diarize(f); out[f] = time.perf_counter() - t
print("SENKO_JSON " + json.dumps(out))
"""


def shared_concatenation() -> np.ndarray:
    """The six shared recordings one after the other (148 s)."""
    wavs = sorted((DATA / "diarization").glob("*/*.wav"))
    return np.concatenate([load_audio(w) for w in wavs])


def time_senko(python: str, files: list[Path], threads: int) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", SENKO_RUNNER, str(threads), *map(str, files)], capture_output=True, text=True, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("SENKO_JSON "))
    return json.loads(line.removeprefix("SENKO_JSON "))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vad", help="energy | silero | pyannote-seg [the config's]")
    ap.add_argument("--modes", default="exact", help="embedding modes to time, comma-separated (exact, fast)")
    ap.add_argument("--senko-python", help="python of a venv with senko==0.2.2: time it on the same files")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"dense": Path(tmp) / "dense.wav", "shared6": Path(tmp) / "shared6.wav"}
        sf.write(files["dense"], build_recording(args.minutes), 16000, subtype="PCM_16")
        sf.write(files["shared6"], shared_concatenation(), 16000, subtype="PCM_16")
        ours: dict[tuple[str, str], tuple[float, object]] = {}
        for mode in args.modes.split(","):
            cfg = load_config(args.config, [f"embedding.mode={mode}"])
            if args.vad:
                cfg.vad.method = args.vad
            d = Diarizer(cfg, model=args.model, device=args.device)
            d.run(files["shared6"])  # warm-up (allocator, thread pools, VAD model)
            for name, wav in files.items():
                t0 = time.perf_counter()
                res = d.run(wav)
                ours[(mode, name)] = (time.perf_counter() - t0, res)
        senko = time_senko(args.senko_python, list(files.values()), args.threads) if args.senko_python else {}
    print(f"model={args.model} vad={args.vad or 'config'} device={args.device} threads={torch.get_num_threads()}")
    for (mode, name), (wall, res) in ours.items():
        line = (
            f"{name:8s} {mode:5s} audio {res.duration:6.1f} s  ours {wall:7.2f} s (RTF {wall / res.duration:.4f}, "
            f"{res.num_speakers} spk)"
        )
        if senko:
            sw = senko[str(files[name])]
            line += f"  senko {sw:6.2f} s (RTF {sw / res.duration:.4f})  ours/senko {wall / sw:5.2f}x"
        print(line)
        print("         stages: " + ", ".join(f"{k} {res.timings.get(k, 0.0):.2f}" for k in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
