"""TitaNet embedding throughput on NeMo's five scales: ours in exact mode (every window on its own)
and fast mode (encoder once per region, windows pooled from shared frames), timed interleaved in
one process, with the cosine between the two modes, vs NeMo's own model run the way
ClusteringDiarizer runs it (batches of 64 in manifest order, short windows tiled to the batch's
longest, forward under torch autocast: bf16 on CPU, fp16 on CUDA), and NeMo fp32.

Needs a TitaNet .nemo (a random one from `python -m benchmarks.parity.nemo_parity make` is fine: speed does not
depend on the weights). Step 1, in diarize's env, writes the windows; step 2 runs NeMo in its venv:

    python -m benchmarks.speed.titanet_speed ours  /tmp/parity/titanet_large.nemo --minutes 2 --out /tmp/tspeed
    python -m benchmarks.speed.titanet_speed ours  campplus --minutes 2 --out /tmp/cspeed   # CAM++ (ours only)
    /work/nemo-venv/bin/python -m benchmarks.speed.titanet_speed nemo /tmp/parity/titanet_large.nemo --out /tmp/tspeed

Ours runs the pipeline's own stages (`speech` with the energy VAD, then `embed`: windows and
embeddings, timed together; the whole recording as one block, the
default `EmbeddingConfig` but for `min_embed_s` 0, as NeMo does not tile): on CPU its batches of at
most 16 s of audio, on a GPU batches of up to 600 s with widths from the shape ladder, under the
pipeline's autocast. With `--device cuda` both sides run on the GPU (NeMo under its CUDA autocast,
fp16, as ClusteringDiarizer does), each timed `--repeats` times after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def ours(args) -> None:
    import dataclasses

    import torch

    from diarize import pipeline
    from diarize.config import DiarizerConfig, EmbeddingConfig, VADConfig
    from diarize.embeddings import autocast_dtype
    from benchmarks.speed.speed import build_recording
    from diarize.models import load_model

    torch.set_num_threads(args.threads)
    audio = build_recording(args.minutes)
    model = load_model(str(args.nemo), args.device)

    cfg = EmbeddingConfig(min_embed_s=0.0, fast_chunk_s=args.chunk_s)  # NeMo tiles no window up to 0.5 s
    if args.batch_size:
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    if args.batch_seconds:
        cfg = dataclasses.replace(
            cfg, max_batch_seconds=args.batch_seconds, accelerator_batch_seconds=args.batch_seconds
        )
    if args.local_context_s:
        cfg = dataclasses.replace(cfg, fast_local_context_s=args.local_context_s)
    if args.cpu_bf16:
        cfg = dataclasses.replace(cfg, cpu_bf16=True)
    low = autocast_dtype(cfg, model.device)  # the pipeline's precision on this device
    modes = {
        m: DiarizerConfig(vad=VADConfig(method="energy"), embedding=dataclasses.replace(cfg, mode=m))
        for m in ("exact", "fast")
    }

    def stages(x: np.ndarray) -> tuple:
        """The pipeline's speech stage (energy VAD) on `x`, read as one block."""
        source = pipeline.open_source(x, 16000)
        return source, pipeline.speech(source, modes["exact"], block_seconds=source.duration + 1)

    def run(mode: str, source, speech) -> pipeline.Embedded:
        return pipeline.embed(source, speech, model, modes[mode], block_seconds=source.duration + 1)

    source, speech = stages(audio)
    regions = speech.regions
    # Warm-up on the first minute: kernels, allocator and (on a GPU) the first batch shapes.
    head = stages(audio[: 60 * 16000])
    for mode in ("exact", "fast"):
        run(mode, *head)
    times: dict[str, list[float]] = {"exact": [], "fast": []}
    embs: dict[str, list[np.ndarray]] = {}
    for _ in range(args.repeats):  # interleaved: the machine is shared, so compare within one process
        for mode in times:
            t0 = time.perf_counter()
            embedded = run(mode, source, speech)  # numpy out: the device work is done when it returns
            times[mode].append(time.perf_counter() - t0)
            embs[mode], scales = embedded.embeddings, embedded.scales
    n = sum(len(s) for s in scales)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "windows.npz",
        audio=audio,
        **{f"starts{i}": s.starts for i, s in enumerate(scales)},
        **{f"ends{i}": s.ends for i, s in enumerate(scales)},
        **{f"emb{i}": e for i, e in enumerate(embs["exact"])},
    )
    where = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "cpu"
    print(
        f"model={model.name} audio {len(audio) / 16000:.0f} s, speech {float((regions[:, 1] - regions[:, 0]).sum()):.0f} s "
        f"in {len(regions)} regions, {n} windows, threads {torch.get_num_threads()}, chunk_s {cfg.fast_chunk_s}, "
        f"device {model.device} ({where}), precision {low or torch.float32}"
    )
    for mode, ts in times.items():
        print(f"ours {mode:5s}: " + ", ".join(f"{n / t:.1f}" for t in ts) + f" windows/s (best {n / min(ts):.1f})")
    ratios = [e / f for e, f in zip(times["exact"], times["fast"])]
    print("fast / exact throughput per interleaved pair: " + ", ".join(f"{r:.2f}x" for r in ratios))
    print("cosine(fast, exact) per scale: min / 1st pct / median")
    for s, a, b in zip(scales, embs["exact"], embs["fast"]):
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
    device = torch.device(args.device)
    d = np.load(args.out / "windows.npz")
    audio = d["audio"]
    model = EncDecSpeakerLabelModel.restore_from(str(args.nemo), map_location=device).eval()
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

    def embed(autocast: bool, scales: list[list[np.ndarray]]) -> np.ndarray:
        # ClusteringDiarizer._extract_embeddings: batches of 64 in manifest order, the forward under
        # torch.amp.autocast of the model's device type, each batch's embeddings copied to the host.
        out = []
        with torch.inference_mode():
            for scale in scales:
                for b in range(0, len(scale), 64):
                    batch = scale[b : b + 64]
                    L = max(len(x) for x in batch)
                    sig = torch.from_numpy(np.stack([tile(x, L) for x in batch])).to(device)
                    lens = torch.full((len(batch),), L, device=device)
                    with torch.amp.autocast(device.type, enabled=autocast):
                        _, e = model.forward(input_signal=sig, input_signal_length=lens)
                    out.append(e.float().cpu().numpy())
        return np.concatenate(out)

    print(f"nemo on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})")
    ref = np.concatenate([d[f"emb{k}"] for k in range(len(segs))])
    full = np.concatenate(
        [[len(x) == max(len(y) for y in s[b - b % 64 : b - b % 64 + 64]) for b, x in enumerate(s)] for s in segs]
    )
    for mode in ("autocast", "fp32"):
        embed(mode == "autocast", [s[:128] for s in segs])  # warm-up: each scale's first batch shapes
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            got = embed(mode == "autocast", segs)
            times.append(time.perf_counter() - t0)
        diff = np.abs(got[full] - ref[full]).max() / np.abs(ref).max()
        print(
            f"nemo {mode}: {n} windows in "
            + ", ".join(f"{t:.2f}" for t in times)
            + " s = "
            + ", ".join(f"{n / t:.1f}" for t in times)
            + f" windows/s (best {n / min(times):.1f}); "
            f"max |diff| / max |emb| vs ours (exact) on untiled windows: {diff:.2e}"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["ours", "nemo"])
    ap.add_argument("nemo", type=Path, help="a TitaNet .nemo (or, for `ours`, a model name such as campplus)")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, help="ours: windows per batch at most (default: the pipeline's)")
    ap.add_argument(
        "--batch-seconds",
        type=float,
        help="ours: at most this much padded audio per batch (default: the pipeline's, 16 s on CPU, 600 s on a GPU)",
    )
    ap.add_argument("--device", default="cpu", help="cpu | cuda (both sides under their own CUDA autocast there)")
    ap.add_argument("--cpu-bf16", action="store_true", help="ours: bf16 autocast on a CPU with native bf16")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tspeed"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunk-s", type=float, default=30.0)
    ap.add_argument("--local-context-s", type=float, help="CAM++ fast mode: sliding-window context (default: 1.5 s)")
    args = ap.parse_args(argv)
    (ours if args.mode == "ours" else nemo)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
