"""TitaNet embedding throughput on NeMo's five scales: ours in exact mode (batched by equal
length, fp32) and fast mode (`embed_scales_fast`: encoder once per region, windows pooled from
shared frames), timed interleaved in one process, with the cosine between the two modes, vs
NeMo's own model run the way ClusteringDiarizer runs it (batches of 64 in manifest order, short
windows tiled to the batch's longest, forward under torch autocast = bf16 on CPU), and NeMo fp32.

Needs a TitaNet .nemo (a random one from `benchmarks/nemo_parity.py make` is fine: speed does not
depend on the weights). Step 1, in diarize's env, writes the windows; step 2 runs NeMo in its venv:

    python benchmarks/titanet_speed.py ours  /tmp/parity/titanet_large.nemo --minutes 2 --out /tmp/tspeed
    python benchmarks/titanet_speed.py ours  campplus --minutes 2 --out /tmp/cspeed   # CAM++ (ours only)
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

    from diarize.config import EmbeddingConfig, EnergyVADConfig, WindowConfig
    from diarize.embeddings import autocast_dtype, embed_all_scales, embed_scales_fast, precision
    from diarize.models import load_model
    from diarize.vad import energy_vad
    from diarize.windows import multiscale_windows

    sys.path.insert(0, str(REPO / "benchmarks"))
    from speed import build_recording

    torch.set_num_threads(args.threads)
    audio = build_recording(args.minutes)
    regions = energy_vad(audio, EnergyVADConfig())
    scales = multiscale_windows(regions, WindowConfig())
    model = load_model(str(args.nemo), args.device)
    n = sum(len(s) for s in scales)

    low = autocast_dtype(EmbeddingConfig(), model.device)  # the pipeline's precision on this device

    def exact():
        with precision(model, low):
            return embed_all_scales(
                audio, scales, model, args.batch_size, min_embed_s=0.0, max_batch_seconds=args.batch_seconds
            )

    def fast():
        with precision(model, low):
            return embed_scales_fast(
                audio,
                regions,
                scales,
                model,
                chunk_s=args.chunk_s,
                min_embed_s=0.0,
                local_context_s=args.local_context_s,
                batch_seconds=args.batch_seconds,
            )

    embed_all_scales(audio, scales[:1], model, 64)  # warm-up
    fast()
    times: dict[str, list[float]] = {"exact": [], "fast": []}
    for _ in range(args.repeats):  # interleaved: the machine is shared, so compare within one process
        for name, fn in (("exact", exact), ("fast", fast)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "exact":
                embs = out
            else:
                embs_fast = out
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "windows.npz",
        audio=audio,
        **{f"starts{i}": s.starts for i, s in enumerate(scales)},
        **{f"ends{i}": s.ends for i, s in enumerate(scales)},
        **{f"emb{i}": e for i, e in enumerate(embs)},
    )
    print(
        f"model={model.name} audio {len(audio) / 16000:.0f} s, speech {float((regions[:, 1] - regions[:, 0]).sum()):.0f} s "
        f"in {len(regions)} regions, {n} windows, threads {torch.get_num_threads()}, chunk_s {args.chunk_s}, "
        f"device {model.device}, precision {low or torch.float32}"
    )
    for name, ts in times.items():
        print(f"ours {name:5s}: " + ", ".join(f"{n / t:.1f}" for t in ts) + f" windows/s (best {n / min(ts):.1f})")
    ratios = [e / f for e, f in zip(times["exact"], times["fast"])]
    print("fast / exact throughput per interleaved pair: " + ", ".join(f"{r:.2f}x" for r in ratios))
    print("cosine(fast, exact) per scale: min / 1st pct / median")
    for s, a, b in zip(scales, embs, embs_fast):
        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        mu = a.mean(0)  # random checkpoints share a large common offset: also compare what varies
        cc = ((a - mu) * (b - mu)).sum(1) / np.linalg.norm(a - mu, axis=1) / np.linalg.norm(b - mu, axis=1)
        print(
            f"  {s.window:.2f} s ({len(c)}): {c.min():.3f} / {np.percentile(c, 1):.3f} / {np.median(c):.3f};"
            f" centred on the exact-mode mean: {cc.min():.3f} / {np.percentile(cc, 1):.3f} / {np.median(cc):.3f}"
        )


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
        segs.append(
            [audio[int(round(s * 16000)) : int(round(e * 16000))] for s, e in zip(d[f"starts{i}"], d[f"ends{i}"])]
        )
        i += 1
    n = sum(len(s) for s in segs)

    def tile(x, L):  # NeMo's fixed_seq_collate_fn: repeat, then the last (L mod len) samples
        reps, rem = divmod(L, len(x))
        return np.concatenate([np.tile(x, reps), x[len(x) - rem :]]) if rem else np.tile(x, reps)

    for mode in ("autocast", "fp32"):
        out, t0 = [], time.perf_counter()
        with torch.inference_mode():
            for scale in segs:
                for b in range(0, len(scale), 64):
                    batch = scale[b : b + 64]
                    L = max(len(x) for x in batch)
                    sig = torch.from_numpy(np.stack([tile(x, L) for x in batch]))
                    lens = torch.full((len(batch),), L)
                    with torch.amp.autocast("cpu", enabled=mode == "autocast"):
                        _, e = model.forward(input_signal=sig, input_signal_length=lens)
                    out.append(e.float().numpy())
        dt = time.perf_counter() - t0
        got = np.concatenate(out)
        ref = np.concatenate([d[f"emb{k}"] for k in range(len(segs))])
        full = np.concatenate(
            [[len(x) == max(len(y) for y in s[b - b % 64 : b - b % 64 + 64]) for b, x in enumerate(s)] for s in segs]
        )
        diff = np.abs(got[full] - ref[full]).max() / np.abs(ref).max()
        print(
            f"nemo {mode}: {n} windows in {dt:.1f} s = {n / dt:.1f} windows/s; "
            f"max |diff| / max |emb| vs ours on untiled windows: {diff:.2e}"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["ours", "nemo"])
    ap.add_argument("nemo", type=Path, help="a TitaNet .nemo (or, for `ours`, a model name such as campplus)")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64, help="ours, exact mode: windows per batch")
    ap.add_argument(
        "--batch-seconds",
        type=float,
        help="ours: at most this much padded audio per batch (exact windows; fast mode: batch chunks, as on a GPU)",
    )
    ap.add_argument("--device", default="cpu", help="ours only: cpu | cuda (bf16 autocast on cuda, as the pipeline)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tspeed"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunk-s", type=float, default=30.0)
    ap.add_argument("--local-context-s", type=float, help="CAM++ fast mode: sliding-window context")
    args = ap.parse_args(argv)
    (ours if args.mode == "ours" else nemo)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
