"""The errors diarize raises for input it cannot use. One family, so the CLI and the batch
engine catch `USER_ERRORS` and print its one-line message (exit 2, or a per-file failure)."""

from __future__ import annotations


class DiarizeError(Exception):
    """Bad input or a missing resource; the message names the file and what is wrong, on one line."""


class AudioError(DiarizeError, ValueError):
    """The input cannot be used as audio."""


class FormatError(DiarizeError, ValueError):
    """A malformed RTTM / UEM / manifest / transcript line; the message names file and line."""


class ConfigError(DiarizeError, ValueError):
    """A configuration value of the wrong type or out of range; the message names the key."""


class WeightsUnavailable(DiarizeError, RuntimeError):
    """Model weights could not be found, fetched or verified; the message says how to get them."""


class SpeakerCountError(DiarizeError, ValueError):
    """A speaker-count request that the audio cannot satisfy (e.g. more speakers than windows)."""


class OutputError(DiarizeError, OSError):
    """An output path that cannot be written (missing folder, is an input, is a directory ...)."""


class UsageError(DiarizeError):
    """Command-line options that cannot go together or ask for the impossible (`--plot` with two inputs ...)."""


# What the user can act on: our own errors and the OS's (unreadable file, disk full). The CLI exits 2 on
# one, the batch engine fails that file and goes on; anything else is a bug.
USER_ERRORS = (DiarizeError, OSError)


def short(value: object, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: error messages never echo a huge value whole."""
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."
