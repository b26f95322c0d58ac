"""End to end against NeMo's ClusteringDiarizer on the same machine: one simulated conversation, oracle VAD
from its reference RTTM, unknown speaker count, NeMo's five scales, TitaNet from the same .nemo, the same
device. Each side is timed from a loaded model to the RTTM on disk (NeMo: `ClusteringDiarizer.diarize()`,
which writes its manifests, reads every segment from the file, embeds, clusters on the model's device,
writes the RTTM and scores it; ours: `Diarizer.run` and `write_rttm`), twice, in a fresh process per side.

    python -m benchmarks.parity.nemo_e2e build --minutes 10 --out /tmp/e2e       # conversation + its RTTM
    python -m benchmarks.parity.nemo_e2e both /tmp/e2e/conv_10min.wav MODEL.nemo --nemo-python NEMO_VENV/bin/python [--device cuda]

`ours` and `nemo` run one side alone. A TitaNet .nemo with random weights (`nemo_parity.py make`) times
the same work as the real one; its speaker counts and DER then mean nothing, and none are claimed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO


def build(args: argparse.Namespace) -> None:
    from benchmarks.accuracy.long_form import build_conversation

    args.out.mkdir(parents=True, exist_ok=True)
    wav = args.out / f"conv_{args.minutes:g}min.wav"
    rttm = build_conversation(wav, args.minutes * 60, args.speakers, seed=args.seed)
    print(f"built {wav} and {rttm}")


def ours(args: argparse.Namespace) -> dict:
    import torch

    from diarize import Diarizer, load_config
    from diarize.rttm import read_rttm, write_rttm

    torch.set_num_threads(args.threads)
    ref = next(iter(read_rttm(args.wav.with_suffix(".rttm")).values()))
    t0 = time.perf_counter()
    d = Diarizer(load_config("general"), model=str(args.nemo), device=args.device)
    load = time.perf_counter() - t0
    runs, out = [], Path(tempfile.mkdtemp()) / "ours.rttm"
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = d.run(args.wav, oracle_vad=ref)
        write_rttm(out, res.annotation)
        runs.append(time.perf_counter() - t0)
    return {"side": "ours", "load_s": load, "runs_s": runs, "speakers": res.num_speakers}


def nemo(args: argparse.Namespace) -> dict:
    import torch
    from omegaconf import OmegaConf

    from nemo.collections.asr.models import ClusteringDiarizer

    from diarize.config import WindowConfig  # NeMo's five scales are our defaults: one source for both sides

    scales = WindowConfig()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    manifest = work / "manifest.json"
    entry = {
        "audio_filepath": str(args.wav.resolve()),
        "offset": 0,
        "duration": None,
        "label": "infer",
        "text": "-",
        "num_speakers": None,
        "rttm_filepath": str(args.wav.with_suffix(".rttm").resolve()),
        "uem_filepath": None,
    }
    manifest.write_text(json.dumps(entry) + "\n")
    cfg = OmegaConf.create(
        {
            "device": args.device,
            "verbose": False,
            "batch_size": 64,
            "num_workers": 1,
            "sample_rate": 16000,
            "diarizer": {
                "manifest_filepath": str(manifest),
                "out_dir": str(work / "out"),
                "oracle_vad": True,
                "collar": 0.25,
                "ignore_overlap": True,
                "vad": {"model_path": None, "external_vad_manifest": None, "parameters": {}},
                "speaker_embeddings": {
                    "model_path": str(args.nemo),
                    "parameters": {
                        "window_length_in_sec": scales.window_lengths,
                        "shift_length_in_sec": scales.shifts,
                        "multiscale_weights": scales.weights,
                        "save_embeddings": False,
                    },
                },
                "clustering": {
                    "parameters": {
                        "oracle_num_speakers": False,
                        "max_num_speakers": 8,
                        "enhanced_count_thres": 80,
                        "max_rp_threshold": 0.25,
                        "sparse_search_volume": 30,
                        "maj_vote_spk_count": False,
                        # NeMo's meeting/telephonic YAMLs: long-form clustering past 10,000 base segments
                        "chunk_cluster_count": 50,
                        "embeddings_per_chunk": 10000,
                    }
                },
            },
        }
    )
    t0 = time.perf_counter()
    d = ClusteringDiarizer(cfg=cfg)
    load = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        d.diarize()
        runs.append(time.perf_counter() - t0)
    rttm = next((work / "out" / "pred_rttms").glob("*.rttm"))
    speakers = len({line.split()[7] for line in rttm.read_text().splitlines() if line.strip()})
    return {"side": "nemo", "load_s": load, "runs_s": runs, "speakers": speakers}


def show(r: dict, audio_s: float) -> str:
    best = min(r["runs_s"])
    return (
        f"{r['side']:4s}: load {r['load_s']:.2f} s, diarize "
        + ", ".join(f"{t:.2f}" for t in r["runs_s"])
        + f" s (best {best:.2f} s = {best / audio_s * 3600:.1f} s per hour of audio), {r['speakers']} speakers"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["build", "ours", "nemo", "both"])
    ap.add_argument("wav", type=Path, nargs="?")
    ap.add_argument("nemo", type=Path, nargs="?", help="a TitaNet .nemo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nemo-python", help="both: the python of a venv with nemo_toolkit")
    ap.add_argument("--minutes", type=float, default=10.0, help="build")
    ap.add_argument("--speakers", type=int, default=5, help="build")
    ap.add_argument("--seed", type=int, default=0, help="build")
    ap.add_argument("--out", type=Path, default=Path("/tmp/e2e"), help="build")
    ap.add_argument("--json", action="store_true", help="ours/nemo: print the result as JSON")
    args = ap.parse_args(argv)
    if args.mode == "build":
        build(args)
        return 0
    if args.wav is None or args.nemo is None:
        ap.error(f"{args.mode} needs WAV and a TitaNet .nemo")
    import soundfile as sf

    audio_s = sf.info(str(args.wav)).duration
    if args.mode in ("ours", "nemo"):
        r = (ours if args.mode == "ours" else nemo)(args)
        print(json.dumps(r) if args.json else show(r, audio_s))
        return 0
    if not args.nemo_python:
        ap.error("both needs --nemo-python")
    results = {}
    for side, python in (("ours", sys.executable), ("nemo", args.nemo_python)):
        # This module again, one side alone; from the checkout's root, where NeMo's Python finds `diarize` too.
        cmd = [python, "-m", __spec__.name, side, str(args.wav.resolve()), str(args.nemo.resolve()), "--json"]
        cmd += ["--device", args.device, "--threads", str(args.threads), "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if done.returncode:
            sys.stderr.write(done.stderr[-3000:])
            raise SystemExit(f"nemo_e2e: the {side} run failed (exit {done.returncode})")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
        print(show(results[side], audio_s), flush=True)
    ratio = min(results["nemo"]["runs_s"]) / min(results["ours"]["runs_s"])
    print(f"{audio_s:.0f} s of audio on {args.device}: ours is {ratio:.2f}x NeMo's speed (best run against best run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
