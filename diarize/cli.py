"""Command line: `diarize run|embed|verify|score|models`. A thin layer over the library.

Exit codes: 0 success, 1 some inputs of a batch failed, 2 usage error or bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .audio import AudioError
from .config import PRESETS, ConfigError, load_config
from .models.hub import WeightsUnavailable
from .engine import Job, RunOptions, run_local, run_ray
from .rttm import FormatError, atomic_write_text, read_rttm, read_uem, rttm_lines

USER_ERRORS = (AudioError, FormatError, ConfigError, WeightsUnavailable, ValueError, OSError)


class UsageError(Exception):
    pass


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diarize", description="Speaker diarization: who spoke when, as RTTM.")
    p.add_argument("--version", action="version", version=f"diarize {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="diarize audio files into RTTM")
    r.add_argument("audio", nargs="*", type=Path, help="audio files (any format soundfile reads)")
    r.add_argument("--manifest", type=Path, help="NeMo-style JSON-lines manifest; its audio_filepath entries are added")
    r.add_argument("--out", type=Path, required=True,
                   help="output .rttm file for one input, or a directory (one RTTM per input) for several")
    r.add_argument("--oracle-vad", type=Path, metavar="REF.rttm",
                   help="take speech regions from this reference RTTM (matched by file id = audio stem)")
    r.add_argument("--uem", type=Path, help="UEM file restricting the regions processed")
    r.add_argument("--vad", choices=["energy", "silero", "pyannote-seg"], default=None,
                   help="system VAD when no --oracle-vad is given [config's vad.method]")
    r.add_argument("--num-speakers", type=_positive_int, help="known number of speakers")
    r.add_argument("--min-speakers", type=_positive_int)
    r.add_argument("--max-speakers", type=_positive_int)
    r.add_argument("--config", default="general", help=f"preset ({', '.join(PRESETS)}) or YAML file [general]")
    r.add_argument("--model", default=None,
                   help="titanet-large, campplus, or a .nemo path [config; default auto: titanet-large if at hand]")
    r.add_argument("--device", default=None, help="auto | cpu | cuda [auto]")
    r.add_argument("--plot", type=Path, metavar="PNG", help="also draw a speaker timeline (one input only)")
    r.add_argument("--overwrite", action="store_true", help="re-diarize files whose RTTM already exists (directory output)")
    r.add_argument("--quiet", action="store_true", help="no notices, progress or summary")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: one process; ray: spread files over a Ray cluster (pip install -e '.[ray]')")
    r.add_argument("--ray-address", default=None, help="address of an existing Ray cluster [start a local one]")
    r.add_argument("--workers", type=_positive_int, default=None, help="Ray actors [one per available CPU]")

    e = sub.add_parser("embed", help="one raw embedding per audio file, saved as .npz")
    e.add_argument("audio", nargs="*", type=Path)
    e.add_argument("--manifest", type=Path, help="NeMo-style JSON-lines manifest (audio_filepath, offset, duration, label)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--model", default="auto")
    e.add_argument("--device", default="auto")

    v = sub.add_parser("verify", help="are two recordings the same speaker?")
    v.add_argument("a", type=Path)
    v.add_argument("b", type=Path)
    v.add_argument("--model", default="auto")
    v.add_argument("--device", default="auto")
    v.add_argument("--threshold", type=float, default=0.7, help="on (cos+1)/2, NeMo's convention [0.7]")

    s = sub.add_parser("score", help="DER of hypothesis RTTM against reference RTTM")
    try:
        from .score import add_score_arguments

        add_score_arguments(s)
    except ImportError:  # pragma: no cover
        pass

    m = sub.add_parser("models", help="list or fetch model weights")
    msub = m.add_subparsers(dest="models_command", required=True)
    f = msub.add_parser("fetch", help="fetch weights into the cache")
    f.add_argument("name", nargs="?", default="all", choices=["all", "campplus", "pyannote-seg", "silero", "titanet-large"],
                   help="all = everything the default pipeline needs offline (campplus, pyannote-seg) [all]")
    msub.add_parser("list", help="show which models are at hand")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "embed": cmd_embed, "verify": cmd_verify, "score": cmd_score,
                "models": cmd_models}[args.command](args)
    except UsageError as e:
        print(f"diarize: error: {e}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"diarize: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diarize: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- run
def _output_paths(audio: list[Path], out: Path) -> list[Path]:
    if len(audio) == 1 and out.suffix.lower() == ".rttm":
        if not out.parent.is_dir():
            raise UsageError(f"{out}: output folder {out.parent} does not exist")
        return [out]
    if out.suffix.lower() == ".rttm":
        raise UsageError(f"--out {out}: several inputs need an output directory, not a .rttm file")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    stems = [a.stem for a in audio]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise UsageError(f"several inputs share the file id {sorted(dupes)[0]!r}; RTTM file ids must be unique")
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{s}.rttm" for s in stems]


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import Diarizer

    if args.plot is not None and len(args.audio) != 1 or (args.plot is not None and args.manifest):
        raise UsageError("--plot takes one input file")
    if args.num_speakers and (args.min_speakers or args.max_speakers):
        raise UsageError("--num-speakers cannot be combined with --min-speakers/--max-speakers")
    if args.min_speakers and args.max_speakers and args.min_speakers > args.max_speakers:
        raise UsageError("--min-speakers is larger than --max-speakers")
    cfg = load_config(args.config)
    if args.vad is not None:
        cfg.vad.method = args.vad
    # Validate every input we can before loading a model or writing anything.
    refs = read_rttm(args.oracle_vad) if args.oracle_vad else None
    uems = read_uem(args.uem) if args.uem else None
    audio_paths = list(args.audio) + ([Path(e["audio_filepath"]) for e in _read_manifest(args.manifest)]
                                      if args.manifest else [])
    if not audio_paths:
        raise UsageError("give audio files or --manifest")
    outputs = _output_paths(audio_paths, args.out)
    batch = len(audio_paths) > 1 or args.out.suffix.lower() != ".rttm"
    if len(audio_paths) == 1 and not audio_paths[0].is_file():
        raise AudioError(f"{audio_paths[0]}: no such file")
    if refs is not None and len(audio_paths) == 1 and audio_paths[0].stem not in refs:
        raise FormatError(f"{args.oracle_vad}: no turns for file id {audio_paths[0].stem!r} "
                          f"(has {', '.join(sorted(refs)) or 'none'})")
    jobs: list[Job] = []
    failures: list[tuple[Path, str]] = []
    done = skipped = 0
    log_lines: list[str] = []
    t_start = time.perf_counter()
    for audio, out in zip(audio_paths, outputs):
        uri = audio.stem
        if batch and out.exists() and not args.overwrite:
            skipped += 1
            log_lines.append(f"skip\t{audio}\t{out} exists")
        elif refs is not None and uri not in refs:
            failures.append((audio, f"{args.oracle_vad}: no turns for file id {uri!r}"))
        elif uems is not None and uri not in uems:
            failures.append((audio, f"{args.uem}: no region for file id {uri!r}"))
        else:
            jobs.append(Job(audio, out, uri, refs[uri] if refs is not None else None,
                            uems[uri] if uems is not None else None))
    for audio, msg in failures:
        log_lines.append(f"fail\t{audio}\t{msg}")
        print(f"diarize: error: {msg}", file=sys.stderr)
    opts = RunOptions(args.num_speakers, args.min_speakers, args.max_speakers,
                      progress=None if not args.quiet and args.engine == "local" else False)
    if not jobs:
        results = iter(())
    elif args.engine == "ray":
        results = run_ray(cfg, args.model, args.device, jobs, opts, address=args.ray_address, workers=args.workers)
    else:
        results = run_local(Diarizer(cfg, model=args.model, device=args.device, quiet=args.quiet), jobs, opts)
    for r in results:
        audio, out = r.job.audio, r.job.out
        if r.error is not None:
            if not batch:
                raise UsageError(r.error)
            failures.append((audio, r.error))
            log_lines.append(f"fail\t{audio}\t{r.error}")
            print(f"diarize: error: {r.error}", file=sys.stderr)
            continue
        if not args.quiet:
            for w in r.warnings:
                print(f"diarize: warning: {w}", file=sys.stderr)
        atomic_write_text(out, "".join(rttm_lines(r.annotation, r.job.uri)))
        if args.plot is not None:
            from .plot import plot_timeline

            plot_timeline(r.annotation, args.plot, duration=r.duration)
        done += 1
        log_lines.append(f"ok\t{audio}\t{out}\tspeakers={r.num_speakers}\tduration={r.duration:.1f}s\t"
                         f"rtf={r.seconds / max(r.duration, 1e-9):.3f}")
        if not args.quiet:
            print(f"{audio}: {r.num_speakers} speakers, {len(r.annotation)} turns, "
                  f"{r.duration:.1f} s in {r.seconds:.1f} s -> {out}", file=sys.stderr)
    if batch:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(args.out / "diarize_run.log", "a") as log:
            log.write("".join(f"{stamp}\t{line}\n" for line in log_lines))
        if not args.quiet:
            print(f"diarize: {done} diarized, {skipped} skipped (RTTM exists), {len(failures)} failed "
                  f"in {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
        if failures:
            for audio, msg in failures:
                print(f"diarize: failed: {audio}: {msg}", file=sys.stderr)
            return 1
    return 0


# --------------------------------------------------------------------------- embed / verify
def _read_manifest(path: Path) -> list[dict]:
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(item, dict) or "audio_filepath" not in item:
            raise FormatError(f"{path}:{lineno}: needs an 'audio_filepath' field")
        for key in ("offset", "duration"):
            if item.get(key) is not None and not isinstance(item[key], (int, float)):
                raise FormatError(f"{path}:{lineno}: {key!r} must be a number")
        entries.append(item)
    return entries


def cmd_embed(args: argparse.Namespace) -> int:
    from .audio import SAMPLE_RATE, load_audio
    from .models import load_model
    from .verify import embed_waveform

    if not args.audio and not args.manifest:
        raise UsageError("give audio files or --manifest")
    items = [{"audio_filepath": str(a)} for a in args.audio]
    if args.manifest:
        items += _read_manifest(args.manifest)
    model = load_model(args.model, args.device)
    keys, embs, labels = [], [], []
    for item in items:
        path = Path(item["audio_filepath"])
        audio = load_audio(path)
        offset = float(item.get("offset") or 0.0)
        dur = item.get("duration")
        audio = audio[int(offset * SAMPLE_RATE): None if dur is None else int((offset + float(dur)) * SAMPLE_RATE)]
        key = path.stem if len(items) == len({Path(i["audio_filepath"]).stem for i in items}) else f"{path.stem}@{offset:.2f}"
        keys.append(key)
        embs.append(embed_waveform(model, audio))
        labels.append(str(item.get("label", "")))
    data = {k: e for k, e in zip(keys, embs)}
    if args.manifest:
        data["__labels__"] = np.array(labels)
        data["__keys__"] = np.array(keys)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(args.out.suffix + ".npz")
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(out)
    print(f"{len(keys)} embeddings ({model.embedding_dim}-dim, {model.name}) -> {out}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .models import load_model
    from .verify import verify

    model = load_model(args.model, args.device)
    score, same = verify(model, args.a, args.b, threshold=args.threshold)
    print(f"score={score:.4f} {'same' if same else 'different'} (threshold {args.threshold}, model {model.name})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .score import run_score

    return run_score(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import campplus, pyannet, silero
    from .models.hub import cache_dir

    if args.models_command == "list":
        seg = cache_dir() / pyannet.SEGMENTATION_CACHE_NAME
        sil = cache_dir() / silero.SILERO_CACHE_NAME
        print(f"cache: {cache_dir()}")
        print(f"campplus (speaker embeddings): {campplus.campplus_weights_at_hand() or 'not fetched (diarize models fetch campplus)'}")
        print(f"pyannote-seg (default VAD): {seg if seg.is_file() else 'not fetched (diarize models fetch pyannote-seg)'}")
        print(f"silero (--vad silero): {sil if sil.is_file() else 'not fetched (diarize models fetch silero, or pip install silero-vad)'}")
        try:
            from .models import titanet

            print(f"titanet-large (speaker embeddings): {titanet.titanet_weights_at_hand() or 'not at hand (diarize models fetch titanet-large, needs the Hugging Face hub)'}")
        except ImportError:
            print("titanet-large: not available in this build")
        return 0
    if args.name in ("all", "campplus"):
        print(campplus.fetch_campplus_weights())
    if args.name in ("all", "pyannote-seg"):
        print(pyannet.fetch_segmentation_weights())
    if args.name == "silero":
        print(silero.silero_model_path())
    if args.name == "titanet-large":
        from .models import titanet

        print(titanet.download_titanet())
    return 0


if __name__ == "__main__":
    sys.exit(main())
