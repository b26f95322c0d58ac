"""TitaNet embedding throughput on NeMo's five scales: ours (batched by equal length, fp32) vs
NeMo's own model run the way ClusteringDiarizer runs it (batches of 64 in manifest order, short
windows tiled to the batch's longest, forward under torch autocast = bf16 on CPU), and NeMo fp32.

Needs a TitaNet .nemo (a random one from `benchmarks/nemo_parity.py make` is fine: speed does not
depend on the weights). Step 1, in diarize's env, writes the windows; step 2 runs NeMo in its venv:

    python benchmarks/titanet_speed.py ours  /tmp/parity/titanet_large.nemo --minutes 2 --out /tmp/tspeed
    /work/nemo-venv/bin/python benchmarks/titanet_speed.py nemo /tmp/parity/titanet_large.nemo --out /tmp/tspeed
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def ours(args) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from diarize.config import WindowConfig
    from diarize.embeddings import embed_all_scales
    from diarize.models.titanet import load_titanet
    from diarize.vad import energy_vad
    from diarize.config import VADConfig
    from diarize.windows import multiscale_windows

    sys.path.insert(0, str(REPO / "benchmarks"))
    from speed import build_recording

    torch.set_num_threads(args.threads)
    audio = build_recording(args.minutes)
    scales = multiscale_windows(energy_vad(audio, EnergyVADConfig()), WindowConfig())
    model = load_titanet(args.nemo)
    n = sum(len(s) for s in scales)
    embed_all_scales(audio, [s for s in scales[:1]], model, 64)  # warm-up
    t0 = time.perf_counter()
    embs = embed_all_scales(audio, scales, model, batch_size=64, min_embed_s=0.0)
    dt = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "windows.npz", audio=audio,
             **{f"starts{i}": s.starts for i, s in enumerate(scales)},
             **{f"ends{i}": s.ends for i, s in enumerate(scales)},
             **{f"emb{i}": e for i, e in enumerate(embs)})
    print(f"ours fp32 batched-by-length: {n} windows in {dt:.1f} s = {n / dt:.1f} windows/s "
          f"(audio {len(audio) / 16000:.0f} s, threads {torch.get_num_threads()})")


def nemo(args) -> None:
    import torch
    from nemo.collections.asr.models import EncDecSpeakerLabelModel

    torch.set_num_threads(args.threads)
    d = np.load(args.out / "windows.npz")
    audio = d["audio"]
    model = EncDecSpeakerLabelModel.restore_from(str(args.nemo), map_location="cpu").eval()
    segs = []
    i = 0
    while f"starts{i}" in d:
        segs.append([audio[int(round(s * 16000)): int(round(e * 16000))] for s, e in zip(d[f"starts{i}"], d[f"ends{i}"])])
        i += 1
    n = sum(len(s) for s in segs)

    def tile(x, L):  # NeMo's fixed_seq_collate_fn: repeat, then the last (L mod len) samples
        reps, rem = divmod(L, len(x))
        return np.concatenate([np.tile(x, reps), x[len(x) - rem:]]) if rem else np.tile(x, reps)

    for mode in ("autocast", "fp32"):
        out, t0 = [], time.perf_counter()
        with torch.inference_mode():
            for scale in segs:
                for b in range(0, len(scale), 64):
                    batch = scale[b: b + 64]
                    L = max(len(x) for x in batch)
                    sig = torch.from_numpy(np.stack([tile(x, L) for x in batch]))
                    lens = torch.full((len(batch),), L)
                    with torch.amp.autocast("cpu", enabled=mode == "autocast"):
                        _, e = model.forward(input_signal=sig, input_signal_length=lens)
                    out.append(e.float().numpy())
        dt = time.perf_counter() - t0
        got = np.concatenate(out)
        ref = np.concatenate([d[f"emb{k}"] for k in range(len(segs))])
        full = np.concatenate([[len(x) == max(len(y) for y in s[b - b % 64: b - b % 64 + 64]) for b, x in enumerate(s)]
                               for s in segs])
        diff = np.abs(got[full] - ref[full]).max() / np.abs(ref).max()
        print(f"nemo {mode}: {n} windows in {dt:.1f} s = {n / dt:.1f} windows/s; "
              f"max |diff| / max |emb| vs ours on untiled windows: {diff:.2e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["ours", "nemo"])
    ap.add_argument("nemo", type=Path)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/tspeed"))
    args = ap.parse_args(argv)
    (ours if args.mode == "ours" else nemo)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
