"""Command line: `diarize run|embed|verify|align|enroll|score|models`. A thin layer over the library: it owns
the console (notices, warnings, progress) and the exit codes.

Exit codes: 0 success, 1 some inputs of a batch failed, 2 usage error or bad input,
3 internal error (a bug: please report it).

`parser` holds the grammar, `run` the `diarize run` command, `commands` the others.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import warnings

from ..errors import USER_ERRORS, UsageError
from .commands import cmd_align, cmd_embed, cmd_enroll, cmd_models, cmd_score, cmd_verify, run_score
from .parser import add_score_arguments, build_parser
from .run import cmd_run

COMMANDS = {
    "run": cmd_run,
    "embed": cmd_embed,
    "verify": cmd_verify,
    "score": cmd_score,
    "models": cmd_models,
    "align": cmd_align,
    "enroll": cmd_enroll,
}


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


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` names (default: sys.argv[1:]); returns the exit code."""
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
            return COMMANDS[args.command](args)
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
    """The first line of an error's message (its type's name when it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


__all__ = ["COMMANDS", "USER_ERRORS", "UsageError", "add_score_arguments", "build_parser", "main", "run_score"]
