"""Overlapped speech (issue 12 item 4): how much of it the default VAD finds (precision / recall, in
seconds pooled over files) and what overlap-aware output does to DER, with the default system VAD.

    python -m benchmarks.accuracy.overlap_bench --sets dev                      # the default settings
    python -m benchmarks.accuracy.overlap_bench --sets dev --grid               # sweep onset/offset x assignment
    python -m benchmarks.accuracy.overlap_bench --sets test shared -o overlap_onset=0.3 -o overlap_offset=0.2

Sets: dev / test = the held-out simulated sets of benchmarks/accuracy/heldout.py (built in HELDOUT/<set>, with
their system-VAD embedding cache, HELDOUT/<set>/cache/system-fast); shared = the six real recordings in
../shared/data/diarization (linked and embedded here on first use, as `heldout --sets shared` does, into
CACHE/shared/cache/system-fast).
Segmentation windows (every window's powerset log-probabilities, `pyannet.window_log_probs`) are
cached per file in CACHE/<set>/lp/<uri>.npz, so that the overlap decision (`-o` fields of
SegmentationVADConfig / VADConfig) and the second-speaker choice (`--assign`) are re-scored in
seconds: speech regions and embeddings come from the embedding cache, overlap regions and local
speakers from the segmentation cache; clustering and output assembly are the pipeline's stages
(`pipeline.label`, `pipeline.assemble`).

--assign: local = match the segmentation windows' local speakers to clusters (diarize.overlap,
the default; gated by overlap_min_solo_s and overlap_min_similarity, swept by --match-grid);
context = the nearest other speaker heard within overlap_context_s (the previous default);
none = no second speaker (overlap_assignment off).
Scores: forgiving = 0.25 s collar each side + overlap ignored; full = no collar, overlap scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np


from benchmarks import DATA
from benchmarks.accuracy import heldout
from diarize import pipeline
from diarize import regions as rg
from diarize.audio import load_audio
from diarize.config import DiarizerConfig, SegmentationVADConfig, load_config
from diarize.formats import overlap_regions
from diarize.models import load_model
from diarize.models.pyannet import FrameScores, frame_scores, load_pyannet, window_log_probs
from diarize.rttm import read_rttm
from diarize.score import COLLAR_PRESETS, ScoreReport, score
from diarize.vad import segmentation_regions

ASSIGN = ("local", "context", "none")


def reference_overlap(ref) -> np.ndarray:
    """(K, 2) regions where the reference has two or more speakers."""
    return rg.merge(rg.as_regions([(a, b) for a, b, _ in overlap_regions(ref)]))


def segmentation(s: heldout.Session, folder: Path, cfg: DiarizerConfig, model_box: list) -> FrameScores:
    """The segmentation model's frame scores and local speakers of one file, cached as log-probs."""
    path = folder / f"{s.uri}.npz"
    if not path.exists():
        if not model_box:
            model_box.append(load_pyannet(device="cpu"))
        audio = load_audio(s.wav)
        starts, logp = window_log_probs(model_box[0], audio, cfg.vad.pyannote_seg.step_s)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, starts=starts, logp=logp.astype(np.float16), n=len(audio), step_s=cfg.vad.pyannote_seg.step_s)
        tmp.replace(path)
    z = np.load(path)
    return frame_scores(z["starts"], z["logp"].astype(np.float32), int(z["n"]), cfg.vad.pyannote_seg.soft)


def load_set(name: str, args, cfg: DiarizerConfig) -> list[tuple]:
    """(cached conversation, reference, frame scores, its `Embedded`, clustering) of every file of a set."""
    if name == "shared":
        set_dir = args.cache / "shared"
        sessions = heldout.link_shared(set_dir, args.data / "diarization")
        heldout.ensure_cache(sessions, set_dir, cfg, "system", load_model(args.model, "cpu"))
    else:
        set_dir = args.heldout / name
    cached = heldout.load_sessions(set_dir, "system", partial=name != "shared", mode=cfg.embedding.mode)
    seg_model: list = []
    out = []
    for c in cached:
        ref = read_rttm(c.session.rttm)[c.session.uri]
        frames = segmentation(c.session, args.cache / name / "lp", cfg, seg_model)
        out.append((c, ref, frames, c.embedded, pipeline.label(c.embedded, cfg)))
    return out


def evaluate(files: list[tuple], cfg: DiarizerConfig, assign: str) -> dict[str, float]:
    """Pooled forgiving / full DER (with components) and overlap precision / recall over `files`."""
    assigning = dataclasses.replace(cfg, vad=dataclasses.replace(cfg.vad, overlap_assignment=assign != "none"))
    reports = {p: ScoreReport() for p in COLLAR_PRESETS}
    hit = det = ref_s = out_hit = out_det = 0.0
    for c, ref, fs, embedded, clusters in files:
        uri = c.session.uri
        # The VAD's own overlap rule (`overlap_rule`); the block only sets the length (no energy rescue here).
        duration = embedded.speech.duration
        ov = segmentation_regions(fs, np.zeros(int(round(duration * 16000)), np.float32), cfg.vad).overlap
        ov = rg.clip(ov, 0.0, duration)
        ref_ov = reference_overlap(ref)
        hit += rg.duration(rg.intersect(ov, ref_ov))
        det += rg.duration(ov)
        ref_s += rg.duration(ref_ov)
        speech = dataclasses.replace(embedded.speech, overlap=ov, local=fs.local if assign == "local" else None)
        hyp = pipeline.assemble(dataclasses.replace(embedded, speech=speech), clusters, assigning).annotation
        out_ov = reference_overlap(hyp)  # where the output names two or more speakers
        out_hit += rg.duration(rg.intersect(out_ov, ref_ov))
        out_det += rg.duration(out_ov)
        for p, (collar, skip) in COLLAR_PRESETS.items():
            reports[p].files[uri] = score({uri: ref}, {uri: hyp}, None, collar, skip, jer=False).files[uri]
    out = {"precision": hit / max(det, 1e-9), "recall": hit / max(ref_s, 1e-9), "ref_overlap_s": ref_s}
    out.update({"out_precision": out_hit / max(out_det, 1e-9), "out_recall": out_hit / max(ref_s, 1e-9)})
    for p, r in reports.items():
        t = r.total.percent()
        out.update({f"{p}_{k}": t[k] for k in ("der", "miss", "false_alarm", "confusion")})
    return out


def row(label: str, m: dict[str, float]) -> str:
    return (
        f"| {label} | {m['precision']:.2f} | {m['recall']:.2f} | {m['out_precision']:.2f} | {m['out_recall']:.2f} | "
        f"{m['forgiving_der']:.2f} | "
        f"{m['full_der']:.2f} ({m['full_miss']:.2f} / {m['full_false_alarm']:.2f} / {m['full_confusion']:.2f}) |"
    )


def with_overrides(name: str, items: list[str]) -> DiarizerConfig:
    """Preset `name` with `field=value` overrides of SegmentationVADConfig or VADConfig fields
    (the config loader's own `section.key=value` overrides, so values are checked as in `--set`)."""
    seg = {f.name for f in dataclasses.fields(SegmentationVADConfig)}
    qualified = [f"vad.{'pyannote_seg.' if item.split('=', 1)[0] in seg else ''}{item}" for item in items]
    return load_config(name, qualified)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["dev"], choices=["dev", "test", "shared"])
    ap.add_argument("--heldout", type=Path, default=Path("/tmp/heldout"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/overlap_cache"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("-o", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--assign", nargs="+", default=["local"], choices=ASSIGN)
    ap.add_argument("--grid", action="store_true", help="sweep overlap_onset x overlap_offset x --assign")
    ap.add_argument(
        "--match-grid", action="store_true", help="sweep overlap_min_solo_s x overlap_min_similarity (assign local)"
    )
    ap.add_argument("--conditions", nargs="*", help="only these conditions (e.g. overlap)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    import torch

    torch.set_num_threads(1)
    cfg = with_overrides(args.config, args.overrides)
    print(f"config={args.config} overrides={args.overrides} model={args.model}")
    for name in args.sets:
        files = load_set(name, args, cfg)
        if args.conditions:
            files = [f for f in files if f[0].session.condition in args.conditions]
        ref_s = sum(rg.duration(reference_overlap(f[1])) for f in files)
        print(f"\n### {name}: {len(files)} files, reference overlap {ref_s:.1f} s\n")
        print(
            "| setting | overlap precision | overlap recall | output overlap precision | output overlap recall "
            "| forgiving DER % | full DER % (miss / FA / conf.) |"
        )
        print("|---|---|---|---|---|---|---|")
        if args.match_grid:
            for solo, sim in itertools.product([0.17, 0.5, 1.0, 2.0, 4.0], [-1.0, 0.4, 0.5, 0.6]):
                c2 = with_overrides(
                    args.config, [*args.overrides, f"overlap_min_solo_s={solo}", f"overlap_min_similarity={sim}"]
                )
                print(row(f"min solo {solo} s, min cosine {sim}", evaluate(files, c2, "local")), flush=True)
            continue
        if args.grid:
            onsets = [0.5, 0.4, 0.3, 0.2, 0.1]
            settings = [(on, off) for on in onsets for off in sorted({on, round(0.5 * on, 3)})]
        else:
            s = cfg.vad.pyannote_seg
            settings = [(s.overlap_onset, s.overlap_offset)]
        for (on, off), assign in itertools.product(settings, args.assign):
            c2 = with_overrides(args.config, [*args.overrides, f"overlap_onset={on}", f"overlap_offset={off}"])
            print(row(f"onset {on} offset {off} assign {assign}", evaluate(files, c2, assign)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
