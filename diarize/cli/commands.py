"""The commands around `run`: embed, verify, align, enroll, score, models. Each checks its inputs and
outputs before loading a model, then prints one line of what it did."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import FormatError, OutputError, UsageError, short
from ..files import atomic_path, check_writable_folder, refuse_input_as_output, refuse_overwrite, write_error
from ..models.base import limit_threads, resolve_device
from ..models.hub import DEFAULT_FETCH, WEIGHTS
from ..rttm import read_uem
from ..score import COLLAR_PRESETS


# --------------------------------------------------------------------------- embed / verify
def _embedding_keys(items: list) -> list[str]:
    """One unique .npz key per manifest entry: the file stem; the path (relative to the inputs' common
    folder) when stems repeat; `@offset` added for segments of one file. Anything still shared is refused."""
    paths = [os.path.abspath(item.audio) for item in items]
    keys = [Path(p).stem for p in paths]
    if len(set(keys)) < len(keys):
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
        keys = [os.path.splitext(os.path.relpath(p, root))[0] for p in paths]
    if len(set(keys)) < len(keys):
        keys = [k if keys.count(k) == 1 else f"{k}@{item.offset:.2f}" for k, item in zip(keys, items)]
    first: dict[str, str] = {}
    for key, item in zip(keys, items):
        if key in first or key in ("__labels__", "__keys__"):
            raise FormatError(
                f"{item.where}: {short(str(item.audio))} would be stored under the key {short(key)} "
                f"already used by {first.get(key, 'diarize')}; give each segment its own file or offset"
            )
        first[key] = item.where
    return keys


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed each input whole (or its manifest segment) into one .npz."""
    from ..audio import SAMPLE_RATE, load_audio
    from ..models import load_model
    from ..verify import embed_waveform

    from ..manifest import ManifestEntry, read_manifest

    if not args.audio and not args.manifest:
        raise UsageError("give audio files or --manifest")
    items = [ManifestEntry(a, str(a)) for a in args.audio]
    if args.manifest:
        items += read_manifest(args.manifest)
    keys = _embedding_keys(items)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(args.out.suffix + ".npz")
    inputs = [("audio file", item.audio) for item in items]
    refuse_input_as_output(out, inputs + ([("--manifest", args.manifest)] if args.manifest else []))
    if not out.parent.is_dir() or out.is_dir():
        raise OutputError(f"--out {out}: output folder {out.parent} does not exist or it is a directory")
    check_writable_folder(out.parent)
    resolve_device(args.device)
    if args.threads is not None:
        limit_threads(args.threads)
    model = load_model(args.model, args.device)
    embs, labels = [], []
    for item in items:
        audio = load_audio(item.audio)
        start = int(item.offset * SAMPLE_RATE)
        if start >= len(audio):
            raise FormatError(
                f"{item.where}: offset {item.offset} s is past the end of {item.audio} "
                f"({len(audio) / SAMPLE_RATE:.2f} s)"
            )
        audio = audio[start : None if item.duration is None else start + max(1, int(item.duration * SAMPLE_RATE))]
        embs.append(embed_waveform(model, audio))
        labels.append(item.label)
    data = {k: e for k, e in zip(keys, embs)}
    if args.manifest:
        data["__labels__"] = np.array(labels)
        data["__keys__"] = np.array(keys)
    try:
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the temp name
                np.savez(f, **data)
    except OSError as e:
        raise OutputError(write_error(out, e)) from None
    print(f"{len(keys)} embeddings ({model.embedding_dim}-dim, {model.name}) -> {out}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the score of two recordings and whether they are the same speaker."""
    from ..models import load_model
    from ..verify import verify

    resolve_device(args.device)
    if args.threads is not None:
        limit_threads(args.threads)
    model = load_model(args.model, args.device)
    score, same = verify(model, args.a, args.b, threshold=args.threshold)
    print(f"score={score:.4f} {'same' if same else 'different'} (threshold {args.threshold}, model {model.name})")
    return 0


# --------------------------------------------------------------------------- align / enroll
def cmd_align(args: argparse.Namespace) -> int:
    """Label a transcript's words and segments with the speakers of a diarization."""
    from ..align import TRANSCRIPT_FORMATS, label_transcript, read_transcript, write_transcript
    from ..formats import read_diarization

    if args.out.suffix.lower().lstrip(".") not in TRANSCRIPT_FORMATS:
        raise UsageError(f"--out {args.out}: a labelled transcript is written as .{', .'.join(TRANSCRIPT_FORMATS)}")
    refuse_input_as_output(args.out, [("transcript", args.transcript), ("diarization", args.diarization)])
    if not args.out.parent.is_dir() or args.out.is_dir():
        raise OutputError(f"--out {args.out}: output folder {args.out.parent} does not exist or it is a directory")
    refuse_overwrite([args.out], overwrite=True)
    check_writable_folder(args.out.parent)
    doc = read_transcript(args.transcript)
    found = read_diarization(args.diarization)
    uri = args.uri if args.uri is not None else next(iter(found)) if len(found) == 1 else None
    if uri is None or uri not in found:
        raise FormatError(
            f"{args.diarization}: {'no file id ' + repr(uri) if uri else 'several file ids'} "
            f"(has {', '.join(sorted(found)) or 'none'}); pick one with --uri"
        )
    labelled = label_transcript(doc, found[uri], tolerance=args.tolerance, split=args.split_segments)
    try:
        write_transcript(args.out, labelled)
    except OSError as e:
        raise OutputError(write_error(args.out, e)) from None
    n = sum(len(seg.get("words") or []) for seg in labelled["segments"]) + len(labelled.get("words") or [])
    print(
        f"{args.transcript}: {len(labelled['segments'])} segments, {n} words labelled with {len(found[uri].labels())} speakers -> {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Add (or update) a person's centroid in a speakers database."""
    from ..audio import load_audio
    from ..models import load_model
    from ..speakers import enroll, enroll_embeddings, load_db, speaker_label
    from ..verify import embed_waveform, require_speech

    if args.db.suffix.lower() != ".npz":
        raise UsageError(f"--db {args.db}: the speakers database is an .npz file")
    # Everything is checked before a model is loaded: the name, the database, its folder, the audio.
    label = speaker_label(args.name)
    refuse_input_as_output(args.db, [("audio file", a) for a in args.audio], "--db")
    if not args.db.parent.is_dir():
        raise OutputError(f"--db {args.db}: folder {args.db.parent} does not exist")
    refuse_overwrite([args.db], overwrite=False)
    check_writable_folder(args.db.parent)
    _, db_model = load_db(args.db)
    waves = [load_audio(p) for p in args.audio]
    for path, wave in zip(args.audio, waves):
        require_speech(wave, str(path), "enroll")
    if args.threads is not None:
        limit_threads(args.threads)
    model = load_model(args.model, args.device)
    if db_model is not None and db_model != model.name:
        raise UsageError(f"--db {args.db}: enrolled with {db_model}, not {model.name} (use --model {db_model})")
    centroid = enroll_embeddings([embed_waveform(model, w) for w in waves])
    try:
        label, count = enroll(args.db, args.name, centroid, model.name)  # under a lock: concurrent enrolls add up
    except OSError as e:
        raise OutputError(write_error(args.db, e)) from None
    named = repr(args.name) if label == args.name else f"{args.name!r} as {label!r}"
    print(
        f"enrolled {named} from {len(waves)} recording(s) ({model.name}); {count} speaker(s) in {args.db}",
        file=sys.stderr,
    )
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Print the DER table (or JSON) of hypothesis against reference; exit 2 on a bad file or collar."""
    from ..score import load_rttms, score

    collar, ignore = COLLAR_PRESETS[args.preset] if args.preset else (0.0, False)
    if args.collar is not None:
        collar = args.collar
    if args.ignore_overlap:
        ignore = True
    if not math.isfinite(collar) or collar < 0:
        print(f"diarize: error: --collar must be a finite number >= 0, got {collar}", file=sys.stderr)
        return 2
    try:
        refs, hyps = load_rttms(args.ref), load_rttms(args.hyp)
        uems = read_uem(args.uem) if args.uem else None
        report = score(refs, hyps, uems, collar, ignore)
    except FormatError as e:
        print(f"diarize: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """`diarize score`: see `run_score`."""
    return run_score(args)


def cmd_models(args: argparse.Namespace) -> int:
    """List the model weights at hand, or fetch them into the cache."""
    from ..models.hub import cache_dir, weights_path, weights_state

    if args.models_command == "list":
        print(f"cache: {cache_dir()}")
        for name, w in WEIGHTS.items():
            path, state = weights_state(name)
            hint = "" if state.startswith("ok") else f" (diarize models fetch {name})"
            print(f"{name} ({w.purpose}; {w.licence}): {state}{hint}: {path}")
        return 0
    names = DEFAULT_FETCH if args.name == "all" else (args.name,)
    for name in names:
        if name == "titanet-large":
            from ..models.nemo import download_titanet

            _, state = weights_state(name)
            print(download_titanet() if state == "missing" else weights_path(name, fetch=False))
        elif name == "silero":
            from ..models.silero import silero_model_path

            print(silero_model_path())
        else:
            print(weights_path(name))
    return 0
