"""The same answer however the audio is stored (issue 32, item 4).

Each recording is written again as a file in several ways that a user's copy of it may differ by, and
diarized with the same config; the report says how often the speaker count stays what the original
(16 kHz 16-bit WAV) gives, and how far pooled forgiving DER moves between the encodings.

    python -m benchmarks.accuracy.stability                               # the six shared recordings
    python -m benchmarks.accuracy.stability --heldout /tmp/heldout/dev --every 3   # plus every 3rd dev conversation
    python -m benchmarks.accuracy.stability --config exact --json out.json
    python -m benchmarks.accuracy.stability --heldout /tmp/heldout/dev --every 3 --cache /tmp/stab   # keep embeddings
    python -m benchmarks.accuracy.stability --heldout /tmp/heldout/dev --every 3 --cache /tmp/stab -s split_threshold=0.5

With `--cache DIR` each copy's speech regions and embeddings (the pipeline's `speech` and `embed` stages) are
kept in DIR/<uri>/<encoding>.npz and later runs only cluster and assemble (`label`, `assemble`: what
`diarize run` composes), so clustering variants (`-s field=value`, as in heldout.py) are re-scored over every
copy in seconds. The cache is only valid for the config's VAD, window and embedding settings (delete it
after changing them).

Encodings: 8 / 22.05 / 44.1 / 48 kHz as 16-bit PCM and as 32-bit float (resampled with
scipy.signal.resample_poly from the 16 kHz original), 16 kHz float, gain -20 / -6 / +6 dB (the +6 dB
gain is lowered to what the file's peak allows: no clipping), and triangular dither of one 16-bit LSB.
Forgiving DER: 0.25 s collar each side, overlap ignored; system VAD, unknown count.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import warnings
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf


from pyannote.metrics.diarization import DiarizationErrorRate

from benchmarks import DATA
from benchmarks.accuracy.heldout import add_set_option, clustering_overrides
from diarize import Diarizer, load_config, pipeline
from diarize.rttm import read_rttm

# name -> (sample rate, soundfile subtype, gain in dB, dither)
ENCODINGS: dict[str, tuple[int, str, float, bool]] = {
    "16k-int16": (16000, "PCM_16", 0.0, False),  # the original: every other one is compared with it
    "16k-float": (16000, "FLOAT", 0.0, False),
    "8k-int16": (8000, "PCM_16", 0.0, False),
    "8k-float": (8000, "FLOAT", 0.0, False),
    "22k-int16": (22050, "PCM_16", 0.0, False),
    "22k-float": (22050, "FLOAT", 0.0, False),
    "44k-int16": (44100, "PCM_16", 0.0, False),
    "44k-float": (44100, "FLOAT", 0.0, False),
    "48k-int16": (48000, "PCM_16", 0.0, False),
    "48k-float": (48000, "FLOAT", 0.0, False),
    "gain-20dB": (16000, "FLOAT", -20.0, False),
    "gain-6dB": (16000, "PCM_16", -6.0, False),
    "gain+6dB": (16000, "FLOAT", 6.0, False),
    "dither": (16000, "PCM_16", 0.0, True),
}


def encode(x: np.ndarray, path: Path, rate: int, subtype: str, gain_db: float, dither: bool, seed: int) -> None:
    """Write the 16 kHz waveform `x` to `path` as one encoding of ENCODINGS."""
    from scipy.signal import resample_poly

    if rate != 16000:
        g = gcd(rate, 16000)
        x = resample_poly(x, rate // g, 16000 // g)
    if gain_db > 0:  # no clipping: at most what the peak allows
        gain_db = min(gain_db, 20 * np.log10(0.99 / max(np.abs(x).max(), 1e-9)))
    x = x * 10 ** (gain_db / 20)
    if dither:
        rng = np.random.default_rng(seed)
        x = x + (rng.random(len(x)) - rng.random(len(x))) / 32768.0
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), rate, subtype=subtype)


def recordings(heldout: Path | None, every: int) -> list[tuple[str, Path, Path]]:
    """(uri, wav, rttm) of the shared recordings, then every `every`-th held-out conversation."""
    out = []
    with open(DATA / "diarization" / "manifest.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            wav = DATA / row["wav"]
            out.append((wav.stem, wav, DATA / row["rttm"]))
    if heldout is not None:
        with open(heldout / "list.tsv") as f:
            uris = [r["uri"] for r in csv.DictReader(f, delimiter="\t")]
        out += [(u, heldout / f"{u}.wav", heldout / f"{u}.rttm") for u in uris[::every]]
    return out


def diarize_copy(d: Diarizer, x: np.ndarray, name: str, seed: int, wav: Path, cached: Path | None):
    """The result of `d`'s config and model on `x` written as encoding `name` to `wav`: the pipeline's stages,
    as `diarize run` composes them. With `cached`, the embeddings are read from that file (saved there first
    when missing), so that only the clustering and output stages run."""
    if cached is not None and cached.exists():
        embedded = pipeline.load_embedded(cached)
        if embedded.speech.found_by is None:  # a cache from before `Speech.found_by`: made with this VAD
            embedded.speech.found_by = d.config.vad.method
    else:
        encode(x, wav, *ENCODINGS[name], seed=seed)
        source = pipeline.open_source(wav, uri=wav.stem)
        embedded = pipeline.embed(source, pipeline.speech(source, d.config), d.model, d.config)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            pipeline.save_embedded(embedded, cached)
    return pipeline.assemble(embedded, pipeline.label(embedded, d.config), d.config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="general")
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--heldout", type=Path, help="a built held-out set (e.g. /tmp/heldout/dev) to add")
    ap.add_argument("--every", type=int, default=1, help="with --heldout: every N-th conversation")
    ap.add_argument("--encodings", default=",".join(ENCODINGS), help="comma-separated subset of the encodings")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cache", type=Path, help="keep each copy's embeddings here; later runs only re-cluster")
    add_set_option(ap)
    args = ap.parse_args(argv)
    names = args.encodings.split(",")
    if names[0] != "16k-int16":
        names.insert(0, "16k-int16")
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    cfg = clustering_overrides(load_config(args.config), None, args.sets_)
    d = Diarizer(cfg, model=args.model)
    counts: dict[str, dict[str, int]] = {}
    metric = {n: DiarizationErrorRate(collar=0.5, skip_overlap=True) for n in names}
    recs = recordings(args.heldout, args.every)
    print(f"config={args.config} model={d.model.name} recordings={len(recs)} encodings={len(names)}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (uri, wav, rttm) in enumerate(recs):
            x, sr = sf.read(str(wav), dtype="float32")
            assert sr == 16000 and x.ndim == 1, wav
            ref = read_rttm(rttm)[uri]
            row = counts.setdefault(uri, {"reference": len(ref.labels())})
            for n in names:
                cached = args.cache / uri / f"{n}.npz" if args.cache else None
                res = diarize_copy(d, x, n, i, Path(tmp) / f"{uri}.wav", cached)
                row[n] = res.num_speakers
                metric[n](ref, res.annotation)
            moved = [n for n in names if row[n] != row["16k-int16"]]
            print(f"{uri:32s} ref {row['reference']:2d}  original {row['16k-int16']:2d}  changed: {moved or '-'}")
    changes = [(uri, n, row["16k-int16"], row[n]) for uri, row in counts.items() for n in names[1:]]
    same = sum(a == b for _, _, a, b in changes)
    pooled = {n: 100 * abs(metric[n]) for n in names}
    print("\npooled forgiving DER per encoding:")
    for n in names:
        print(f"  {n:10s} {pooled[n]:6.2f} %")
    spread = max(pooled.values()) - min(pooled.values())
    print(
        f"\nunchanged counts: {same}/{len(changes)} = {100 * same / max(len(changes), 1):.1f} %;"
        f" pooled forgiving DER spread {spread:.2f} points"
    )
    if args.json:
        out = {"config": args.config, "counts": counts, "pooled_der": pooled, "unchanged": [same, len(changes)]}
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
