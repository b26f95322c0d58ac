"""Long-form benchmark (issue 6): wall time per stage, peak RSS and DER on long simulated conversations.

Conversations come from benchmarks/accuracy/simulate.py's writer (turns of 1.5-8 s of one speaker, 0.2-1.2 s pauses,
-65 dBFS noise floor, exact reference RTTM, written block by block) with 5 speakers for the long files and
4-6 for the short ones, drawn from the single-speaker utterances in shared/data.

    python -m benchmarks.accuracy.long_form all --hours 1 --short 6            # 1 h + 6 short (4 min) sessions
    python -m benchmarks.accuracy.long_form all --hours 10 --model fbank-stats  # memory check, stand-in embedder
    python -m benchmarks.accuracy.long_form cluster --windows 14000              # clustering alone, synthetic
    python -m benchmarks.accuracy.long_form cluster --npz /tmp/x/emb.npz         # clustering alone, saved embeddings
    python -m benchmarks.accuracy.long_form cluster --npz X_emb.npz --rttm X.rttm  # ... and its DER

Each case runs in its own subprocess so its peak RSS (VmHWM) is that case's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import DATA, REPO

SR = 16000


# --------------------------------------------------------------------------- building conversations
def speaker_pool(n_speakers: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """The 3 multi-utterance LibriSpeech test-other speakers plus random one-utterance train-clean speakers."""
    from benchmarks.accuracy.simulate import find_speakers, load_pool

    multi = find_speakers([DATA / "speakers" / "librispeech_test-other"])
    single = find_speakers([DATA / "speakers" / "librispeech_train-clean-100_1utt"])
    chosen = {k: multi[k] for k in sorted(multi)[: min(3, n_speakers)]}
    names = sorted(single)
    for i in sorted(rng.choice(len(names), n_speakers - len(chosen), replace=False)):
        chosen[names[i]] = single[names[i]]
    return load_pool(chosen)


def build_conversation(path: Path, seconds: float, n_speakers: int, seed: int) -> Path:
    """Write `path` (.wav, written block by block) and its exact reference RTTM; returns the RTTM path."""
    from benchmarks.accuracy.simulate import write_conversation

    return write_conversation(path, speaker_pool(n_speakers, np.random.default_rng(seed)), seconds, seed)


# --------------------------------------------------------------------------- stand-in embedder
class FbankStats:
    """Cheap stand-in embedder (mean and std of 80 log-mel bins): for memory/plumbing runs only.

    CAM++ on 2 CPU cores needs about 1.5 h for 10 h of audio; this runs the same pipeline
    (same windows, same streaming, same clustering) in minutes. Its DER means nothing.
    """

    name = "fbank-stats"
    sample_rate = SR
    embedding_dim = 160

    def __init__(self) -> None:
        import torch

        from diarize.models.features import KaldiFbank

        self.device = torch.device("cpu")
        self.fbank = KaldiFbank()

    def embed_batch(self, waveforms, lengths=None):  # noqa: ANN001, ANN201 - torch types
        import torch

        if lengths is not None:  # zero-padded rows: each row's own samples only
            return torch.cat([self.embed_batch(waveforms[i : i + 1, : int(n)]) for i, n in enumerate(lengths)])
        with torch.inference_mode():
            x = self.fbank(waveforms.float()) if hasattr(self, "fbank") else waveforms
            return torch.cat([x.mean(1), x.std(1)], dim=1)

    def to(self, device):  # noqa: ANN001, ANN201
        return self


# --------------------------------------------------------------------------- one case (subprocess)
def rss_mb() -> float:
    """This process's peak RSS: VmHWM, not ru_maxrss, which Linux carries over from the parent across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_case(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from pyannote.metrics.diarization import DiarizationErrorRate

    import diarize
    from diarize import pipeline
    from diarize.audio import BLOCK_SECONDS
    from diarize.config import load_config
    from diarize.models import load_model
    from diarize.pipeline import Diarizer
    from diarize.rttm import read_rttm

    assert Path(diarize.__file__).resolve().is_relative_to(REPO), diarize.__file__
    cfg = load_config(args.config)
    model = FbankStats() if args.model == "fbank-stats" else load_model(args.model, "cpu")
    ref = next(iter(read_rttm(args.rttm).values()))
    rss_model = current_rss_mb()

    captured: dict = {}
    if args.save_embeddings:  # keep what the run's `label` stage is given; written after the timed run
        orig = pipeline.label

        def capture(embedded, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            captured["embedded"] = embedded
            return orig(embedded, *a, **k)

        pipeline.label = capture

    d = Diarizer(cfg, model=model)
    t0, c0 = time.perf_counter(), time.process_time()
    res = d.run(args.wav, oracle_vad=ref if args.vad == "oracle" else None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if captured:
        pipeline.save_embedded(captured["embedded"], args.save_embeddings)
    hyp = res.annotation
    out = {
        "wav": str(args.wav),
        "vad": args.vad,
        "model": args.model,
        "threads": args.threads,
        "duration_s": res.duration,
        "speech_s": float((res.regions[:, 1] - res.regions[:, 0]).sum()),
        "blocks": int(-(-res.duration // BLOCK_SECONDS)),
        "wall_s": wall,
        "cpu_s": cpu,
        "timings": res.timings,
        "rss_after_model_mb": rss_model,
        "peak_rss_mb": rss_mb(),
        "speakers_ref": len(ref.labels()),
        "speakers_hyp": res.num_speakers,
    }
    # pyannote accumulates components; keep them so sessions can be pooled.
    for name, metric in (
        ("der_collar", DiarizationErrorRate(collar=0.5, skip_overlap=True)),
        ("der_full", DiarizationErrorRate(collar=0.0, skip_overlap=False)),
    ):
        comp = metric(ref, hyp, detailed=True)
        out[name] = {k: float(comp[k]) for k in ("total", "missed detection", "false alarm", "confusion")}
    return out


def subprocess_case(wav: Path, rttm: Path, vad: str, args: argparse.Namespace, save: Path | None = None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        __spec__.name,
        "case",
        "--wav",
        str(wav),
        "--rttm",
        str(rttm),
        "--vad",
        vad,
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--config",
        args.config,
    ]
    if save is not None:
        cmd += ["--save-embeddings", str(save)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"case failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def der(parts: list[dict], key: str) -> float:
    tot = sum(p[key]["total"] for p in parts)
    err = sum(p[key]["missed detection"] + p[key]["false alarm"] + p[key]["confusion"] for p in parts)
    return 100 * err / tot if tot else float("nan")


def fmt_row(label: str, rs: list[dict]) -> str:
    dur = sum(r["duration_s"] for r in rs)
    t = {
        k: sum(r["timings"].get(k, 0.0) for r in rs)
        for k in ("load", "vad", "windows", "embeddings", "clustering", "output")
    }
    wall = sum(r["wall_s"] for r in rs)
    cpu = sum(r.get("cpu_s", float("nan")) for r in rs)
    peak = max(r["peak_rss_mb"] for r in rs)
    spk = ", ".join(f"{r['speakers_hyp']}/{r['speakers_ref']}" for r in rs)
    return (
        f"| {label} | {dur / 60:.1f} | {t['load']:.1f} | {t['vad']:.1f} | {t['embeddings']:.1f} | "
        f"{t['clustering']:.2f} | {wall:.1f} | {cpu:.1f} | {cpu / dur:.3f} | {peak:.0f} | "
        f"{der(rs, 'der_collar'):.2f} | {der(rs, 'der_full'):.2f} | {spk} |"
    )


HEADER = (
    "| case | audio (min) | load s | VAD s | embed s | cluster s | total wall s | total CPU s | RTF (CPU) | "
    "peak RSS MB | DER collar .25/no-ovl % | DER full % | #spk hyp/ref |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def cmd_all(args: argparse.Namespace) -> int:
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="diarize_long_"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows = [HEADER]
    results: dict[str, list[dict]] = {}
    cases: list[tuple[str, list[tuple[Path, Path]]]] = []
    for h in args.hours:
        wav = tmp / f"long_{h:g}h.wav"
        rttm = wav.with_suffix(".rttm")
        if not (wav.exists() and rttm.exists()):
            t0 = time.perf_counter()
            build_conversation(wav, h * 3600, n_speakers=5, seed=int(h * 100))
            print(f"built {wav} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cases.append((f"{h:g} h", [(wav, rttm)]))
    if args.short:
        short = []
        for i in range(args.short):
            wav = tmp / f"short_{i}.wav"
            if not wav.exists():
                build_conversation(wav, args.short_minutes * 60, n_speakers=4 + i % 3, seed=1000 + i)
            short.append((wav, wav.with_suffix(".rttm")))
        cases.append((f"{args.short} x {args.short_minutes:g} min", short))
    for label, files in cases:
        for vad in args.vad:
            rs = []
            for wav, rttm in files:
                save = tmp / f"{wav.stem}_{vad}_emb.npz" if args.save_embeddings and len(files) == 1 else None
                r = subprocess_case(wav, rttm, vad, args, save)
                print(json.dumps(r), file=sys.stderr, flush=True)
                rs.append(r)
            results[f"{label} {vad}"] = rs
            rows.append(fmt_row(f"{label}, {vad} VAD", rs))
            print(rows[-1], flush=True)
    print("\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


# --------------------------------------------------------------------------- clustering alone
def cmd_cluster(args: argparse.Namespace) -> int:
    from diarize import pipeline
    from diarize import regions as rg
    from diarize.config import ClusteringConfig, DiarizerConfig, WindowConfig
    from diarize.windows import multiscale_windows

    if args.npz:
        embedded = pipeline.load_embedded(args.npz)
        truth = None
        if args.cluster_rttm:
            from diarize.rttm import read_rttm

            ref = next(iter(read_rttm(args.cluster_rttm).values()))
    else:
        # Synthetic: turns of 5 speakers; each window embedding = speaker centre + noise.
        rng = np.random.default_rng(0)
        regs, spk, t, speech, prev = [], [], 0.0, 0.0, -1
        while speech < args.windows * 0.25:  # base scale: one window per 0.25 s of speech
            s = int(rng.integers(5))
            if s == prev:
                continue
            d = rng.uniform(1.5, 8.0)
            regs.append([t, t + d])
            spk.append(s)
            t += d + rng.uniform(0.2, 1.2)
            speech += d
            prev = s
        regs, spk = np.array(regs), np.array(spk)
        scales = multiscale_windows(regs, WindowConfig())
        centres = rng.standard_normal((5, 192))
        embs = []
        for sc in scales:
            r = np.searchsorted(regs[:, 0], sc.midpoints, side="right") - 1
            embs.append((centres[spk[r]] + args.noise * rng.standard_normal((len(sc), 192))).astype(np.float32))
        truth = spk[np.searchsorted(regs[:, 0], scales[-1].midpoints, side="right") - 1]
        speech = pipeline.Speech("synthetic", float(regs[-1, 1]), regs, rg.EMPTY.copy())
        embedded = pipeline.Embedded(speech, scales, embs, "campplus", "cpu")
    scales = embedded.scales
    cfg = DiarizerConfig(clustering=ClusteringConfig(embeddings_per_chunk=args.per_chunk, device=args.device))
    rss0 = current_rss_mb()
    times = []
    for _ in range(args.repeat):  # the pipeline's clustering stage
        t0 = time.perf_counter()
        res = pipeline.label(embedded, cfg)
        times.append(time.perf_counter() - t0)
    out = {
        "n_base": len(scales[-1]),
        "n_all": sum(len(s) for s in scales),
        "per_chunk": args.per_chunk,
        "long_form": len(scales[-1]) > args.per_chunk,
        "seconds": times,
        "speakers": res.num_speakers,
        # Same digest before and after a change = the same labels for every window.
        "labels_sha1": hashlib.sha1(res.labels.astype(np.int64).tobytes()).hexdigest()[:12],
        "rss_before_mb": rss0,
        "peak_rss_mb": rss_mb(),
    }
    if args.npz and args.cluster_rttm:
        from pyannote.metrics.diarization import DiarizationErrorRate

        hyp = pipeline.assemble(embedded, res, cfg).annotation  # the pipeline's output stage
        out["speakers_ref"] = len(ref.labels())
        out["der_forgiving_pct"] = 100 * DiarizationErrorRate(collar=0.5, skip_overlap=True)(ref, hyp)
        out["der_full_pct"] = 100 * DiarizationErrorRate()(ref, hyp)
    if truth is not None:
        from scipy.optimize import linear_sum_assignment

        k = max(res.labels.max(), truth.max()) + 1
        c = np.zeros((k, k))
        np.add.at(c, (res.labels, truth), 1)
        r, cc = linear_sum_assignment(-c)
        out["window_accuracy"] = float(c[r, cc].sum() / len(truth))
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="campplus", help="campplus or fbank-stats (stand-in, no DER meaning)")
    common.add_argument(
        "--threads", type=int, default=1, help="torch threads [1: on this 2-core VM 2 threads ran slower]"
    )
    common.add_argument("--config", default="general")
    a = sub.add_parser("all", parents=[common])
    a.add_argument("--hours", type=float, nargs="*", default=[1.0])
    a.add_argument("--short", type=int, default=0, help="number of short sessions")
    a.add_argument("--short-minutes", type=float, default=4.0)
    a.add_argument("--vad", nargs="+", default=["oracle", "energy"], choices=["oracle", "energy"])
    a.add_argument("--workdir", help="where audio goes (default: a new temp dir); existing files are reused")
    a.add_argument("--save-embeddings", action="store_true", help="save long-case embeddings for `cluster --npz`")
    a.add_argument("--json", help="write all per-case results here")
    c = sub.add_parser("case", parents=[common])
    c.add_argument("--wav", type=Path, required=True)
    c.add_argument("--rttm", type=Path, required=True)
    c.add_argument("--vad", choices=["oracle", "energy"], default="oracle")
    c.add_argument("--save-embeddings", type=Path)
    k = sub.add_parser("cluster")
    k.add_argument("--windows", type=int, default=14000, help="synthetic: about this many base windows")
    k.add_argument("--noise", type=float, default=3.0, help="synthetic: noise std per dimension (centres std 1)")
    k.add_argument("--npz", type=Path, help="embeddings saved by `all --save-embeddings`")
    k.add_argument("--rttm", dest="cluster_rttm", type=Path, help="with --npz: the reference, to print DER")
    k.add_argument("--per-chunk", type=int, default=10000)
    k.add_argument("--repeat", type=int, default=3)
    k.add_argument("--device", default="cpu", help="clustering.device: cpu, or cuda for the GPU's eigensolvers")
    args = ap.parse_args(argv)
    if args.cmd == "case":
        print(json.dumps(run_case(args)))
        return 0
    if args.cmd == "cluster":
        return cmd_cluster(args)
    return cmd_all(args)


if __name__ == "__main__":
    sys.exit(main())
