"""Command line: `diarize run|embed|verify|align|enroll|score|models`. A thin layer over the library: it owns
the console (notices, warnings, progress) and the exit codes.

Exit codes: 0 success, 1 some inputs of a batch failed, 2 usage error or bad input,
3 internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .config import PRESET_NAMES, VAD_METHODS, load_config
from .engine import Job, RunOptions, run_local, run_ray
from .errors import USER_ERRORS, AudioError, DiarizeError, FormatError, OutputError, UsageError, short
from .formats import LABEL_STYLES
from .files import atomic_path, remove_stale_temps
from .models.base import limit_threads, resolve_device
from .models.hub import DEFAULT_FETCH, WEIGHTS
from .rttm import read_rttm, read_uem, rttm_token
from .score import COLLAR_PRESETS


class _Console:
    """Notices and warnings from the library, one line each on stderr (nothing when quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("diarize: %(message)s"))
        log = logging.getLogger("diarize")
        log.handlers = [handler]
        log.setLevel(logging.ERROR if quiet else logging.INFO)
        log.propagate = False

    def warn(self, message: str) -> None:
        if not self.quiet:
            print(f"diarize: warning: {message}", file=sys.stderr)

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        self.warn(str(message))


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


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


SPLIT_HELP = (
    "with a transcript: cut each segment where its words change speaker (each part its own text, start, end); "
    "by default a segment keeps its majority speaker, as whisperX does"
)


def _add_model_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="auto", help="titanet-large, campplus, or a .nemo path [auto: titanet-large if at hand]"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps [auto]")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for this process (torch and BLAS) [torch's default]",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diarize", description="Speaker diarization: who spoke when, as RTTM.")
    p.add_argument("--version", action="version", version=f"diarize {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="diarize audio files into RTTM")
    r.add_argument("audio", nargs="*", type=Path, help="audio files (any format soundfile reads)")
    r.add_argument(
        "--manifest",
        type=Path,
        help="NeMo-style JSON-lines manifest (audio_filepath, offset, duration, num_speakers, "
        "rttm_filepath, uem_filepath per line); its entries are added",
    )
    r.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output file for one input (.rttm/.json/.srt/.vtt/.csv: the extension picks the format), "
        "or a directory (one file per input and format) for several",
    )
    r.add_argument(
        "--format",
        default=None,
        metavar="FMT[,FMT]",
        help="output formats, any of rttm,json,srt,vtt,csv [the --out extension, else rttm]",
    )
    r.add_argument(
        "--exclusive",
        action="store_true",
        help="one speaker at a time in every format: in overlapped speech, the speaker clustering gave that "
        "stretch (SRT/VTT and --transcript always use this view)",
    )
    r.add_argument(
        "--labels",
        choices=LABEL_STYLES,
        default="diarize",
        help="speaker label style: speaker_0, ... or pyannote's SPEAKER_00, ... [diarize]",
    )
    r.add_argument("--centroids", action="store_true", help="JSON output: add each speaker's centroid embedding")
    r.add_argument(
        "--speakers",
        type=Path,
        metavar="DB.npz",
        help="name clusters that match a person enrolled with `diarize enroll`",
    )
    r.add_argument(
        "--speaker-threshold",
        type=float,
        default=None,
        metavar="COS",
        help="cosine needed to name a cluster after an enrolled person [measured per model]",
    )
    r.add_argument(
        "--transcript",
        type=Path,
        metavar="ASR.json|.srt|.vtt",
        help="also label this transcript (whisper/whisperX JSON, SRT, VTT, word list) with speakers; "
        "written beside the output as NAME.speakers.EXT",
    )
    r.add_argument("--split-segments", action="store_true", help=SPLIT_HELP)
    r.add_argument(
        "--oracle-vad",
        type=Path,
        metavar="REF.rttm",
        help="take speech regions from this reference RTTM (matched by file id = audio stem)",
    )
    r.add_argument("--uem", type=Path, help="UEM file restricting the regions processed")
    r.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default=None,
        help="system VAD when no --oracle-vad is given [config's vad.method]",
    )
    r.add_argument("--num-speakers", type=_positive_int, help="known number of speakers")
    r.add_argument(
        "--min-speakers",
        type=_positive_int,
        help="at least this many speakers; the count is estimated between --min-speakers and --max-speakers [1]",
    )
    r.add_argument(
        "--max-speakers",
        type=_positive_int,
        help="at most this many speakers [the preset's clustering.max_num_speakers: 8; meeting 10, telephonic 4]",
    )
    r.add_argument("--config", default="general", help=f"preset ({', '.join(PRESET_NAMES)}) or YAML file [general]")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set clustering.max_num_speakers=4 (repeatable)",
    )
    r.add_argument(
        "--model",
        default=None,
        help="titanet-large, campplus, or a .nemo path [config; default auto: titanet-large if at hand]",
    )
    r.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps [auto: CUDA, then MPS, then CPU]")
    r.add_argument(
        "--plot",
        type=Path,
        metavar="PNG|HTML",
        help="also draw a speaker timeline (one input only): .html is an interactive page that plays "
        "the audio (linked by its path relative to the page); .png/.svg need matplotlib (pip install 'diarize[plot]')",
    )
    r.add_argument(
        "--plot-audio",
        metavar="URL",
        help="the audio the HTML timeline plays, as a URL or a path relative to the page [the input file]",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="re-diarize files whose outputs already exist (directory output); replace a read-only output file",
    )
    r.add_argument("--quiet", action="store_true", help="no notices, progress or summary")
    r.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: one process; ray: spread files over a Ray cluster (pip install -e '.[ray]')",
    )
    r.add_argument("--ray-address", default=None, help="address of an existing Ray cluster [start a local one]")
    r.add_argument("--workers", type=_positive_int, default=None, help="Ray actors [one per available CPU]")
    r.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for this process (torch and BLAS) [torch's default, divided among the diarize runs "
        "alive at the same time]; a fixed N turns that sharing off",
    )

    e = sub.add_parser("embed", help="one raw embedding per audio file, saved as .npz")
    e.add_argument("audio", nargs="*", type=Path, help="audio files, one embedding of each whole file")
    e.add_argument(
        "--manifest", type=Path, help="NeMo-style JSON-lines manifest (audio_filepath, offset, duration, label)"
    )
    e.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the .npz to write: one (D,) float32 array per input, keyed by file stem (+ __labels__, __keys__ "
        "for a manifest)",
    )
    _add_model_device(e)
    _add_threads(e)

    v = sub.add_parser("verify", help="are two recordings the same speaker?")
    v.add_argument("a", type=Path, help="first recording (one speaker)")
    v.add_argument("b", type=Path, help="second recording (one speaker)")
    _add_model_device(v)
    v.add_argument("--threshold", type=float, default=0.7, help="on (cos+1)/2, NeMo's convention [0.7]")
    _add_threads(v)

    a = sub.add_parser("align", help="put speaker labels on an ASR transcript")
    a.add_argument("transcript", type=Path, help="whisper/whisperX JSON, SRT, VTT, or a JSON list of words")
    a.add_argument("diarization", type=Path, help="diarization as RTTM or diarize JSON")
    a.add_argument(
        "--out",
        type=Path,
        required=True,
        help="labelled transcript: .json, .srt, .vtt, .txt (a line per speaker turn) or .tsv (start, end in ms, "
        "speaker, text)",
    )
    a.add_argument("--split-segments", action="store_true", help=SPLIT_HELP)
    a.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="a word in a gap takes the nearest speaker within this distance [1.0]",
    )
    a.add_argument("--uri", default=None, help="file id to take from a multi-file RTTM [its only one]")

    n = sub.add_parser("enroll", help="store a speaker's centroid embedding in a speakers database")
    n.add_argument("name", help="the person's name (used as the speaker label)")
    n.add_argument("audio", nargs="+", type=Path, help="recordings of that person alone")
    n.add_argument("--db", type=Path, required=True, help="speakers .npz (created or updated)")
    _add_model_device(n)
    _add_threads(n)

    add_score_arguments(sub.add_parser("score", help="DER of hypothesis RTTM against reference RTTM"))

    m = sub.add_parser("models", help="list or fetch model weights")
    msub = m.add_subparsers(dest="models_command", required=True)
    f = msub.add_parser("fetch", help="fetch weights into the cache")
    f.add_argument(
        "name",
        nargs="?",
        default="all",
        choices=["all", *WEIGHTS],
        help=f"all = everything the default pipeline needs offline ({', '.join(DEFAULT_FETCH)}) [all]",
    )
    msub.add_parser("list", help="show which models are at hand")
    return p


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is shown escaped, never a UnicodeEncodeError
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _suggest_options(parser, argv)
    args = parser.parse_args(argv)
    console = _Console(getattr(args, "quiet", False))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("default", category=DeprecationWarning, module="diarize")
            warnings.showwarning = console.showwarning
            return {
                "run": cmd_run,
                "embed": cmd_embed,
                "verify": cmd_verify,
                "score": cmd_score,
                "models": cmd_models,
                "align": cmd_align,
                "enroll": cmd_enroll,
            }[args.command](args)
    except USER_ERRORS as e:
        print(f"diarize: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diarize: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so, so it is never mistaken for bad input or a failed batch
        print(
            f"diarize: internal error: {type(e).__name__}: {_one_line(e)[:300]} "
            "(this is a bug in diarize; please report it with the command that caused it)",
            file=sys.stderr,
        )
        return 3


def _suggest_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Exit 2 naming an unknown `--option` and the known one it resembles (`--output` -> `--out`).

    argparse would only say that a required option is missing, or list the unknown one alone."""
    import difflib

    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = next((t for t in argv if not t.startswith("-")), None)
    sub = subparsers.choices.get(command) if command else None
    if sub is None:
        return
    known = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
    for token in argv[: argv.index("--") if "--" in argv else len(argv)]:
        name = token.split("=", 1)[0]
        if not name.startswith("--") or name in known or sum(o.startswith(name) for o in known) == 1:
            continue  # known, or an abbreviation argparse accepts
        close = [o for o in known if name.startswith(o)] or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            sub.error(f"unrecognized option {name} (did you mean {close[0]}?)")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- run
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".html", ".htm")


def _same_file(a: Path, b: Path) -> bool:
    """One file: same device and inode (symlinks and hard links too), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_input_as_output(out: Path, inputs: list[tuple[str, Path]], what: str = "--out") -> None:
    for name, path in inputs:
        if _same_file(out, path):
            raise OutputError(f"{what} {out} is the {name} {path}; refusing to overwrite an input")


def _refuse_overwrite(paths: list[Path], overwrite: bool) -> None:
    """An existing output we may not write (read-only, or a symlink planted in its place) is refused
    before any work, unless --overwrite asks to replace it."""
    for path in paths:
        if path.is_symlink():
            raise OutputError(f"{path}: is a symbolic link; refusing to write through it")
        # The mode bits, not os.access: root may write anything, yet the user marked the file read-only.
        if not overwrite and path.is_file() and not path.stat().st_mode & 0o222:
            raise OutputError(f"{path}: exists and is read-only; pass --overwrite to replace it")


def _check_writable_folder(folder: Path) -> None:
    """Fail now, naming `folder`, rather than after the work when the temp file cannot be created."""
    folder = folder if str(folder) else Path(".")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".diarize-")
    except OSError as e:
        raise OutputError(f"{folder}: cannot write in this folder ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def _output_paths(
    audio: list[Path], out: Path, fmt: str = "rttm", ids: list[str] | None = None
) -> tuple[list[Path], bool]:
    """(one output per input, batch?). One input and `--out` with a suffix (not an existing directory):
    that file. Otherwise `--out` is a directory holding FILE_ID.FMT per input and diarize_run.log."""
    from .formats import format_from_path

    if len(audio) == 1 and out.suffix and (format_from_path(out) or not out.is_dir()):
        if not out.parent.is_dir():
            raise OutputError(f"{out}: output folder {out.parent} does not exist")
        if out.is_dir():
            raise OutputError(f"{out}: is a directory (give a file name, or a directory without the .rttm suffix)")
        _check_writable_folder(out.parent)
        return [out], False
    if format_from_path(out):
        raise UsageError(f"--out {out}: several inputs need an output directory, not a {out.suffix} file")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory")
    stems = ids or [rttm_token(a.stem) for a in audio]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise UsageError(f"several inputs share the file id {short(sorted(dupes)[0])}; RTTM file ids must be unique")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create the directory ({e.strerror or e})") from None
    _check_writable_folder(out)
    return [out / f"{s}.{fmt}" for s in stems], True


def _file_ids(audio: list[Path], entry_of: dict) -> list[str]:
    """The file id of each input: its stem as an RTTM token; several manifest segments of one file
    get `ID@OFFSET` (as `embed` keys them), so each has its own output. Also checks, before any work,
    that each manifest offset lies inside its audio (else exit 2, as `embed`)."""
    from .audio import SAMPLE_RATE, num_samples_16k

    ids = [rttm_token(a.stem) for a in audio]
    uses: dict[str, int] = {}
    for entry in entry_of.values():
        uses[os.path.realpath(entry.audio)] = uses.get(os.path.realpath(entry.audio), 0) + 1
    for i, entry in entry_of.items():
        if uses[os.path.realpath(entry.audio)] > 1:
            ids[i] = f"{ids[i]}@{entry.offset:.2f}"
        if entry.offset > 0 and entry.audio.is_file():
            with contextlib.suppress(AudioError):  # an unreadable file fails as its own job
                duration = num_samples_16k(entry.audio) / SAMPLE_RATE
                if entry.offset >= duration:
                    raise FormatError(
                        f"{entry.where}: offset {entry.offset} s is past the end of {entry.audio} ({duration:.2f} s)"
                    )
    return ids


def _write_error(path: Path, e: OSError) -> str:
    # Name the real output, not the temp file the OS error may mention.
    return f"{path}: cannot write ({e.strerror or type(e).__name__})"


# Written as RTTM when named as the one output (kept from before formats had extensions).
PLAIN_TEXT_SUFFIXES = (".txt",)


def _formats(args: argparse.Namespace) -> list[str]:
    """Output formats: --format, else the --out extension, else RTTM. The first one names job.out.
    A --out extension that --format does not list is refused: content is never written under
    another format's name (the other formats are written beside it, each with its own extension)."""
    from .formats import format_from_path, parse_formats

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


def _check_out_suffix(out: Path, fmts: list[str], explicit: bool) -> None:
    """One output file: its extension must name one of the formats (or be .txt for plain RTTM)."""
    from .formats import FORMATS, format_from_path

    if format_from_path(out) is not None:
        return
    if explicit or out.suffix.lower() not in PLAIN_TEXT_SUFFIXES:
        raise UsageError(
            f"--out {out}: unknown output extension {out.suffix!r} for {','.join(fmts)} "
            f"(give .{' .'.join(FORMATS)}, or a directory for several inputs)"
        )


def _transcript_out(out: Path, transcript: Path) -> Path:
    """Where the labelled transcript goes: beside the output as NAME.speakers.EXT (EXT .srt, .vtt or .json)."""
    ext = transcript.suffix.lower() if transcript.suffix.lower() in (".srt", ".vtt") else ".json"
    return out.with_suffix(f".speakers{ext}")


def _job_files(out: Path, fmts: list[str], transcript: Path | None) -> list[Path]:
    """Every file written for one input: one per format (the first is `out`), and the labelled transcript."""
    paths = [out] + [out.with_suffix(f".{fmt}") for fmt in fmts[1:]]
    return paths + ([_transcript_out(out, transcript)] if transcript is not None else [])


def _write_outputs(r, fmts: list[str], args: argparse.Namespace, speaker_db, transcript=None):
    """Write one job's result in every requested format (and the labelled `transcript`, read before
    the work); returns (the paths, the annotation as written: the plot shows the same labels)."""
    from . import formats

    names = None
    if speaker_db is not None:
        from .speakers import identify

        db, threshold, _ = speaker_db
        names = identify(dict(r.centroids), db, threshold)
    ann, alone, centroids = formats.output_labels(
        r.annotation, r.exclusive, r.centroids, names, style=args.labels, exclusive_only=args.exclusive
    )
    paths = _job_files(r.job.out, fmts, args.transcript)
    formats.write_all(paths, fmts, ann, alone, duration=r.duration, centroids=centroids if args.centroids else None)
    if transcript is not None:
        from .align import label_transcript, write_transcript

        write_transcript(paths[-1], label_transcript(transcript, alone, split=args.split_segments))
    return paths, ann


def cmd_run(args: argparse.Namespace) -> int:
    from .config import SpeakerCount
    from .cores import CoreShare
    from .pipeline import Diarizer

    from .manifest import load_references, read_manifest

    if args.plot is not None and len(args.audio) != 1 or (args.plot is not None and args.manifest):
        raise UsageError("--plot takes one input file")
    if args.transcript is not None and (len(args.audio) != 1 or args.manifest):
        raise UsageError("--transcript takes one input file")
    fmts = _formats(args)
    speaker_db = _load_speaker_db(args) if args.speakers is not None else None
    transcript = None
    if args.transcript is not None:  # read and checked now: a bad transcript must not cost the work
        from .align import read_transcript

        transcript = read_transcript(args.transcript)
    try:
        speakers = SpeakerCount(args.num_speakers, args.min_speakers, args.max_speakers)
    except DiarizeError as e:
        raise UsageError(
            str(e)
            .replace("num_speakers", "--num-speakers")
            .replace("min_speakers", "--min-speakers")
            .replace("max_speakers", "--max-speakers")
        ) from None
    cfg = load_config(args.config, args.set)
    if args.threads is not None:
        limit_threads(args.threads)
    if args.vad is not None:
        cfg.vad.method = args.vad
    if args.device is not None:
        resolve_device(args.device)  # a bad --device is a usage error now, not after reading the inputs
        cfg.embedding.device = cfg.vad.device = args.device
    # Validate every input we can before loading a model or writing anything.
    refs = read_rttm(args.oracle_vad) if args.oracle_vad else None
    uems = read_uem(args.uem) if args.uem else None
    entries = read_manifest(args.manifest) if args.manifest else []
    audio_paths = list(args.audio) + [e.audio for e in entries]
    entry_of = dict(zip(range(len(args.audio), len(audio_paths)), entries))
    if not audio_paths:
        raise UsageError("give audio files or --manifest")
    ids = _file_ids(audio_paths, entry_of)
    outputs, batch = _output_paths(audio_paths, args.out, fmts[0], ids)
    # Never overwrite an input: no output (each format's file, the labelled transcript, the plot, the
    # run log) may be the audio, a reference, the transcript, the speakers database, a config ...
    inputs = [("audio file", a) for a in audio_paths] + [
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
    written = [p for out in outputs for p in _job_files(out, fmts, args.transcript)]
    if batch:
        written.append(args.out / "diarize_run.log")
    for path in written:
        _refuse_input_as_output(path, inputs)
    if not batch:
        _check_out_suffix(args.out, fmts, bool(args.format))
        _refuse_overwrite(written, args.overwrite)
    elif (args.out / "diarize_run.log").is_symlink():
        raise OutputError(f"{args.out / 'diarize_run.log'}: is a symbolic link; refusing to write through it")
    if args.plot is not None:
        if args.plot.suffix.lower() not in PLOT_SUFFIXES:
            raise UsageError(f"--plot {args.plot}: give a {', '.join(PLOT_SUFFIXES)} file name")
        if any(_same_file(args.plot, p) for p in written):
            raise UsageError(f"--plot {args.plot} is the --out file; give them different names")
        _refuse_input_as_output(args.plot, inputs, "--plot")
        if not args.plot.parent.is_dir() or args.plot.is_dir():
            raise OutputError(
                f"--plot {args.plot}: output folder {args.plot.parent} does not exist or it is a directory"
            )
        if args.plot.suffix.lower() not in (".html", ".htm") and importlib.util.find_spec("matplotlib") is None:
            raise UsageError(
                f"--plot {args.plot}: image plots need matplotlib: pip install 'diarize[plot]' "
                "(or give an .html name, which needs nothing)"
            )
        _refuse_overwrite([args.plot], args.overwrite)
        _check_writable_folder(args.plot.parent)
    if not batch:
        audio = audio_paths[0]
        if audio.is_dir():
            raise AudioError(f"{audio}: is a directory, not an audio file")
        if not audio.is_file():
            raise AudioError(f"{audio}: no such file")
        uri = rttm_token(audio.stem)
        if refs is not None and uri not in refs:
            raise FormatError(
                f"{args.oracle_vad}: no turns for file id {uri!r} (has {', '.join(sorted(refs)) or 'none'})"
            )
        if uems is not None and uri not in uems:
            raise FormatError(f"{args.uem}: no region for file id {uri!r} (has {', '.join(sorted(uems)) or 'none'})")
    run_log = args.out / "diarize_run.log" if batch else None
    if batch:
        remove_stale_temps(args.out)  # left by a run killed mid-write

    def log(line: str) -> None:  # appended per file, so a killed batch keeps what it finished
        if run_log is not None:
            # O_NOFOLLOW: a symlink planted as the log since the check is never written through.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            with open(os.open(run_log, flags, 0o666), "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{line}\n")

    jobs: list[Job] = []
    failures: list[tuple[Path, str]] = []
    done = skipped = 0
    t_start = time.perf_counter()
    for i, (audio, out) in enumerate(zip(audio_paths, outputs)):
        uri = rttm_token(audio.stem)  # the file id references are looked up by; ids[i] names the output
        if uri != audio.stem and not args.quiet:
            print(f"diarize: {audio}: file id {uri!r} (whitespace is not allowed in RTTM fields)", file=sys.stderr)
        entry = entry_of.get(i)
        if batch and out.is_dir():
            failures.append((audio, f"{out}: output is a directory"))
        elif batch and not args.overwrite and all(p.exists() for p in _job_files(out, fmts, args.transcript)):
            skipped += 1  # resumed: done only when every requested output is there
            log(f"skip\t{audio}\t{out} exists")
        elif refs is not None and uri not in refs and (entry is None or entry.rttm is None):
            failures.append((audio, f"{args.oracle_vad}: no turns for file id {uri!r}"))
        elif uems is not None and uri not in uems and (entry is None or entry.uem is None):
            failures.append((audio, f"{args.uem}: no region for file id {uri!r}"))
        elif entry is not None:  # a manifest line: its own references (else the global ones), part and count
            oracle, scored = load_references(entry)
            jobs.append(
                Job(
                    audio,
                    out,
                    ids[i],
                    oracle if oracle is not None else refs[uri] if refs is not None else None,
                    scored if scored is not None else uems[uri] if uems is not None else None,
                    window=entry.window(),
                    speakers=SpeakerCount(entry.num_speakers) if entry.num_speakers is not None else None,
                )
            )
        else:
            jobs.append(
                Job(
                    audio, out, ids[i], refs[uri] if refs is not None else None, uems[uri] if uems is not None else None
                )
            )
    for audio, msg in failures:
        log(f"fail\t{audio}\t{msg}")
        print(f"diarize: error: {msg}", file=sys.stderr)
    opts = RunOptions(speakers)
    show_progress = not args.quiet and sys.stderr.isatty()
    # Without --threads, a local run takes its share of the cores among the diarize processes running
    # side by side (each taking every core made them several times slower; benchmarks/RESULTS.md).
    share = CoreShare() if args.threads is None and args.engine == "local" and jobs else None
    with share if share is not None else contextlib.nullcontext():
        if not jobs:
            results = iter(())
        elif args.engine == "ray":
            results = run_ray(cfg, args.model, args.device, jobs, opts, address=args.ray_address, workers=args.workers)
        else:
            diarizer = Diarizer(cfg, model=args.model)
            if speaker_db is not None:
                _check_speaker_db_model(args.speakers, speaker_db[2], speaker_db[0], diarizer.model)
            results = run_local(diarizer, jobs, opts, hook_for=lambda job: _run_hook(job.uri, share, show_progress))
        for r in results:
            audio, out = r.job.audio, r.job.out
            if r.error is not None:
                if not batch:
                    raise UsageError(r.error)
                failures.append((audio, r.error))
                log(f"fail\t{audio}\t{r.error}")
                print(f"diarize: error: {r.error}", file=sys.stderr)
                continue
            for w in r.warnings:
                if not args.quiet:
                    print(f"diarize: warning: {w}", file=sys.stderr)
            try:
                written, labelled = _write_outputs(r, fmts, args, speaker_db, transcript)
            except OSError as e:  # disk full, file too large ...: this file fails, the batch goes on
                if not batch:
                    raise OutputError(_write_error(out, e)) from None
                failures.append((audio, _write_error(out, e)))
                log(f"fail\t{audio}\t{_write_error(out, e)}")
                print(f"diarize: error: {_write_error(out, e)}", file=sys.stderr)
                continue
            if args.plot is not None:
                from .plot import plot_timeline

                try:
                    plot_timeline(labelled, args.plot, duration=r.duration, audio=audio, audio_url=args.plot_audio)
                except OSError as e:
                    raise OutputError(_write_error(args.plot, e)) from None
            done += 1
            log(
                f"ok\t{audio}\t{out}\tspeakers={r.num_speakers}\tduration={r.duration:.1f}s\t"
                f"rtf={r.seconds / max(r.duration, 1e-9):.3f}"
            )
            if not args.quiet:
                print(
                    f"{audio}: {r.num_speakers} speakers, {len(r.annotation)} turns, "
                    f"{r.duration:.1f} s in {r.seconds:.1f} s -> {', '.join(map(str, written))}",
                    file=sys.stderr,
                )
    if batch:
        if not args.quiet:
            print(
                f"diarize: {done} diarized, {skipped} skipped (RTTM exists), {len(failures)} failed "
                f"in {time.perf_counter() - t_start:.1f} s",
                file=sys.stderr,
            )
        if failures:
            for audio, msg in failures:
                print(f"diarize: failed: {audio}: {msg}", file=sys.stderr)
            return 1
    return 0


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
    from .audio import SAMPLE_RATE, load_audio
    from .models import load_model
    from .verify import embed_waveform

    from .manifest import ManifestEntry, read_manifest

    if not args.audio and not args.manifest:
        raise UsageError("give audio files or --manifest")
    items = [ManifestEntry(a, str(a)) for a in args.audio]
    if args.manifest:
        items += read_manifest(args.manifest)
    keys = _embedding_keys(items)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(args.out.suffix + ".npz")
    inputs = [("audio file", item.audio) for item in items]
    _refuse_input_as_output(out, inputs + ([("--manifest", args.manifest)] if args.manifest else []))
    if not out.parent.is_dir() or out.is_dir():
        raise OutputError(f"--out {out}: output folder {out.parent} does not exist or it is a directory")
    _check_writable_folder(out.parent)
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
        raise OutputError(_write_error(out, e)) from None
    print(f"{len(keys)} embeddings ({model.embedding_dim}-dim, {model.name}) -> {out}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .models import load_model
    from .verify import verify

    resolve_device(args.device)
    if args.threads is not None:
        limit_threads(args.threads)
    model = load_model(args.model, args.device)
    score, same = verify(model, args.a, args.b, threshold=args.threshold)
    print(f"score={score:.4f} {'same' if same else 'different'} (threshold {args.threshold}, model {model.name})")
    return 0


# --------------------------------------------------------------------------- align / enroll
def _load_speaker_db(args: argparse.Namespace):
    """(centroids by name, threshold) for --speakers; checks the file before any model is loaded."""
    from .speakers import load_db

    if not args.speakers.is_file():
        raise UsageError(f"--speakers {args.speakers}: no such file (create it with `diarize enroll`)")
    db, model = load_db(args.speakers)
    if not db:
        raise UsageError(f"--speakers {args.speakers}: no enrolled speakers")
    if args.speaker_threshold is not None:
        if not -1.0 <= args.speaker_threshold <= 1.0:  # also NaN: a NaN comparison never fails
            raise UsageError(f"--speaker-threshold must be a cosine from -1 to 1, got {args.speaker_threshold}")
        return db, args.speaker_threshold, model
    from .speakers import match_threshold

    return db, match_threshold(model or "unknown"), model


def _check_speaker_db_model(path: Path, db_model: str | None, db: dict, model) -> None:
    """The database's centroids must come from the model of this run (another model's are not comparable)."""
    dim = next(iter(db.values())).shape[0]
    if db_model is not None and db_model != model.name:
        raise UsageError(f"--speakers {path}: enrolled with {db_model}, but this run uses {model.name}")
    if dim != model.embedding_dim:
        raise UsageError(f"--speakers {path}: holds {dim}-dim centroids; {model.name} gives {model.embedding_dim}")


def cmd_align(args: argparse.Namespace) -> int:
    from .align import TRANSCRIPT_FORMATS, label_transcript, read_transcript, write_transcript
    from .formats import read_diarization

    if args.out.suffix.lower().lstrip(".") not in TRANSCRIPT_FORMATS:
        raise UsageError(f"--out {args.out}: a labelled transcript is written as .{', .'.join(TRANSCRIPT_FORMATS)}")
    _refuse_input_as_output(args.out, [("transcript", args.transcript), ("diarization", args.diarization)])
    if not args.out.parent.is_dir() or args.out.is_dir():
        raise OutputError(f"--out {args.out}: output folder {args.out.parent} does not exist or it is a directory")
    _refuse_overwrite([args.out], overwrite=True)
    _check_writable_folder(args.out.parent)
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
        raise OutputError(_write_error(args.out, e)) from None
    n = sum(len(seg.get("words") or []) for seg in labelled["segments"]) + len(labelled.get("words") or [])
    print(
        f"{args.transcript}: {len(labelled['segments'])} segments, {n} words labelled with {len(found[uri].labels())} speakers -> {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .models import load_model
    from .speakers import enroll, enroll_embeddings, load_db, speaker_label
    from .verify import embed_waveform, require_speech

    if args.db.suffix.lower() != ".npz":
        raise UsageError(f"--db {args.db}: the speakers database is an .npz file")
    # Everything is checked before a model is loaded: the name, the database, its folder, the audio.
    label = speaker_label(args.name)
    _refuse_input_as_output(args.db, [("audio file", a) for a in args.audio], "--db")
    if not args.db.parent.is_dir():
        raise OutputError(f"--db {args.db}: folder {args.db.parent} does not exist")
    _refuse_overwrite([args.db], overwrite=False)
    _check_writable_folder(args.db.parent)
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
        raise OutputError(_write_error(args.db, e)) from None
    named = repr(args.name) if label == args.name else f"{args.name!r} as {label!r}"
    print(
        f"enrolled {named} from {len(waves)} recording(s) ({model.name}); {count} speaker(s) in {args.db}",
        file=sys.stderr,
    )
    return 0


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", type=Path, help="reference RTTM file or directory of .rttm")
    p.add_argument("hyp", type=Path, help="hypothesis RTTM file or directory of .rttm")
    p.add_argument("--uem", type=Path, help="UEM file (scored regions)")
    p.add_argument("--collar", type=float, default=None, help="seconds on EACH side of reference boundaries [0]")
    p.add_argument("--ignore-overlap", action="store_true", default=None, help="do not score overlapped speech")
    p.add_argument(
        "--preset",
        choices=sorted(COLLAR_PRESETS),
        help="forgiving: 0.25 s collar + overlap ignored (model card); full: no collar, overlap scored",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_score(args: argparse.Namespace) -> int:
    from .score import load_rttms, score

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
    return run_score(args)


def cmd_models(args: argparse.Namespace) -> int:
    from .models.hub import cache_dir, weights_path, weights_state

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
            from .models.nemo import download_titanet

            _, state = weights_state(name)
            print(download_titanet() if state == "missing" else weights_path(name, fetch=False))
        elif name == "silero":
            from .models.silero import silero_model_path

            print(silero_model_path())
        else:
            print(weights_path(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
