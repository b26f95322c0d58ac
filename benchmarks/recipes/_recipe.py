"""Shared part of the corpus DER recipes (benchmarks/recipes/ami.py, callhome.py, sre2000.py).

Each recipe turns a corpus the user owns into a list of `Recording`s and calls `run_recipe`,
which diarizes every recording with `diarize.Diarizer` in three conditions

    oracle_known    oracle VAD (speech = union of the reference turns), known #speakers
    oracle_unknown  oracle VAD, #speakers estimated (NME-SC)
    system_unknown  the preset's own VAD, #speakers estimated

scores them with `diarize.score.score` (with the corpus UEM where it has one) under two presets

    forgiving  0.25 s collar on EACH side of reference boundaries + overlapped speech not scored
               (NeMo's / the TitaNet model card's convention; md-eval `-c 0.25 -1`)
    full       no collar, overlapped speech scored

and prints the DER pooled over files (total error seconds / total scored seconds) beside the
TitaNet-Large model-card numbers, which are oracle VAD + forgiving. Written to --out:

    hyp/<condition>/<uri>.rttm   hypotheses; a rerun skips every file whose RTTM exists (resume)
    per_file.csv                 one row per (file, condition), both presets
    results.json                 pooled and per-file numbers, settings, model-card numbers
    audio_cache/                 WAVs converted from shorten-compressed SPHERE (CALLHOME, SRE2000)

Layout problems exit with status 2 and one line naming the path that was expected.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


from pyannote.core import Annotation, Timeline

from diarize import Diarizer, load_config
from diarize.audio import AudioError
from diarize.rttm import FormatError, read_rttm, write_rttm
from diarize.score import COLLAR_PRESETS as PRESETS, ScoreReport, score

CONDITIONS = {  # name -> (oracle VAD, known #speakers)
    "oracle_known": (True, True),
    "oracle_unknown": (True, False),
    "system_unknown": (False, False),
}
LABELS = {
    "oracle_known": "oracle VAD, known #spk",
    "oracle_unknown": "oracle VAD, unknown #spk",
    "system_unknown": "system VAD, unknown #spk",
}
PRESET_NAMES = ("forgiving", "full")


class RecipeError(Exception):
    """The corpus is not laid out as expected (or cannot be read); the message says what was expected."""


@dataclass
class Recording:
    """One recording to diarize and score.

    `channel` None mixes all channels to mono with the library's loader, i.e. their mean
    (= their sum x 0.5; a constant gain changes neither the energy VAD, whose thresholds are
    relative to the file's own noise floor, nor the embeddings, whose features are mean-normalised).
    An int keeps only that channel (0-based).
    """

    uri: str
    audio: Path
    reference: Annotation
    uem: Timeline | None = None
    channel: int | None = None
    num_speakers: int | None = None  # for the known-#spk condition; default: speakers in the reference

    @property
    def ref_speakers(self) -> int:
        if self.num_speakers is not None:
            return self.num_speakers
        ref = self.reference.crop(self.uem) if self.uem is not None else self.reference
        return len(ref.labels())


# --------------------------------------------------------------------------- layout helpers


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise RecipeError(f"expected {what} at {path} (directory not found)")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise RecipeError(f"expected {what} at {path} (file not found)")
    return path


def limited(items: Sequence, limit: int | None) -> list:
    """The first `limit` items (all when None): --limit also limits which files must exist."""
    return list(items) if limit is None else list(items)[: max(limit, 0)]


def read_list(path: Path, what: str) -> list[str]:
    require_file(path, what)
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def load_rttm(path: Path, what: str) -> dict[str, Annotation]:
    require_file(path, what)
    try:
        return read_rttm(path)
    except FormatError as e:
        raise RecipeError(str(e)) from None


# --------------------------------------------------------------------------- SPHERE


def sphere_header(path: Path) -> dict[str, str]:
    """The `key -type value` fields of a NIST SPHERE header (values as text, type dropped)."""
    with open(path, "rb") as f:
        head = f.read(1024)
        if not head.startswith(b"NIST_1A"):
            raise RecipeError(f"{path}: not a NIST SPHERE file (expected a 'NIST_1A' header)")
        lines = head.split(b"\n", 2)
        try:
            size = int(lines[1].strip())
        except (IndexError, ValueError):
            raise RecipeError(f"{path}: malformed SPHERE header (no header size on line 2)") from None
        if size > len(head):
            head += f.read(size - len(head))
    fields: dict[str, str] = {}
    for raw in head[:size].decode("latin-1").splitlines()[2:]:
        line = raw.strip()
        if line == "end_head":
            break
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].startswith("-"):
            fields[parts[0]] = parts[2].strip()
    return fields


def readable_sphere(path: Path, cache_dir: Path) -> Path:
    """A path libsndfile can read for SPHERE file `path`.

    libsndfile reads uncompressed SPHERE (pcm, ulaw, alaw) but not LDC's "shorten" compression
    (`sample_coding` such as `ulaw,embedded-shorten-v2.00`), which CALLHOME and SRE2000 use.
    Those are converted once with `sph2pipe -f wav -p` (16-bit PCM, all channels) into
    `cache_dir/<stem>.wav` when sph2pipe is on PATH; otherwise this fails saying how to convert.
    """
    coding = sphere_header(path).get("sample_coding", "pcm")
    if "shorten" not in coding.lower():
        return path
    out = cache_dir / f"{path.stem}.wav"
    if out.is_file() and out.stat().st_size > 0:
        return out
    exe = shutil.which("sph2pipe")
    if exe is None:
        raise RecipeError(
            f"{path}: SPHERE sample_coding '{coding}' is shorten-compressed, which libsndfile cannot read; "
            f"put sph2pipe on PATH (the recipe then converts into {cache_dir}) or convert beforehand with "
            f"'sph2pipe -f wav -p {path} {out}'"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{path.stem}.partial.wav"
    proc = subprocess.run([exe, "-f", "wav", "-p", str(path), str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise RecipeError(f"{path}: sph2pipe failed (exit {proc.returncode}){': ' + msg[-1] if msg else ''}")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------- running


def add_common_arguments(ap: argparse.ArgumentParser, default_config: str) -> None:
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: hyp/<condition>/*.rttm, per_file.csv, results.json (reruns resume)",
    )
    ap.add_argument("--limit", type=int, default=None, help="only the first N recordings (quick check)")
    ap.add_argument(
        "--model", default=None, help="speaker model: titanet-large, campplus, a .nemo path, ... [the config's, 'auto']"
    )
    ap.add_argument("--config", default=default_config, help=f"preset or YAML path [{default_config}]")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N [the config's, 'auto']")


def _load_audio_arg(rec: Recording):
    """What to hand Diarizer.run: the path, or (waveform, sample_rate) for one channel."""
    if rec.channel is None:
        return rec.audio, None
    import soundfile as sf

    try:
        data, sr = sf.read(str(rec.audio), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{rec.audio}: not a readable audio file ({e})") from None
    if rec.channel >= data.shape[1]:
        raise RecipeError(f"{rec.audio}: has {data.shape[1]} channel(s), expected channel {rec.channel + 1}")
    return data[:, rec.channel], sr


def _hyp_path(out: Path, condition: str, uri: str) -> Path:
    return out / "hyp" / condition / f"{uri}.rttm"


def _read_hyp(path: Path, uri: str) -> Annotation:
    return read_rttm(path).get(uri, Annotation(uri=uri))


def _pct(report: ScoreReport, uri: str | None = None) -> dict[str, float]:
    return (report.total if uri is None else report.files[uri]).percent()


def run_recipe(
    title: str,
    recordings: Sequence[Recording],
    args: argparse.Namespace,
    model_card: tuple[float, float] | None,
    model=None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Diarize, score, print the table and write the results. Returns the results dict.

    `model_card` = (known #spk, unknown #spk) DER% of TitaNet-Large with oracle VAD, forgiving.
    `model` is an already loaded SpeakerEmbedder (tests); otherwise `args.model` is loaded.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    recs = list(recordings)
    if args.limit is not None:
        recs = recs[: max(args.limit, 0)]
    if not recs:
        raise RecipeError("no recordings to run (empty list)")
    out: Path = args.out
    for cond in CONDITIONS:
        (out / "hyp" / cond).mkdir(parents=True, exist_ok=True)

    diarizer: Diarizer | None = None  # loaded only when some hypothesis is missing

    def get_diarizer() -> Diarizer:
        nonlocal diarizer
        if diarizer is None:
            cfg = load_config(args.config)
            diarizer = Diarizer(cfg, model=model if model is not None else args.model, device=args.device)
        return diarizer

    hyps: dict[str, dict[str, Annotation]] = {c: {} for c in CONDITIONS}
    t_start = time.perf_counter()
    for i, rec in enumerate(recs, 1):
        for cond, (oracle, known) in CONDITIONS.items():
            path = _hyp_path(out, cond, rec.uri)
            if path.is_file():
                hyps[cond][rec.uri] = _read_hyp(path, rec.uri)
                log(f"[{i}/{len(recs)}] {rec.uri} {cond}: hypothesis exists, skipped")
                continue
            d = get_diarizer()
            audio, sr = _load_audio_arg(rec)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*no speech found.*")
                res = d.run(
                    audio,
                    sr,
                    uri=rec.uri,
                    oracle_vad=rec.reference if oracle else None,
                    uem=rec.uem,
                    num_speakers=rec.ref_speakers if known else None,
                )
            ann = res.annotation
            ann.uri = rec.uri
            write_rttm(path, ann)
            # Score what was written (times rounded as in the RTTM), so a resumed run gives the same numbers.
            hyps[cond][rec.uri] = _read_hyp(path, rec.uri)
            log(
                f"[{i}/{len(recs)}] {rec.uri} {cond}: {res.duration:.1f} s audio, {res.num_speakers} speaker(s) "
                f"(ref {rec.ref_speakers}), {time.perf_counter() - t0:.1f} s"
            )

    refs = {r.uri: r.reference for r in recs}
    uems = {r.uri: r.uem for r in recs if r.uem is not None}
    if uems and len(uems) != len(recs):
        raise RecipeError("some recordings have a UEM and others not; expected all or none")
    reports: dict[tuple[str, str], ScoreReport] = {}
    for cond in CONDITIONS:
        for preset in PRESET_NAMES:
            collar, ignore = PRESETS[preset]
            reports[cond, preset] = score(
                refs, hyps[cond], uems or None, collar=collar, ignore_overlap=ignore, jer=False
            )

    model_name = diarizer.model.name if diarizer is not None else (args.model or "(resumed)")
    results: dict = {
        "corpus": title,
        "recordings": len(recs),
        "limited": args.limit is not None,
        "model": model_name,
        "config": str(args.config),
        "conventions": {
            "forgiving": "collar 0.25 s each side, overlap ignored",
            "full": "no collar, overlap scored",
            "pooling": "sum of errors / sum of scored time",
        },
        "conditions": {},
        "files": {},
    }
    for cond, (oracle, known) in CONDITIONS.items():
        hits = sum(len(hyps[cond][r.uri].labels()) == r.ref_speakers for r in recs)
        card = None
        if model_card is not None and oracle:
            card = model_card[0] if known else model_card[1]
        results["conditions"][cond] = {
            "forgiving": _pct(reports[cond, "forgiving"]),
            "full": _pct(reports[cond, "full"]),
            "speaker_count_accuracy": hits / len(recs),
            "model_card_forgiving": card,
        }
    rows = []
    for r in recs:
        per = results["files"].setdefault(r.uri, {"ref_speakers": r.ref_speakers, "audio": str(r.audio)})
        for cond in CONDITIONS:
            fg, full = _pct(reports[cond, "forgiving"], r.uri), _pct(reports[cond, "full"], r.uri)
            n_hyp = len(hyps[cond][r.uri].labels())
            per[cond] = {"hyp_speakers": n_hyp, "forgiving": fg, "full": full}
            rows.append(
                {
                    "uri": r.uri,
                    "condition": cond,
                    "ref_speakers": r.ref_speakers,
                    "hyp_speakers": n_hyp,
                    **{f"{p}_{k}": round(v, 4) for p, d in (("forgiving", fg), ("full", full)) for k, v in d.items()},
                }
            )
    with open(out / "per_file.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print(
        f"{title}: {len(recs)} recording(s){' (--limit: NOT the full set)' if args.limit is not None else ''}, "
        f"model={model_name}, config={args.config}"
    )
    print(
        f"{'DER %, pooled over files':28s} {'forgiving':>9s} {'full':>7s} {'#spk ok':>8s} | model card "
        f"(TitaNet-L, forgiving)"
    )
    for cond in CONDITIONS:
        c = results["conditions"][cond]
        card = f"{c['model_card_forgiving']:.2f}" if c["model_card_forgiving"] is not None else "-"
        print(
            f"{LABELS[cond]:28s} {c['forgiving']['der']:9.2f} {c['full']['der']:7.2f} "
            f"{100 * c['speaker_count_accuracy']:7.0f}% | {card}"
        )
    print("forgiving = 0.25 s collar each side + overlap ignored; full = no collar, overlap scored")
    print(f"per-file results: {out / 'per_file.csv'}, {out / 'results.json'}; hypotheses: {out / 'hyp'}")
    log(f"done in {time.perf_counter() - t_start:.1f} s")
    return results


def main_wrapper(body: Callable[[], int]) -> int:
    """Run a recipe body; layout/format/audio problems become one line on stderr and exit 2."""
    try:
        return body()
    except (RecipeError, FormatError, AudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
