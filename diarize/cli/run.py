"""`diarize run`: every input and output is checked before any work; then the engine runs the jobs,
each result is written (formats) as it comes, and the console hears how it went."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import SpeakerCount, load_config
from ..engine import (
    RUN_LOG,
    JobResult,
    References,
    RunLog,
    RunOptions,
    file_ids,
    job_files,
    output_paths,
    plan_jobs,
    run_local,
    run_ray,
)
from ..errors import AudioError, DiarizeError, FormatError, OutputError, UsageError
from ..files import (
    check_writable_folder,
    refuse_input_as_output,
    refuse_overwrite,
    remove_stale_temps,
    same_file,
    write_error,
)
from ..models.base import limit_threads, resolve_device
from ..rttm import read_rttm, read_uem, rttm_token

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".html", ".htm")
# Written as RTTM when named as the one output (kept from before formats had extensions).
PLAIN_TEXT_SUFFIXES = (".txt",)


@dataclass
class _Run:
    """One `diarize run` once its options are checked: what every result is written with, and the
    failures of a batch so far."""

    args: argparse.Namespace
    fmts: list[str]  # output formats; the first names each job's `out`
    batch: bool = False  # a directory of outputs (else the one --out file)
    log: RunLog = field(default_factory=lambda: RunLog(None))
    speaker_db: tuple | None = None  # (centroids by name, threshold, model name) from --speakers
    transcript: dict | None = None  # --transcript, read before the work
    failures: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, audio: Path, message: str) -> None:
        """One input of a batch failed: logged and said now, listed again in the summary."""
        self.failures.append((audio, message))
        self.log.fail(audio, message)
        print(f"diarize: error: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    """Exit 0, or 1 when some inputs of a batch failed; raises USER_ERRORS for anything that stops the run."""
    from ..manifest import read_manifest

    if str(args.out) == STDOUT:
        return _run_to_stdout(args)

    if args.plot is not None and len(args.audio) != 1 or (args.plot is not None and args.manifest):
        raise UsageError("--plot takes one input file")
    if args.transcript is not None and (len(args.audio) != 1 or args.manifest):
        raise UsageError("--transcript takes one input file")
    run = _Run(args, _formats(args))
    run.speaker_db = _load_speaker_db(args) if args.speakers is not None else None
    if args.transcript is not None:  # read and checked now: a bad transcript must not cost the work
        from ..align import read_transcript

        run.transcript = read_transcript(args.transcript)
    speakers = _speaker_count(args)
    cfg = _config(args)
    # Validate every input we can before loading a model or writing anything.
    refs = References(
        read_rttm(args.oracle_vad) if args.oracle_vad else None,
        args.oracle_vad,
        read_uem(args.uem) if args.uem else None,
        args.uem,
    )
    entries = read_manifest(args.manifest) if args.manifest else []
    audio = list(args.audio) + [e.audio for e in entries]
    entry_of = dict(zip(range(len(args.audio), len(audio)), entries))
    if not audio:
        raise UsageError("give audio files or --manifest")
    ids = file_ids(audio, entry_of)
    outputs, run.batch = output_paths(audio, args.out, run.fmts[0], ids)
    _check_outputs(run, audio, entries, outputs)
    if not run.batch:
        _check_one_input(args, audio[0], refs)
    else:
        run.log = RunLog(args.out / RUN_LOG)
        remove_stale_temps(args.out)  # left by a run killed mid-write
    t_start = time.perf_counter()
    if not args.quiet:
        _say_file_ids(audio)
    resume = None if args.overwrite else lambda out: job_files(out, run.fmts, args.transcript)
    plan = plan_jobs(audio, outputs, ids, entry_of, refs, run.log, batch=run.batch, resume=resume)
    for path, message in plan.failures:
        run.fail(path, message)
    # Without --threads, a local run takes its share of the cores among the diarize processes running
    # side by side (each taking every core made them several times slower; benchmarks/RESULTS.md).
    from ..cores import CoreShare

    share = CoreShare() if args.threads is None and args.engine == "local" and plan.jobs else None
    with share if share is not None else contextlib.nullcontext():
        done = _write_results(run, _results(run, cfg, plan.jobs, RunOptions(speakers), share))
    return _summary(run, done, plan.skipped, time.perf_counter() - t_start)


STDOUT = "-"  # `--out -`


def _run_to_stdout(args: argparse.Namespace) -> int:
    """`--out -`: one input in one format, written to standard output once the result is whole (the run
    writes a temporary file and it is copied out, so a failed run prints nothing there)."""
    fmts = _formats(args)
    if len(args.audio) != 1 or args.manifest:
        raise UsageError("--out - (standard output) takes one input file")
    if len(fmts) != 1 or args.transcript is not None:
        raise UsageError("--out - (standard output) takes one --format and no --transcript")
    with tempfile.TemporaryDirectory(prefix="diarize-") as tmp:
        args.out = Path(tmp) / f"{args.audio[0].stem or 'out'}.{fmts[0]}"
        args.to_stdout = True
        code = cmd_run(args)
        if code == 0:
            sys.stdout.write(args.out.read_text(encoding="utf-8"))
            sys.stdout.flush()
    return code


# --------------------------------------------------------------------------- checks before the work
def _formats(args: argparse.Namespace) -> list[str]:
    """Output formats: --format, else the --out extension, else RTTM. The first one names job.out.
    A --out extension that --format does not list is refused: content is never written under
    another format's name (the other formats are written beside it, each with its own extension)."""
    from ..formats import format_from_path, parse_formats

    ext = format_from_path(args.out)
    if args.format:
        fmts = parse_formats(args.format)
        if ext is not None and ext not in fmts:
            raise UsageError(
                f"--out {args.out}: its extension says {ext} but --format asks for {','.join(fmts)}; "
                f"name it {args.out.with_suffix('.' + fmts[0]).name} (the other formats go beside it)"
            )
        return [ext] + [f for f in fmts if f != ext] if ext in fmts else fmts
    return [ext or "rttm"]


def _load_speaker_db(args: argparse.Namespace):
    """(centroids by name, threshold, model) for --speakers; checks the file before any model is loaded."""
    from ..speakers import load_db, match_threshold

    if not args.speakers.is_file():
        raise UsageError(f"--speakers {args.speakers}: no such file (create it with `diarize enroll`)")
    db, model = load_db(args.speakers)
    if not db:
        raise UsageError(f"--speakers {args.speakers}: no enrolled speakers")
    if args.speaker_threshold is not None:
        if not -1.0 <= args.speaker_threshold <= 1.0:  # also NaN: a NaN comparison never fails
            raise UsageError(f"--speaker-threshold must be a cosine from -1 to 1, got {args.speaker_threshold}")
        return db, args.speaker_threshold, model
    return db, match_threshold(model or "unknown"), model


def _speaker_count(args: argparse.Namespace) -> SpeakerCount:
    """--num-speakers, --min-speakers, --max-speakers as one count; a bad combination names the options."""
    try:
        return SpeakerCount(args.num_speakers, args.min_speakers, args.max_speakers)
    except DiarizeError as e:
        raise UsageError(
            str(e)
            .replace("num_speakers", "--num-speakers")
            .replace("min_speakers", "--min-speakers")
            .replace("max_speakers", "--max-speakers")
        ) from None


def _config(args: argparse.Namespace):
    """The pipeline configuration with --vad and --device applied (and --threads set for this process)."""
    cfg = load_config(args.config, args.set)
    if args.threads is not None:
        limit_threads(args.threads)
    if args.vad is not None:
        cfg.vad.method = args.vad
    if args.device is not None:
        resolve_device(args.device)  # a bad --device is a usage error now, not after reading the inputs
        cfg.embedding.device = cfg.vad.device = args.device
    return cfg


def _check_outputs(run: _Run, audio: list[Path], entries: list, outputs: list[Path]) -> None:
    """Never overwrite an input: no output (each format's file, the labelled transcript, the plot, the
    run log) may be the audio, a reference, the transcript, the speakers database, a config ..."""
    args = run.args
    inputs = [("audio file", a) for a in audio] + [
        (name, path)
        for name, path in (
            ("--oracle-vad reference", args.oracle_vad),
            ("--uem file", args.uem),
            ("--manifest", args.manifest),
            ("--config file", Path(args.config)),
            ("--transcript", args.transcript),
            ("--speakers database", args.speakers),
            *[("manifest reference", e.rttm) for e in entries],
            *[("manifest UEM", e.uem) for e in entries],
        )
        if path is not None and path.is_file()
    ]
    written = [p for out in outputs for p in job_files(out, run.fmts, args.transcript)]
    if run.batch:
        written.append(args.out / RUN_LOG)
    for path in written:
        refuse_input_as_output(path, inputs)
    if not run.batch:
        _check_out_suffix(args.out, run.fmts, bool(args.format))
        refuse_overwrite(written, args.overwrite)
    elif (args.out / RUN_LOG).is_symlink():
        raise OutputError(f"{args.out / RUN_LOG}: is a symbolic link; refusing to write through it")
    if args.plot is not None:
        _check_plot(args, written, inputs)


def _check_out_suffix(out: Path, fmts: list[str], explicit: bool) -> None:
    """One output file: its extension must name one of the formats (or be .txt for plain RTTM)."""
    from ..formats import FORMATS, format_from_path

    if format_from_path(out) is not None:
        return
    if explicit or out.suffix.lower() not in PLAIN_TEXT_SUFFIXES:
        raise UsageError(
            f"--out {out}: unknown output extension {out.suffix!r} for {','.join(fmts)} "
            f"(give .{' .'.join(FORMATS)}, or a directory for several inputs)"
        )


def _check_plot(args: argparse.Namespace, written: list[Path], inputs: list[tuple[str, Path]]) -> None:
    """--plot names a new image or page, in a folder we can write, and what it needs is installed."""
    if args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {args.plot}: give a {', '.join(PLOT_SUFFIXES)} file name")
    if any(same_file(args.plot, p) for p in written):
        raise UsageError(f"--plot {args.plot} is the --out file; give them different names")
    refuse_input_as_output(args.plot, inputs, "--plot")
    if not args.plot.parent.is_dir() or args.plot.is_dir():
        raise OutputError(f"--plot {args.plot}: output folder {args.plot.parent} does not exist or it is a directory")
    if args.plot.suffix.lower() not in (".html", ".htm") and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            f"--plot {args.plot}: image plots need matplotlib: pip install 'diarize[plot]' "
            "(or give an .html name, which needs nothing)"
        )
    refuse_overwrite([args.plot], args.overwrite)
    check_writable_folder(args.plot.parent)


def _check_one_input(args: argparse.Namespace, audio: Path, refs: References) -> None:
    """A run with one output fails at once (exit 2) on what a batch would count as one failed file."""
    if audio.is_dir():
        raise AudioError(f"{audio}: is a directory, not an audio file")
    if not audio.is_file():
        raise AudioError(f"{audio}: no such file")
    uri = rttm_token(audio.stem)
    if refs.turns is not None and uri not in refs.turns:
        raise FormatError(
            f"{args.oracle_vad}: no turns for file id {uri!r} (has {', '.join(sorted(refs.turns)) or 'none'})"
        )
    if refs.regions is not None and uri not in refs.regions:
        raise FormatError(
            f"{args.uem}: no region for file id {uri!r} (has {', '.join(sorted(refs.regions)) or 'none'})"
        )


def _say_file_ids(audio: list[Path]) -> None:
    """A notice for each input whose file id is not its stem (RTTM fields hold no whitespace)."""
    for path in audio:
        uri = rttm_token(path.stem)
        if uri != path.stem:
            print(f"diarize: {path}: file id {uri!r} (whitespace is not allowed in RTTM fields)", file=sys.stderr)


# --------------------------------------------------------------------------- the work
class _ProgressBar:
    """A progress hook that draws one line per stage on a terminal."""

    def __init__(self, label: str):
        self.label, self._last = label, 0.0

    def __call__(self, stage: str, completed: int, total: int) -> None:
        now = time.monotonic()
        if completed < total and now - self._last < 0.1:
            return
        self._last = now
        frac = completed / total if total else 1.0
        bar = "#" * int(30 * frac)
        end = "\n" if completed >= total else ""
        print(f"\r{self.label}: {stage:<10} [{bar:<30}] {100 * frac:3.0f}%", end=end, file=sys.stderr, flush=True)


def _run_hook(label: str, share, show_progress: bool):  # noqa: ANN001 (share: cores.CoreShare | None)
    """A file's progress hook: the bar (on a terminal) and the core share's update between batches."""
    bar = _ProgressBar(label) if show_progress else None
    if share is None:
        return bar

    def hook(stage: str, completed: int, total: int) -> None:
        share.update()
        if bar is not None:
            bar(stage, completed, total)

    return hook


def _results(run: _Run, cfg, jobs: list, opts: RunOptions, share):  # noqa: ANN001
    """The engine's results, one per job as it finishes (nothing to do: none)."""
    args = run.args
    if not jobs:
        return iter(())
    if args.engine == "ray":
        return run_ray(cfg, args.model, args.device, jobs, opts, address=args.ray_address, workers=args.workers)
    from ..pipeline import Diarizer

    diarizer = Diarizer(cfg, model=args.model)
    if run.speaker_db is not None:
        _check_speaker_db_model(args.speakers, run.speaker_db[2], run.speaker_db[0], diarizer.model)
    show_progress = not args.quiet and sys.stderr.isatty()
    return run_local(diarizer, jobs, opts, hook_for=lambda job: _run_hook(job.uri, share, show_progress))


def _check_speaker_db_model(path: Path, db_model: str | None, db: dict, model) -> None:  # noqa: ANN001
    """The database's centroids must come from the model of this run (another model's are not comparable)."""
    dim = next(iter(db.values())).shape[0]
    if db_model is not None and db_model != model.name:
        raise UsageError(f"--speakers {path}: enrolled with {db_model}, but this run uses {model.name}")
    if dim != model.embedding_dim:
        raise UsageError(f"--speakers {path}: holds {dim}-dim centroids; {model.name} gives {model.embedding_dim}")


def _write_results(run: _Run, results) -> int:  # noqa: ANN001 (an iterator of JobResult)
    """Write each result as it comes (and the plot); returns how many inputs were written. With one
    input, its failure ends the run (exit 2); in a batch it is one failed input."""
    args, done = run.args, 0
    for r in results:
        audio, out = r.job.audio, r.job.out
        if r.error is not None:
            if not run.batch:
                raise UsageError(r.error)
            run.fail(audio, r.error)
            continue
        for w in r.warnings:
            if not args.quiet:
                print(f"diarize: warning: {w}", file=sys.stderr)
        try:
            written, labelled = _write_outputs(run, r)
        except OSError as e:  # disk full, file too large ...: this file fails, the batch goes on
            if not run.batch:
                raise OutputError(write_error(out, e)) from None
            run.fail(audio, write_error(out, e))
            continue
        if args.plot is not None:
            from ..plot import plot_timeline

            try:
                plot_timeline(labelled, args.plot, duration=r.duration, audio=audio, audio_url=args.plot_audio)
            except OSError as e:
                raise OutputError(write_error(args.plot, e)) from None
        done += 1
        run.log.ok(r)
        if not args.quiet:
            print(
                f"{audio}: {r.num_speakers} speakers, {len(r.annotation)} turns, "
                f"{r.duration:.1f} s in {r.seconds:.1f} s -> "
                + ("standard output" if getattr(args, "to_stdout", False) else ", ".join(map(str, written))),
                file=sys.stderr,
            )
    return done


def _write_outputs(run: _Run, r: JobResult):
    """Write one job's result in every requested format (and the labelled transcript); returns
    (the paths, the annotation as written: the plot shows the same labels)."""
    from .. import formats

    args, names = run.args, None
    if run.speaker_db is not None:
        from ..speakers import identify

        db, threshold, _ = run.speaker_db
        names = identify(dict(r.centroids), db, threshold)
    ann, alone, centroids = formats.output_labels(
        r.annotation, r.exclusive, r.centroids, names, style=args.labels, exclusive_only=args.exclusive
    )
    paths = job_files(r.job.out, run.fmts, args.transcript)
    centroids = centroids if args.centroids else None
    formats.write_all(paths, run.fmts, ann, alone, duration=r.duration, centroids=centroids)
    if run.transcript is not None:
        from ..align import label_transcript, write_transcript

        write_transcript(paths[-1], label_transcript(run.transcript, alone, split=args.split_segments))
    return paths, ann


def _summary(run: _Run, done: int, skipped: int, seconds: float) -> int:
    """A batch's last lines: the counts, then each failed input again; the exit code."""
    if not run.batch:
        return 0
    if not run.args.quiet:
        print(
            f"diarize: {done} diarized, {skipped} skipped (RTTM exists), {len(run.failures)} failed in {seconds:.1f} s",
            file=sys.stderr,
        )
    if run.failures:
        for audio, msg in run.failures:
            print(f"diarize: failed: {audio}: {msg}", file=sys.stderr)
        return 1
    return 0
