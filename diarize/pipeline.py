"""The diarization pipeline, one code path for every input length:

audio blocks -> speech regions -> multi-scale windows -> embeddings -> clustering -> speaker turns,
as four public stages a caller can stop between and resume from:

    speech(source, cfg) -> Speech                         regions, overlap, local speakers
    embed(source, speech, model, cfg) -> Embedded         windows per scale and their embeddings
    label(embedded, cfg, count) -> ClusteringResult       speaker label of every base window
    assemble(embedded, clusters, cfg) -> DiarizationResult  speaker turns and centroids


A short recording is a recording with one block. Audio is read block by block twice (VAD, then
embeddings) unless it fits in one block, which is kept in memory. `Diarizer`, the CLI and the
batch engines call `diarize`; benchmarks call the stages (a cache of `Embedded` is re-scored by
`label` + `assemble`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyannote.core import Annotation, Timeline

from . import regions as rg
from .audio import BLOCK_SECONDS, AudioSource
from .affinity import unit_rows
from .clustering import ClusteringResult, cluster
from .config import DiarizerConfig, SpeakerCount, load_config
from .embeddings import check_inputs_fit, embed_blocks
from .errors import AudioError, ConfigError
from .files import atomic_path
from .models import SpeakerEmbedder, load_model
from .models.base import threads_limited
from .overlap import second_speaker_annotation, with_second_speakers
from .progress import STAGES, Hook, StageHook, StageTimer, as_steps, progress_counter
from .result import DiarizationResult
from .rttm import labels_to_annotation, speaker_names, widen_turns
from .vad import detect_speech, oracle_regions, turn_rules
from .windows import ScaleWindows, multiscale_windows

if TYPE_CHECKING:
    from .models.pyannet import LocalSpeakers


@dataclass
class Speech:
    """What the speech stage found in one recording (seconds, cut to the scored part and to the audio)."""

    uri: str
    duration: float  # seconds of audio
    regions: np.ndarray  # (K, 2) speech regions
    overlap: np.ndarray  # (K', 2) overlapped speech (pyannote-seg only, else empty)
    local: LocalSpeakers | None = None  # pyannote-seg's local speakers per window (overlap assignment)
    found_by: str | None = None  # "oracle" (a reference's turns) or the VAD method; None: not known
    scored: np.ndarray | None = None  # (M, 2) the UEM's scored part; None: all of the audio


@dataclass
class Embedded:
    """A recording's windows and their embeddings: everything `label` and `assemble` need, so a cache of
    these (plain arrays, picklable) re-scores clustering or output settings without the audio."""

    speech: Speech
    scales: list[ScaleWindows]  # base (shortest) scale last
    embeddings: list[np.ndarray]  # per scale, (N_s, D) float32
    model_name: str  # picks the "auto" clustering thresholds
    device: str  # where the embeddings ran: clustering.device "auto" follows it


def save_embedded(embedded: Embedded, path: str | os.PathLike) -> None:
    """Write `embedded` to an .npz file at `path` (atomically), to be read back by `load_embedded`."""
    sp = embedded.speech
    arrays = {
        "uri": np.array(sp.uri),
        "duration": np.array(sp.duration),
        "regions": sp.regions,
        "overlap": sp.overlap,
        "found_by": np.array(sp.found_by or ""),
        "model_name": np.array(embedded.model_name),
        "device": np.array(embedded.device),
        "scales": np.array([[s.window, s.shift, s.weight] for s in embedded.scales], dtype=np.float64).reshape(-1, 3),
    }
    for i, (s, e) in enumerate(zip(embedded.scales, embedded.embeddings)):
        arrays |= {f"starts_{i}": s.starts, f"ends_{i}": s.ends, f"emb_{i}": e}
    if sp.scored is not None:
        arrays["scored"] = sp.scored
    if sp.local is not None:
        arrays |= {"local_starts": sp.local.starts, "local_classes": sp.local.classes}
        arrays["local_grid"] = np.array([sp.local.step, sp.local.offset])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_embedded(path: str | os.PathLike) -> Embedded:
    """The `Embedded` that `save_embedded` wrote to `path`."""
    with np.load(path) as z:
        local = None
        if "local_starts" in z.files:
            from .models.pyannet import LocalSpeakers

            step, offset = (float(v) for v in z["local_grid"])
            local = LocalSpeakers(z["local_starts"], z["local_classes"], step, offset)
        found_by = (str(z["found_by"]) or None) if "found_by" in z.files else None
        scored = z["scored"] if "scored" in z.files else None
        sp = Speech(str(z["uri"]), float(z["duration"]), z["regions"], z["overlap"], local, found_by, scored)
        scales = [
            ScaleWindows(float(w), float(sh), float(wt), z[f"starts_{i}"], z[f"ends_{i}"])
            for i, (w, sh, wt) in enumerate(z["scales"])
        ]
        embeddings = [z[f"emb_{i}"] for i in range(len(scales))]
        return Embedded(sp, scales, embeddings, str(z["model_name"]), str(z["device"]))


def speech(
    source: AudioSource,
    cfg: DiarizerConfig,
    *,
    oracle_vad: Annotation | None = None,
    uem: Timeline | None = None,
    hook: Hook | StageHook | None = None,
    block_seconds: float = BLOCK_SECONDS,
    timer: StageTimer | None = None,
) -> Speech:
    """Speech regions of `source` (`cfg.vad`, or `oracle_vad`'s), cut to `uem` and to the audio.
    Warns (`UserWarning`) when there is none."""
    timer = timer or StageTimer()
    steps = as_steps(hook, source.uri)
    duration = source.duration
    with timer("vad"):
        local = None
        if oracle_vad is not None:
            regions, overlap = oracle_regions(oracle_vad), rg.EMPTY.copy()
        else:
            blocks = timer.iterate(source.blocks(block_seconds), "load")
            found = detect_speech(blocks, cfg.vad, progress_counter(steps, "vad", source.num_samples))
            regions, overlap, local = found.speech, found.overlap, found.local
        # The one place where regions are cut to the scored part and to the audio.
        scored = None
        if uem is not None:
            scored = rg.clip(rg.from_timeline(uem.support()), 0.0, duration)
            regions, overlap = rg.intersect(regions, scored), rg.intersect(overlap, scored)
        regions, overlap = rg.clip(regions, 0.0, duration), rg.clip(overlap, 0.0, duration)
    if len(regions) == 0:
        warnings.warn(f"{source.uri}: no speech found; the result is empty", stacklevel=3)
    if steps is not None:
        steps.finished("vad", regions)
    found_by = "oracle" if oracle_vad is not None else cfg.vad.method
    return Speech(source.uri, duration, regions, overlap, local, found_by, scored)


def embed(
    source: AudioSource,
    speech: Speech,
    model: SpeakerEmbedder,
    cfg: DiarizerConfig,
    *,
    hook: Hook | StageHook | None = None,
    block_seconds: float = BLOCK_SECONDS,
    timer: StageTimer | None = None,
) -> Embedded:
    """Multi-scale windows over `speech.regions` (`cfg.windows`) and their embeddings (`cfg.embedding`),
    reading `source` block by block."""
    timer = timer or StageTimer()
    steps = as_steps(hook, source.uri)
    with timer("windows"):
        scales = multiscale_windows(speech.regions, cfg.windows)
    with timer("embeddings"):
        blocks = timer.iterate(source.blocks(block_seconds), "load")
        progress = progress_counter(steps, "embeddings", sum(len(s) for s in scales))
        embeddings = embed_blocks(blocks, scales, model, cfg.embedding, progress, regions=speech.regions)
    if steps is not None:
        steps.finished("embeddings", embeddings)
    return Embedded(speech, scales, embeddings, model.name, str(model.device))


def label(
    embedded: Embedded,
    cfg: DiarizerConfig,
    count: SpeakerCount = SpeakerCount(),
    model_name: str | None = None,
    *,
    hook: Hook | StageHook | None = None,
    timer: StageTimer | None = None,
) -> ClusteringResult:
    """Speaker label of every base-scale window (`cfg.clustering`). "auto" thresholds take the values of
    `model_name` (default: the model that made the embeddings); clustering.device "auto" is where they ran.

    Raises SpeakerCountError for a count the speech cannot hold.
    """
    timer = timer or StageTimer()
    steps = as_steps(hook, embedded.speech.uri)
    with timer("clustering"):
        if steps is not None:
            steps.progress("clustering", 0, 1)
        ccfg = cfg.clustering
        if ccfg.device == "auto":  # where the embeddings ran
            ccfg = dataclasses.replace(ccfg, device=embedded.device)
        name = model_name or embedded.model_name
        result = cluster(embedded.embeddings, embedded.scales, ccfg, count, model_name=name)
        if steps is not None:
            steps.progress("clustering", 1, 1)
            steps.finished("clustering", result.labels)
    return result


def assemble(
    embedded: Embedded, clusters: ClusteringResult, cfg: DiarizerConfig, *, timer: StageTimer | None = None
) -> DiarizationResult:
    """Speaker turns from the base windows' labels (overlapped speech gets a second speaker when
    `cfg.vad.overlap_assignment`; turns reach into the silence around the speech regions, `vad.turn_rules`),
    and each speaker's centroid. Timings are `timer`'s."""
    timer = timer or StageTimer()
    sp, base, emb = embedded.speech, embedded.scales[-1], embedded.embeddings[-1]
    with timer("output"):
        # The clustering's own labels: one speaker at a time, before the overlap step adds any.
        alone = labels_to_annotation(base.starts, base.ends, clusters.labels, uri=sp.uri)
        if cfg.vad.overlap_assignment and len(sp.overlap) and len(base):
            second = second_speaker_annotation(
                base.starts,
                base.ends,
                clusters.labels,
                emb,
                sp.overlap,
                uri=sp.uri,
                context_s=cfg.vad.overlap_context_s,
                local=sp.local,
                min_solo_s=cfg.vad.overlap_min_solo_s,
                min_similarity=cfg.vad.overlap_min_similarity,
                fallback=cfg.vad.overlap_fallback,
            )
            annotation = with_second_speakers(alone, second)
        else:
            annotation = alone
        pad, join = turn_rules(cfg.vad, sp.found_by)
        scored = sp.scored if sp.scored is not None else np.array([[0.0, sp.duration]])
        annotation = widen_turns(annotation, sp.regions, pad, join, scored)
        alone = widen_turns(alone, sp.regions, pad, join, scored)
        centroids = speaker_centroids(base.starts, base.ends, clusters.labels, emb) if len(base) else {}
    return DiarizationResult(
        annotation, sp.regions, len(annotation.labels()), sp.duration, timer.seconds, sp.overlap, centroids, alone
    )


def diarize(
    source: AudioSource,
    model: SpeakerEmbedder,
    cfg: DiarizerConfig,
    *,
    oracle_vad: Annotation | None = None,
    uem: Timeline | None = None,
    speakers: SpeakerCount = SpeakerCount(),
    hook: Hook | StageHook | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> DiarizationResult:
    """Diarize one recording: `speech` -> `embed` -> `label` -> `assemble`. Warns (`UserWarning`) when
    no speech is found; the result is then empty.

    Raises SpeakerCountError for a count the speech cannot hold, and whatever `hook` raises.
    """
    check_inputs_fit(model, cfg)  # before any work: a bad window setting is a ConfigError, not a crash
    timer = StageTimer()
    steps = as_steps(hook, source.uri)
    found = speech(source, cfg, oracle_vad=oracle_vad, uem=uem, hook=steps, block_seconds=block_seconds, timer=timer)
    embedded = embed(source, found, model, cfg, hook=steps, block_seconds=block_seconds, timer=timer)
    clusters = label(embedded, cfg, speakers, hook=steps, timer=timer)
    return assemble(embedded, clusters, cfg, timer=timer)


def speaker_centroids(
    starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, embeddings: np.ndarray
) -> dict[str, np.ndarray]:
    """Unit-length mean of the unit (N, D) window embeddings of each cluster, keyed by the speaker
    name `labels_to_annotation` gives that cluster."""
    labels = np.asarray(labels)
    emb = unit_rows(np.asarray(embeddings, dtype=np.float32), eps=1e-12)
    names = speaker_names(labels, starts, ends)
    return {
        name: unit_rows(emb[labels == k].mean(axis=0, keepdims=True), eps=1e-12)[0].astype(np.float32)
        for k, name in names.items()
    }


AudioInput = Any  # path, (T,) / (T, C) / (C, T) array or tensor, or pyannote's {"waveform", "sample_rate"} dict


def open_source(
    audio: AudioInput, sample_rate: int | None = None, uri: str | None = None, block_seconds: float = BLOCK_SECONDS
) -> AudioSource:
    """An `AudioSource` from a path, a waveform (array or tensor, with `sample_rate`) or pyannote's
    `{"waveform": (C, T) tensor, "sample_rate": sr}` dict (optionally with "uri" or "audio")."""
    if isinstance(audio, dict):
        if "waveform" in audio:
            return open_source(audio["waveform"], audio.get("sample_rate"), uri or audio.get("uri"), block_seconds)
        if "audio" in audio:
            return open_source(audio["audio"], sample_rate, uri or audio.get("uri"), block_seconds)
        raise AudioError("an audio dict needs 'waveform' and 'sample_rate' (or 'audio': a path)")
    if isinstance(audio, (str, os.PathLike)):
        return AudioSource.from_file(audio, uri=uri, block_seconds=block_seconds)
    if hasattr(audio, "detach"):  # torch tensor
        audio = audio.detach().cpu().numpy()
    if sample_rate is None:
        raise AudioError("sample_rate is required when passing a waveform")
    return AudioSource.from_waveform(np.asarray(audio), sample_rate, uri=uri or "waveform")


class Diarizer:
    """Python API over `diarize`, shaped like a pyannote.audio 4 pipeline: load once, call per file.

    out = Diarizer.from_config("meeting")("meeting.wav")   # DiarizationResult (== `run`)
    out.speaker_diarization      # pyannote.core.Annotation
    ann = Diarizer().diarize("meeting.wav")                # the Annotation alone
    """

    def __init__(
        self,
        config: DiarizerConfig | None = None,
        model: SpeakerEmbedder | str | None = None,
        device: str | None = None,
        threads: int | None = None,
    ):
        """`threads`: CPU threads (torch's and BLAS's) each run may use, as the CLI's `--threads`; the
        process's own limits are back in place after the run [None: leave them, all cores]."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1, got {threads!r}")
        self.config = config or DiarizerConfig()
        self.threads = threads
        if device is not None:
            self.config.embedding.device = device
            self.config.vad.device = device
        if model is None or isinstance(model, str):
            model = load_model(model or self.config.embedding.model, self.config.embedding.device)
        check_inputs_fit(model, self.config)
        self.model = model

    @classmethod
    def from_config(cls, preset_or_path: str | os.PathLike = "general", **kwargs: Any) -> "Diarizer":
        return cls(load_config(preset_or_path), **kwargs)

    def to(self, device: str) -> "Diarizer":
        """Move the embedding model (and the neural VAD) to `device`; returns self."""
        from .models.base import resolve_device

        dev = resolve_device(device)
        self.model = self.model.to(dev)
        self.config.embedding.device = self.config.vad.device = str(dev)
        return self

    def run(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        *,
        uri: str | None = None,
        oracle_vad: Annotation | None = None,
        uem: Timeline | None = None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: Hook | None = None,
    ) -> DiarizationResult:
        """Diarize a file path, a waveform (with `sample_rate`) or pyannote's audio dict.

        Raises:
            AudioError: unreadable or empty audio.
            ConfigError: inconsistent speaker counts.
            SpeakerCountError: more speakers asked for than the speech can hold.
        """
        speakers = SpeakerCount(num_speakers, min_speakers, max_speakers)
        source = open_source(audio, sample_rate, uri)
        with threads_limited(self.threads):
            return diarize(
                source, self.model, self.config, oracle_vad=oracle_vad, uem=uem, speakers=speakers, hook=hook
            )

    def diarize(self, audio: AudioInput, sample_rate: int | None = None, **kwargs: Any) -> Annotation:
        """Like `run`, returning only the `pyannote.core.Annotation`."""
        return self.run(audio, sample_rate, **kwargs).annotation

    # pyannote.audio 4 returns its result object from a call; ours also answers the Annotation API,
    # so pyannote 3 style code (`for turn, _, spk in d(f).itertracks(yield_label=True)`) still runs.
    __call__ = run


__all__ = [
    "Diarizer",
    "DiarizationResult",
    "Embedded",
    "Hook",
    "STAGES",
    "Speech",
    "StageHook",
    "StageTimer",
    "assemble",
    "diarize",
    "embed",
    "label",
    "load_embedded",
    "open_source",
    "save_embedded",
    "speaker_centroids",
    "speech",
]
