"""The CPU cores shared by diarize processes running side by side on one machine.

torch's OpenMP threads spin while they wait for each other. Two processes that each run a thread per
core therefore take far longer side by side than one after the other: 1.4-13.5x on 2 cores
(benchmarks/RESULTS.md, "Processes side by side"). Each `diarize run` without `--threads` registers
in a per-user folder under the temp dir. Between batches it sets its threads to its share: the
threads it would use alone, divided by the diarize processes alive. A process alone is not changed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import torch

from .models.base import limit_threads

CHECK_EVERY_S = 0.5  # how often `update` reads the folder (a read costs well under a millisecond)


def registry() -> Path | None:
    """This user's folder of running diarize processes, made if missing; None where none can be used."""
    if sys.platform == "win32" or not hasattr(os, "getuid"):
        return None  # no cheap liveness test there: os.kill(pid, 0) sends CTRL_C_EVENT on Windows
    folder = Path(tempfile.gettempdir()) / f"diarize-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    # In a shared temp dir, a link or another user's folder under this name is not ours to write into.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    return folder


def start_time(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (Linux; "" elsewhere or when unreadable).

    Recorded beside the pid, so that an unrelated process that got a dead one's pid is not counted."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()  # field 22, after "pid (comm)"
    except (OSError, IndexError):
        return ""


def is_alive(pid: int, started: str) -> bool:
    """Whether the process registered as (`pid`, `started`) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return start_time(pid) == started


class CoreShare:
    """This process's share of the cores among the diarize processes alive on this machine.

    Use as a context manager, and call `update` often (between batches): it looks at the folder at
    most every `CHECK_EVERY_S` and changes torch's and BLAS's thread counts only when the share
    changes. Where no folder can be used, `update` does nothing. From Python:

        with CoreShare() as share:
            Diarizer().run("meeting.wav", hook=lambda *_: share.update())
    """

    def __init__(self, folder: Path | None = None):
        self.folder = registry() if folder is None else folder
        self.alone = torch.get_num_threads()  # what this process uses by itself
        self.threads = self.alone
        self._entry: Path | None = None
        self._checked = -float("inf")

    def __enter__(self) -> CoreShare:
        if self.folder is not None:
            entry = self.folder / str(os.getpid())
            try:
                fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(start_time(os.getpid()))
                self._entry = entry
            except OSError:
                self.folder = None
        self.update(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._entry is not None:
            with contextlib.suppress(OSError):
                self._entry.unlink()
            self._entry = None
        if self.threads != self.alone:
            limit_threads(self.alone)
            self.threads = self.alone

    def processes(self) -> int:
        """Registered diarize processes alive, this one included; entries of dead ones are removed."""
        if self.folder is None:
            return 1
        alive = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 1
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                started = Path(entry.path).read_text()
            except OSError:
                continue  # removed meanwhile
            if pid == os.getpid() or is_alive(pid, started):
                alive += 1
            else:  # killed before it could remove its entry
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        return max(alive, 1)

    def update(self, force: bool = False) -> int:
        """Set this process's threads to its share now if it changed; returns the thread count."""
        now = time.monotonic()
        if self._entry is None or (not force and now - self._checked < CHECK_EVERY_S):
            return self.threads
        self._checked = now
        share = max(1, self.alone // self.processes())
        if share != self.threads:
            limit_threads(share)
            self.threads = share
        return self.threads
