"""Writing files atomically: a temp file in the target's folder, fsync, rename. A reader never
sees a partial file, a failed write leaves nothing behind, and permissions follow the umask
(or the mode of the file being replaced), as a plain `open(path, "w")` would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import FormatError, OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_name(name: str) -> str:
    """A hidden temp name beside `name` that ends in ".tmp", never in the target's own suffix (a reader
    globbing `*.rttm` must not see a half-written file) and never much longer than `name` (a name the
    filesystem accepts must not fail because of its temp file: ENAMETOOLONG)."""
    prefix, suffix = f".{secrets.token_hex(4)}.", ".tmp"
    keep = max(len(name), 24) - len(prefix) - len(suffix)
    return prefix + name[-keep:] + suffix


_TEMP_NAME = re.compile(r"\.[0-9a-f]{8}\..+\.tmp")


def remove_stale_temps(folder: str | os.PathLike, min_age: float = 60.0) -> int:
    """Delete temp files of our own naming (`_temp_name`) left in `folder` by a killed run; returns
    how many. A write holds its temp file for milliseconds, so one older than `min_age` seconds is
    an orphan, never a concurrent run's file in flight."""
    removed = 0
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > min_age:
                        os.unlink(entry.path)
                        removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block ends without error it replaces `path`.

    For writers that want a file name (savefig with an explicit format, shutil.copyfile); np.savez
    should be given an open file, since it appends ".npz" to a name that lacks it.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / _temp_name(path.name)
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            # surrogateescape: a file id from a non-UTF-8 file name is written back as its own bytes
            f.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)


# --------------------------------------------------------------------------- checks before writing
def same_file(a: Path, b: Path) -> bool:
    """One file: same device and inode (symlinks and hard links too), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_input_as_output(out: Path, inputs: list[tuple[str, Path]], what: str = "--out") -> None:
    """Raise OutputError when `out` is one of the (name, path) `inputs`: an output never replaces an input."""
    for name, path in inputs:
        if same_file(out, path):
            raise OutputError(f"{what} {out} is the {name} {path}; refusing to overwrite an input")


def refuse_overwrite(paths: list[Path], overwrite: bool) -> None:
    """An existing output we may not write (read-only, or a symlink planted in its place) is refused
    before any work, unless `overwrite` (--overwrite) asks to replace it."""
    for path in paths:
        if path.is_symlink():
            raise OutputError(f"{path}: is a symbolic link; refusing to write through it")
        # The mode bits, not os.access: root may write anything, yet the user marked the file read-only.
        if not overwrite and path.is_file() and not path.stat().st_mode & 0o222:
            raise OutputError(f"{path}: exists and is read-only; pass --overwrite to replace it")


def check_writable_folder(folder: Path) -> None:
    """Fail now, naming `folder`, rather than after the work when the temp file cannot be created."""
    folder = folder if str(folder) else Path(".")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".diarize-")
    except OSError as e:
        raise OutputError(f"{folder}: cannot write in this folder ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def write_error(path: Path, e: OSError) -> str:
    """The message for a failed write: it names the real output, not the temp file the OS error may mention."""
    return f"{path}: cannot write ({e.strerror or type(e).__name__})"


# --------------------------------------------------------------------------- reading
# A text input (RTTM, UEM, manifest, transcript) is read whole; beyond this it is refused rather than
# read for ever (`/dev/zero`) or parsed into gigabytes (a 1 M-word transcript took 1.7 GB).
MAX_TEXT_BYTES = 64 << 20


def read_text(path: str | os.PathLike, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """A text input as str (UTF-8, a byte-order mark dropped), at most `limit` bytes.

    Raises FormatError naming `path`: missing, a directory, unreadable, too large.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError(f"{path}: is a directory, not a {what} file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise FormatError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})") from None
    if len(data) > limit:
        raise FormatError(f"{path}: larger than {limit >> 20} MiB, the limit for a {what} file")
    # surrogateescape: a file id from a non-UTF-8 file name, written back as its own bytes
    # (`atomic_write`), reads back as the same str, so our outputs are inputs again.
    return data.decode("utf-8-sig", "surrogateescape")


def load_json(text: str, source: str, numbered: bool = True) -> object:
    """Decoded JSON; any failure is a FormatError `SOURCE[:LINE]: ...`, also nesting too deep for the
    parser and integers too long for Python (json raises RecursionError / ValueError for those)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{source}{f':{e.lineno}' if numbered else ''}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise FormatError(f"{source}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise FormatError(f"{source}: not valid JSON ({str(e).split(';')[0][:80]})") from None
