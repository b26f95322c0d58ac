"""Run the pipeline over many files: locally (one process) or spread over a Ray cluster.

Both engines yield one `JobResult` per file as soon as it is done; the caller writes the RTTM
(atomically), so an interrupted batch keeps every finished file and can be resumed.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyannote.core import Annotation, Timeline

from .config import DiarizerConfig, SpeakerCount
from . import errors
from .errors import USER_ERRORS, ConfigError, DiarizeError


@dataclass
class Job:
    """One file to diarize, and where its output goes."""

    audio: Path
    out: Path
    uri: str
    oracle_vad: Annotation | None = None
    uem: Timeline | None = None
    window: Timeline | None = None  # a manifest's offset/duration: only this part is diarized (file times kept)
    speakers: SpeakerCount | None = None  # a manifest line's count; overrides RunOptions.speakers


@dataclass
class RunOptions:
    """What holds for every job of a run."""

    speakers: SpeakerCount = field(default_factory=SpeakerCount)


@dataclass
class JobResult:
    job: Job
    annotation: Annotation | None = None
    num_speakers: int = 0
    duration: float = 0.0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    centroids: dict = field(default_factory=dict)  # DiarizationResult.centroids
    exclusive: Annotation | None = None  # DiarizationResult.exclusive_speaker_diarization


def run_job(diarizer, job: Job, opts: RunOptions, hook=None) -> JobResult:
    """Diarize one file; bad input becomes `error` instead of an exception."""
    uem = job.uem
    if job.window is not None:  # the part to diarize is one more restriction of the scored regions
        uem = job.window if uem is None else uem.crop(job.window)
    count = job.speakers if job.speakers is not None else opts.speakers
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = diarizer.run(
                job.audio,
                uri=job.uri,
                oracle_vad=job.oracle_vad,
                uem=uem,
                num_speakers=count.num,
                min_speakers=count.min,
                max_speakers=count.max,
                hook=hook,
            )
    except USER_ERRORS as e:  # this file fails; anything else is a bug
        lines = str(e).strip().splitlines()
        return JobResult(job, error=lines[0] if lines else type(e).__name__)
    return JobResult(
        job,
        res.annotation,
        res.num_speakers,
        res.duration,
        sum(res.timings.values()),
        [str(w.message) for w in caught],
        centroids=res.centroids,
        exclusive=res.exclusive_speaker_diarization,
    )


def run_local(diarizer, jobs: list[Job], opts: RunOptions, hook_for=None) -> Iterator[JobResult]:
    """Diarize `jobs` one after the other; `hook_for(job)` gives each job's progress hook."""
    for job in jobs:
        yield run_job(diarizer, job, opts, hook_for(job) if hook_for is not None else None)


RAY_CONNECT_TIMEOUT_S = 30.0


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(e).__name__


@contextlib.contextmanager
def _utf8_entrypoint() -> Iterator[None]:
    """Ray records the process's command line (read from /proc) as UTF-8 and fails on a non-UTF-8
    file name in it; hand it an escaped copy instead (a private Ray helper, so only if it exists)."""
    try:
        import ray._private.utils as ray_utils

        original = ray_utils.get_entrypoint_name
    except (ImportError, AttributeError):
        yield
        return

    def escaped() -> str:
        return original().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    ray_utils.get_entrypoint_name = escaped
    try:
        yield
    finally:
        ray_utils.get_entrypoint_name = original


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, in one line, when a Ray cluster's `host:port` cannot be reached
    (`ray.init` itself retries for minutes). `auto`/`local` are left to Ray."""
    import socket

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if address in ("auto", "local") or not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(
            f"--ray-address {address}: cannot reach a Ray cluster there within {timeout:g} s "
            f"({e.strerror or type(e).__name__})"
        ) from None


def run_ray(
    config: DiarizerConfig,
    model: str | None,
    device: str | None,
    jobs: list[Job],
    opts: RunOptions,
    address: str | None = None,
    workers: int | None = None,
) -> Iterator[JobResult]:
    """Spread files over Ray actors; each actor loads the model once and diarizes many files.

    `address=None` starts (or joins) a local Ray instance; otherwise connects to that cluster.
    Results come back in completion order.
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        if address:
            check_ray_address(address)
        with _utf8_entrypoint():
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    **({} if address else {"num_cpus": workers}),
                )
            except UnicodeEncodeError:
                raise ConfigError(
                    "Ray cannot start from a command line holding a non-UTF-8 file name; "
                    "list the files in a --manifest instead"
                ) from None

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, config: DiarizerConfig, model: str | None, device: str | None):
            from .models.base import limit_threads
            from .pipeline import Diarizer

            limit_threads(1)  # one core per actor; parallelism comes from actors
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the driver already said which model it uses
                self.diarizer = Diarizer(config, model=model, device=device)

        def run(self, job: Job, opts: RunOptions) -> JobResult:
            return run_job(self.diarizer, job, opts)

        def ready(self) -> bool:
            return True

    n = workers or max(1, int(ray.available_resources().get("CPU", 1)))
    actors = [Worker.remote(config, model, device) for _ in range(min(n, len(jobs)) or 1)]
    try:  # a model that cannot be loaded is one error for the whole run (exit 2), as with --engine local
        ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as e:
        # Ray gives the actor's __init__ error only as text; one of ours is raised again as itself.
        found = re.search(r"^diarize\.errors\.(\w+): (.+)$", getattr(e, "error_msg", "") or str(e), re.MULTILINE)
        cls = getattr(errors, found.group(1), None) if found else None
        if isinstance(cls, type) and issubclass(cls, DiarizeError):
            raise cls(found.group(2)) from None
        raise DiarizeError(f"Ray workers could not start: {_first_line(e)}") from None
    pool = ActorPool(actors)
    yield from pool.map_unordered(lambda actor, job: actor.run.remote(job, opts), jobs)
