"""Run the pipeline over many files: locally (one process) or spread over a Ray cluster.

A batch is planned first: each input's output paths (`output_paths`, `job_files`), the inputs
already done (resume) and the ones that fail at once (`plan_jobs`). Both engines then yield one
`JobResult` per file as soon as it is done; the caller writes the outputs (atomically) and a line
of the run log (`RunLog`), so an interrupted batch keeps every finished file and can be resumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyannote.core import Annotation, Timeline

from .config import DiarizerConfig, SpeakerCount
from . import errors
from .errors import USER_ERRORS, AudioError, ConfigError, DiarizeError, FormatError, OutputError, UsageError, short
from .files import check_writable_folder
from .rttm import rttm_token


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


# --------------------------------------------------------------------------- a batch's files
RUN_LOG = "diarize_run.log"


def output_paths(
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
        check_writable_folder(out.parent)
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
    check_writable_folder(out)
    return [out / f"{s}.{fmt}" for s in stems], True


def file_ids(audio: list[Path], entry_of: dict) -> list[str]:
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


def transcript_out(out: Path, transcript: Path) -> Path:
    """Where the labelled transcript goes: beside the output as NAME.speakers.EXT (EXT .srt, .vtt or .json)."""
    ext = transcript.suffix.lower() if transcript.suffix.lower() in (".srt", ".vtt") else ".json"
    return out.with_suffix(f".speakers{ext}")


def job_files(out: Path, fmts: list[str], transcript: Path | None) -> list[Path]:
    """Every file written for one input: one per format (the first is `out`), and the labelled transcript."""
    paths = [out] + [out.with_suffix(f".{fmt}") for fmt in fmts[1:]]
    return paths + ([transcript_out(out, transcript)] if transcript is not None else [])


class RunLog:
    """A batch's diarize_run.log: one tab-separated line per input (ok, skip, fail), appended as each
    is done, so a killed batch keeps what it finished. With no path (one output file) it writes nothing."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, line: str) -> None:
        """Append `line` with a time stamp."""
        if self.path is None:
            return
        # O_NOFOLLOW: a symlink planted as the log since the run's checks is never written through.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        with open(os.open(self.path, flags, 0o666), "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{line}\n")

    def ok(self, r: JobResult) -> None:
        """A diarized input: its output, speakers, duration and real-time factor."""
        rtf = r.seconds / max(r.duration, 1e-9)
        self.write(
            f"ok\t{r.job.audio}\t{r.job.out}\tspeakers={r.num_speakers}\tduration={r.duration:.1f}s\trtf={rtf:.3f}"
        )

    def fail(self, audio: Path, message: str) -> None:
        """An input that failed, and why."""
        self.write(f"fail\t{audio}\t{message}")


@dataclass
class References:
    """Reference turns (--oracle-vad) and scored regions (--uem) given for the whole run, by file id,
    and the files they came from (named when an input has none)."""

    turns: dict[str, Annotation] | None = None
    turns_file: Path | None = None
    regions: dict[str, Timeline] | None = None
    regions_file: Path | None = None


@dataclass
class Plan:
    """A run sorted before any work: the jobs, the inputs that fail at once (input, message), and how
    many inputs a resumed batch skips."""

    jobs: list[Job] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0


def plan_jobs(
    audio: list[Path],
    outputs: list[Path],
    ids: list[str],
    entries: dict,
    refs: References,
    log: RunLog,
    *,
    batch: bool,
    resume: Callable[[Path], list[Path]] | None = None,
) -> Plan:
    """A job per input still to do; `ids[i]` names input i's output, `entries` are manifest lines by
    input index. In a batch, an input whose output is a directory fails, and with `resume` (the files
    a job writes; None: --overwrite) an input whose files all exist is skipped. An input the run's
    references do not cover fails, unless its manifest line names its own."""
    plan = Plan()
    for i, (path, out) in enumerate(zip(audio, outputs)):
        uri = rttm_token(path.stem)  # the file id references are looked up by; ids[i] names the output
        entry = entries.get(i)
        if batch and out.is_dir():
            plan.failures.append((path, f"{out}: output is a directory"))
        elif batch and resume is not None and all(p.exists() for p in resume(out)):
            plan.skipped += 1  # resumed: done only when every requested output is there
            log.write(f"skip\t{path}\t{out} exists")
        elif refs.turns is not None and uri not in refs.turns and (entry is None or entry.rttm is None):
            plan.failures.append((path, f"{refs.turns_file}: no turns for file id {uri!r}"))
        elif refs.regions is not None and uri not in refs.regions and (entry is None or entry.uem is None):
            plan.failures.append((path, f"{refs.regions_file}: no region for file id {uri!r}"))
        else:
            plan.jobs.append(_job(path, out, ids[i], refs, entry))
    return plan


def _job(audio: Path, out: Path, file_id: str, refs: References, entry) -> Job:  # noqa: ANN001 (ManifestEntry)
    """The job of one input: the run's references for its file id; a manifest line's own references
    first, its part of the recording and its speaker count."""
    uri = rttm_token(audio.stem)
    turns = refs.turns.get(uri) if refs.turns is not None else None
    regions = refs.regions.get(uri) if refs.regions is not None else None
    if entry is None:
        return Job(audio, out, file_id, turns, regions)
    from .manifest import load_references

    oracle, scored = load_references(entry)
    return Job(
        audio,
        out,
        file_id,
        oracle if oracle is not None else turns,
        scored if scored is not None else regions,
        window=entry.window(),
        speakers=SpeakerCount(entry.num_speakers) if entry.num_speakers is not None else None,
    )


# --------------------------------------------------------------------------- running
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


def _start_ray(ray, address: str | None, workers: int | None) -> None:  # noqa: ANN001 (the ray module)
    """Join the cluster at `address` (checked first: Ray itself retries for minutes), or start a local
    instance with `workers` CPUs."""
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


def _actor_error(e: BaseException) -> DiarizeError:
    """The error of an actor that could not start: Ray gives its __init__ error only as text; one of
    ours is raised again as itself."""
    found = re.search(r"^diarize\.errors\.(\w+): (.+)$", getattr(e, "error_msg", "") or str(e), re.MULTILINE)
    cls = getattr(errors, found.group(1), None) if found else None
    if isinstance(cls, type) and issubclass(cls, DiarizeError):
        return cls(found.group(2))
    return DiarizeError(f"Ray workers could not start: {_first_line(e)}")


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
        _start_ray(ray, address, workers)

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
        raise _actor_error(e) from None
    pool = ActorPool(actors)
    yield from pool.map_unordered(lambda actor, job: actor.run.remote(job, opts), jobs)
