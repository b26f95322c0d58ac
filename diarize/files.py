"""Writing files atomically: a temp file in the target's folder, fsync, rename. A reader never
sees a partial file, a failed write leaves nothing behind, and permissions follow the umask
(or the mode of the file being replaced), as a plain `open(path, "w")` would."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


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
