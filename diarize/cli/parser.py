"""The command line's grammar: a parser per command, every option with its help (docs/cli.md lists
the same options; tests/test_docs.py holds the two together)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..config import PRESET_NAMES, VAD_METHODS
from ..formats import LABEL_STYLES
from ..models.hub import DEFAULT_FETCH, WEIGHTS
from ..score import COLLAR_PRESETS

SPLIT_HELP = (
    "with a transcript: cut each segment where its words change speaker (each part its own text, start, end); "
    "by default a segment keeps its majority speaker, as whisperX does"
)


def positive_int(s: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The `diarize` parser: run, embed, verify, align, enroll, score, models."""
    p = argparse.ArgumentParser(prog="diarize", description="Speaker diarization: who spoke when, as RTTM.")
    p.add_argument("--version", action="version", version=f"diarize {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(sub)
    _add_embed_parser(sub)
    _add_verify_parser(sub)
    _add_align_parser(sub)
    _add_enroll_parser(sub)
    add_score_arguments(sub.add_parser("score", help="DER of hypothesis RTTM against reference RTTM"))
    _add_models_parser(sub)
    return p


# --------------------------------------------------------------------------- option groups
def _add_model_device(
    p: argparse.ArgumentParser,
    default: str | None = "auto",
    model_default: str = "auto: titanet-large if at hand",
    device_default: str = "auto",
) -> None:
    """--model and --device; `*_default` is what the help says an unset option means."""
    p.add_argument("--model", default=default, help=f"titanet-large, campplus, or a .nemo path [{model_default}]")
    p.add_argument("--device", default=default, help=f"auto | cpu | cuda | cuda:N | mps [{device_default}]")


def _add_threads(p: argparse.ArgumentParser, default: str = "[torch's default]") -> None:
    """--threads; `default` says what an unset one means."""
    help_text = f"CPU threads for this process (torch and BLAS) {default}"
    p.add_argument("--threads", type=positive_int, default=None, help=help_text)


def _add_speaker_count(p: argparse.ArgumentParser) -> None:
    """--num-speakers, or --min-speakers and --max-speakers (config.SpeakerCount)."""
    p.add_argument("--num-speakers", type=positive_int, help="known number of speakers")
    between = "the count is estimated between --min-speakers and --max-speakers"
    p.add_argument("--min-speakers", type=positive_int, help=f"at least this many speakers; {between} [1]")
    max_default = "the preset's clustering.max_num_speakers: 8; meeting 10, telephonic 4"
    p.add_argument("--max-speakers", type=positive_int, help=f"at most this many speakers [{max_default}]")


# --------------------------------------------------------------------------- run
def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="diarize audio files into RTTM")
    _add_run_outputs(r)
    _add_run_labels(r)
    _add_run_pipeline(r)
    _add_run_engine(r)


def _add_run_outputs(r: argparse.ArgumentParser) -> None:
    """The inputs, and what is written for each: where, in which formats, under which labels."""
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
        "- for standard output (one input, one --format), or a directory (one file per input and format) "
        "for several",
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


def _add_run_labels(r: argparse.ArgumentParser) -> None:
    """Centroids, enrolled names, and a transcript to label with the speakers."""
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


def _add_run_pipeline(r: argparse.ArgumentParser) -> None:
    """Speech regions, the speaker count and the pipeline's configuration."""
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
    _add_speaker_count(r)
    r.add_argument("--config", default="general", help=f"preset ({', '.join(PRESET_NAMES)}) or YAML file [general]")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set clustering.max_num_speakers=4 (repeatable)",
    )
    _add_model_device(r, None, "config; default auto: titanet-large if at hand", "auto: CUDA, then MPS, then CPU")


def _add_run_engine(r: argparse.ArgumentParser) -> None:
    """The plot, resuming, the console, and where the work runs."""
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
    r.add_argument("--workers", type=positive_int, default=None, help="Ray actors [one per available CPU]")
    _add_threads(
        r,
        "[torch's default, divided among the diarize runs alive at the same time]; a fixed N turns that sharing off",
    )


# --------------------------------------------------------------------------- the other commands
def _add_embed_parser(sub: argparse._SubParsersAction) -> None:
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


def _add_verify_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="are two recordings the same speaker?")
    v.add_argument("a", type=Path, help="first recording (one speaker)")
    v.add_argument("b", type=Path, help="second recording (one speaker)")
    _add_model_device(v)
    v.add_argument("--threshold", type=float, default=0.7, help="on (cos+1)/2, NeMo's convention [0.7]")
    _add_threads(v)


def _add_align_parser(sub: argparse._SubParsersAction) -> None:
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


def _add_enroll_parser(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("enroll", help="store a speaker's centroid embedding in a speakers database")
    n.add_argument("name", help="the person's name (used as the speaker label)")
    n.add_argument("audio", nargs="+", type=Path, help="recordings of that person alone")
    n.add_argument("--db", type=Path, required=True, help="speakers .npz (created or updated)")
    _add_model_device(n)
    _add_threads(n)


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `diarize score`, added to `p`."""
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


def _add_models_parser(sub: argparse._SubParsersAction) -> None:
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
