"""Overlapped speech found by pyannote.audio 3.4's speaker-count recipe and by ours, with the same
segmentation-3.0 weights, scored on the same frames (issue 33).

Step 1, in a side venv that has pyannote.audio 3.4.0 (never a project dependency; how to install it on
torch 2.13: RESULTS.md, "Against pyannote.audio's own recipe"): run the recipe of its `SpeakerDiarization.apply` up to the
speaker count (10 s windows every 1 s, powerset -> hard local speakers, `speaker_count` with no
warm-up) and dump every file's per-frame count:

    /work/pyannote-venv/bin/python -m benchmarks.accuracy.overlap_vs_pyannote dump /tmp/pyannote_counts.npz \\
        --sets shared dev

Step 2, in the project venv: our rules on the same files and the table (pooled over each set's
frames; frame t is scored at its centre against the reference's number of speakers there):

    python -m benchmarks.accuracy.overlap_vs_pyannote score /tmp/pyannote_counts.npz --sets shared dev [--steps 1 2.5]

Rows: pyannote = its count as dumped (>= 1 speech, >= 2 overlap, no other rule); bare count = the
same recipe on our `FrameScores.count`; count / score = our `vad.segmentation_regions` with
`overlap_rule` count (pyannote's rule with our region rules) / score (the default), i.e. speech and overlap
regions as the pipeline gets them (hysteresis, min durations). Only the files in the dump are
scored, so every row is on the same frames (COUNTS = `none`: no pyannote row, every file).
Columns: overlap recall / precision; speech miss and false alarm as % of reference speech; and
the share of frames where our bare count equals pyannote's.

Sets: shared = the four shared AMI / pyannote recordings with overlap; dev / test = <uri>.wav +
<uri>.rttm under HELDOUT/<set> (test: report once, never choose on it).
Our segmentation windows are cached per file and step in CACHE/<set>/<step>/<uri>.npz.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np

from benchmarks import DATA

DIARIZATION = DATA / "diarization"
SHARED = ["ami_pyannote_debug/dev00", "ami_pyannote_debug/dev01", "ami_pyannote_debug/trn04", "pyannote_sample/sample"]
SEGMENTATION = Path.home() / ".cache" / "diarize" / "pyannote_segmentation_3.0.bin"


def set_files(name: str, heldout: Path, only: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(uri, wav, rttm) of every file of a set (with `only`: whose uri contains one of these)."""
    if name == "shared":
        files = [(Path(s).name, DIARIZATION / f"{s}.wav", DIARIZATION / f"{s}.rttm") for s in SHARED]
    else:
        wavs = sorted((heldout / name).glob("*.wav"))
        files = [(w.stem, w, w.with_suffix(".rttm")) for w in wavs if w.with_suffix(".rttm").exists()]
    return [f for f in files if not only or any(o in f[0] for o in only)]


def read_wav(path: Path) -> np.ndarray:
    """16 kHz 16-bit mono PCM as float32 in [-1, 1] (the stdlib only: the side venv has no decoder)."""
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (16000, 2, 1):
            raise ValueError(f"{path}: expected 16 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


# --------------------------------------------------------------------------- step 1: pyannote
def dump(out: Path, sets: list[str], heldout: Path, only: list[str] | None) -> None:
    import torch
    from pyannote.audio import Model
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.pipelines import SpeakerDiarization

    # torch >= 2.6 unpickles weights-only: allow the checkpoint's own classes (and nothing else).
    allowed = [torch.torch_version.TorchVersion, Problem, Resolution, Specifications]
    with torch.serialization.safe_globals(allowed):
        model = Model.from_pretrained(str(SEGMENTATION), strict=True)
    # OracleClustering: no embedding model is loaded; the steps up to the count are the pipeline's own.
    pipeline = SpeakerDiarization(segmentation=model, segmentation_step=0.1, clustering="OracleClustering")
    pipeline.segmentation_batch_size = 32  # how many windows per call: the same outputs, faster
    arrays = {}
    for name in sets:
        for uri, wav, _ in set_files(name, heldout, only):
            audio = torch.from_numpy(read_wav(wav))[None]
            segmentations = pipeline.get_segmentations({"waveform": audio, "sample_rate": 16000, "uri": uri})
            count = pipeline.speaker_count(
                segmentations, pipeline._segmentation.model.receptive_field, warm_up=(0.0, 0.0)
            )
            frames = count.sliding_window
            arrays[f"{name}/{uri}"] = count.data[:, 0].astype(np.uint8)
            arrays[f"{name}/{uri}/frames"] = np.array([frames.start, frames.duration, frames.step])
            np.savez(out, **arrays)  # after every file, so that a long run can be read while it goes
            print(f"{name}/{uri}: {len(count.data)} frames", flush=True)


# --------------------------------------------------------------------------- step 2: ours and the table
def reference_count(rttm: Path, uri: str, times: np.ndarray) -> np.ndarray:
    """(F,) number of reference speakers talking at each time."""
    from diarize.rttm import read_rttm

    ref = read_rttm(rttm)[uri]
    count = np.zeros(len(times), dtype=np.int64)
    for label in ref.labels():
        for seg in ref.label_timeline(label).support():
            count += (times >= seg.start) & (times < seg.end)
    return count


def in_regions(regions: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(F,) bool: each time inside one of the sorted, disjoint (K, 2) regions."""
    if len(regions) == 0:
        return np.zeros(len(times), dtype=bool)
    i = np.searchsorted(regions[:, 0], times, side="right") - 1
    return (i >= 0) & (times < regions[np.clip(i, 0, None), 1])


def our_scores(uri: str, wav: Path, step_s: float, folder: Path, model_box: list):
    """Our `FrameScores` of one file (window log-probabilities cached), and its samples."""
    from diarize.models.pyannet import frame_scores, load_pyannet, window_log_probs

    audio = read_wav(wav)
    path = folder / f"{uri}.npz"
    if not path.exists():
        if not model_box:
            model_box.append(load_pyannet(device="cpu"))
        starts, logp = window_log_probs(model_box[0], audio, step_s)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(path, starts=starts, logp=logp.astype(np.float16))
    z = np.load(path)
    return frame_scores(z["starts"], z["logp"].astype(np.float32), len(audio)), audio


class Tally:
    """Frame counts pooled over a set's files."""

    def __init__(self) -> None:
        self.n = dict.fromkeys(("ref_sp", "ref_ov", "hyp_ov", "hit_ov", "miss", "fa", "agree", "frames"), 0)

    def add(self, ref: np.ndarray, speech: np.ndarray, overlap: np.ndarray, agree: np.ndarray | None = None) -> None:
        n = self.n
        n["ref_sp"] += int((ref >= 1).sum())
        n["ref_ov"] += int((ref >= 2).sum())
        n["hyp_ov"] += int(overlap.sum())
        n["hit_ov"] += int((overlap & (ref >= 2)).sum())
        n["miss"] += int(((ref >= 1) & ~speech).sum())
        n["fa"] += int(((ref == 0) & speech).sum())
        n["frames"] += len(ref)
        n["agree"] += int(agree.sum()) if agree is not None else 0

    def row(self, label: str) -> str:
        n = self.n
        rec = n["hit_ov"] / max(n["ref_ov"], 1)
        prec = n["hit_ov"] / max(n["hyp_ov"], 1)
        miss = 100 * n["miss"] / max(n["ref_sp"], 1)
        fa = 100 * n["fa"] / max(n["ref_sp"], 1)
        agree = f"{100 * n['agree'] / max(n['frames'], 1):.1f} %" if n["agree"] else ""
        return f"| {label} | {rec:.3f} | {prec:.3f} | {miss:.2f} | {fa:.2f} | {agree} |"


def score(
    counts_path: Path,
    sets: list[str],
    steps: list[float],
    heldout: Path,
    cache: Path,
    config: str,
    only: list[str] | None,
) -> None:
    import dataclasses

    from diarize.config import load_config
    from diarize.vad import segmentation_regions, speaker_count

    z = np.load(counts_path) if counts_path.name != "none" else {}
    base = load_config(config).vad
    model_box: list = []
    for name in sets:
        files = set_files(name, heldout, only if name != "shared" else None)
        if z:  # every row on the same frames: the files pyannote's count was dumped for
            files = [f for f in files if f"{name}/{f[0]}" in z]
        if not files:
            print(f"\n{name}: no files")
            continue
        tallies: dict[str, Tally] = {}
        for uri, wav, rttm in files:
            key = f"{name}/{uri}"
            for step in steps:
                fs, audio = our_scores(uri, wav, step, cache / name / str(step), model_box)
                times = fs.times
                ref = reference_count(rttm, uri, times)
                ours_count = speaker_count(fs.count).astype(np.int64)
                theirs = None
                if z:
                    # pyannote's frame i is centred at start + i * step + duration / 2; the grids coincide.
                    start, duration, pstep = z[f"{key}/frames"]
                    idx = np.round((times - start - duration / 2) / pstep).astype(np.int64)
                    theirs = z[key][np.clip(idx, 0, len(z[key]) - 1)].astype(np.int64)
                    theirs[(idx < 0) | (idx >= len(z[key]))] = 0
                    if step == steps[0]:
                        tallies.setdefault("pyannote 3.4 recipe (step 1 s)", Tally()).add(ref, theirs >= 1, theirs >= 2)
                # pyannote's recipe on our count: no region rules at all.
                tallies.setdefault(f"ours, bare count, step {step} s", Tally()).add(
                    ref, ours_count >= 1, ours_count >= 2, None if theirs is None else ours_count == theirs
                )
                for rule in ("count", "score"):
                    seg = dataclasses.replace(base.pyannote_seg, step_s=step, overlap_rule=rule)
                    found = segmentation_regions(fs, audio, dataclasses.replace(base, pyannote_seg=seg))
                    tallies.setdefault(f"ours, rule {rule}, step {step} s", Tally()).add(
                        ref, in_regions(found.speech, times), in_regions(found.overlap, times)
                    )
            print(f"  {key} done", file=sys.stderr, flush=True)
        secs = next(iter(tallies.values())).n
        print(
            f"\n### {name}: {len(files)} files, reference speech {secs['ref_sp'] * 270 / 16000:.0f} s, "
            f"overlap {secs['ref_ov'] * 270 / 16000:.0f} s\n"
        )
        print("| recipe | overlap recall | overlap precision | speech miss % | speech FA % | count = pyannote's |")
        print("|---|---|---|---|---|---|")
        for label, t in tallies.items():
            print(t.row(label))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="pyannote's counts (side venv)")
    s = sub.add_parser("score", help="our rules and the table (project venv)")
    for p in (d, s):
        p.add_argument("counts", type=Path)
        p.add_argument("--sets", nargs="+", default=["shared"], choices=["shared", "dev", "test"])
        p.add_argument("--heldout", type=Path, default=Path("/tmp/heldout"))
        p.add_argument("--only", nargs="+", help="dev / test: only uris containing one of these (e.g. overlap noise)")
    s.add_argument("--steps", nargs="+", type=float, default=[1.0])
    s.add_argument("--cache", type=Path, default=Path("/tmp/overlap_vs_pyannote"))
    s.add_argument("--config", default="general")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        dump(args.counts, args.sets, args.heldout, args.only)
        return 0
    import torch

    torch.set_num_threads(1)
    score(args.counts, args.sets, args.steps, args.heldout, args.cache, args.config, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
