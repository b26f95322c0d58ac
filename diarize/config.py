"""Configuration as typed dataclasses, with YAML presets in configs/ that state only what differs.

Every value is type- and range-checked when a config is built (`config_from_dict`, `load_config`),
before any audio is read; a bad value is a `ConfigError` naming its key. Tuned constants cite
their measurement in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .errors import ConfigError, short
from .schema import apply_overrides, build, read_yaml
from .schema import ranged_field as _f

# Presets live in the repo's top-level configs/; `diarize/configs` links to it so
# an installed package finds them too.
_PRESET_DIRS = [Path(__file__).resolve().parent / "configs", Path(__file__).resolve().parents[1] / "configs"]
PRESET_NAMES = ("general", "meeting", "telephonic", "fast", "exact")
VAD_METHODS = ("pyannote-seg", "energy", "silero")
OVERLAP_RULES = ("count", "score")  # SegmentationVADConfig.overlap_rule


@dataclass
class RegionRules:
    """What every VAD does to its raw regions (`vad.clean_regions`): fill pauses shorter than
    `min_silence_s`, then drop regions shorter than `min_speech_s`, then pad each by `pad_s`."""

    min_speech_s: float = _f(0.25, 0.0, 60.0)
    min_silence_s: float = _f(0.1, 0.0, 60.0)
    pad_s: float = _f(0.0, 0.0, 10.0)


@dataclass
class EnergyVADConfig(RegionRules):
    """Frame log-energy against an adaptive noise floor, with hysteresis (`vad.method: energy`).

    A frame starts speech when its energy is `onset_db` above the noise floor and speech ends when
    it falls below floor + `offset_db`. The floor is the `noise_percentile`-th percentile of frame
    energies, but never lower than `dynamic_range_db` under the loudest frames (so digital silence
    does not set it). Values tuned on the six shared recordings (benchmarks/RESULTS.md, development data).
    """

    frame_s: float = _f(0.02, 0.001, 1.0)
    smooth_frames: int = _f(5, 1, 1000)  # median filter over frames before thresholding
    noise_percentile: float = _f(1.0, 0.0, 100.0)
    dynamic_range_db: float = _f(40.0, 0.0, 200.0)
    onset_db: float = _f(24.0, 0.0, 200.0)
    offset_db: float = _f(8.0, 0.0, 200.0)
    min_silence_s: float = _f(0.5, 0.0, 60.0)
    pad_s: float = _f(0.1, 0.0, 10.0)


@dataclass
class SileroVADConfig(RegionRules):
    """Silero VAD (`vad.method: silero`): P(speech) per 32 ms frame, hysteresis onset/offset."""

    onset: float = _f(0.5, 0.0, 1.0)
    offset: float = _f(0.35, 0.0, 1.0)
    pad_s: float = _f(0.03, 0.0, 10.0)


@dataclass
class SegmentationVADConfig(RegionRules):
    """pyannote segmentation-3.0 (`vad.method: pyannote-seg`): 10 s windows every `step_s`; frame-level
    P(speech) and P(>= 2 speakers) binarised with hysteresis. `soft` uses powerset marginals instead
    of the most likely class. Overlap regions use the `overlap_*` thresholds and `min_overlap_s`.
    `energy_rescue_score` adds the energy detector's speech (`vad.energy` settings) where the model
    is unsure rather than sure there is none (`vad.energy_rescue`)."""

    # 10 s windows every 2.5 s (pyannote's own recipe steps 1 s): 40 % of the VAD's time. Chosen on dev with
    # region-level embeddings (benchmarks/RESULTS.md, "Choices on dev"): shared recordings 9.34 -> 5.37 %
    # forgiving DER (5/6 exact counts instead of 4/6), dev simulations 17.52 -> 17.97 %.
    step_s: float = _f(2.5, 0.0, 10.0, lo_open=True)
    onset: float = _f(0.5, 0.0, 1.0)
    offset: float = _f(0.5, 0.0, 1.0)
    soft: bool = False
    # 10 s windows per call on CPU: with two calls side by side (`models.base.map_batches`), 6 ran ~12 % faster
    # than 12 (and 12 10-15 % faster than 32 one call at a time; RESULTS.md) ...
    batch_size: int = _f(6, 1, 4096)
    accelerator_batch_size: int = _f(256, 1, 65536)  # ... and on a GPU, where a call has a fixed cost
    # The LSTM head under bf16 autocast on a CPU with native bf16 (as `embedding.cpu_bf16`; SincNet stays
    # fp32); ignored elsewhere. Off by default (dev 7.10 -> 8.46 % forgiving DER, 29 -> 25 exact counts), on in
    # the `fast` preset (benchmarks/RESULTS.md, "`fast` (bf16) on dev").
    cpu_bf16: bool = False
    # How overlap is found: "score" = hysteresis on the Hamming-weighted P(>= 2 speakers) with the
    # `overlap_*` thresholds; "count" = pyannote's speaker count (the active local speakers of every
    # window that sees a frame, averaged with equal weights and rounded: overlap where it is >= 2).
    # At the 2.5 s step "count" finds less overlap at lower precision than "score" (offset 0.3) on the
    # shared recordings (recall / precision 0.342 / 0.798 against 0.386 / 0.857) and slightly more at lower
    # precision on the dev sims (0.561 / 0.150 against 0.554 / 0.159), so the default is "score"
    # (benchmarks/accuracy/overlap_vs_pyannote.py, issue 33).
    overlap_rule: str = "score"
    # With the count rule, also call speech every frame it counts >= 1 (pyannote does). Off: on the
    # shared recordings it changed the clustering, forgiving DER 5.21 -> 5.95 %.
    count_speech: bool = False
    overlap_onset: float = _f(0.5, 0.0, 1.0)
    # Once overlap starts, it lasts until the score falls below 0.3: on the shared recordings overlap
    # recall / precision 0.332 / 0.838 -> 0.386 / 0.857 (pyannote's recipe: 0.342 / 0.857), dev sims
    # 0.548 / 0.164 -> 0.554 / 0.159 (0.538 / 0.151); chosen on dev, RESULTS.md "Overlapped speech".
    overlap_offset: float = _f(0.3, 0.0, 1.0)
    min_overlap_s: float = _f(0.1, 0.0, 60.0)
    # Energy speech is kept where P(speech) > this (None: the model alone). The model scores
    # reverberant, telephone and some close-talk speech low but rarely zero; 0.05 is the lowest of
    # 0/0.01/0.02/0.05/0.1 at which no condition of the simulated dev set gains false alarm (collar
    # 0.5 s), and it cuts miss on dev and test. Off by default: end to end on the shared recordings it
    # raised forgiving DER 5.21 % -> 8.52 % (extra regions changed the speaker count of dev01 and
    # trn04); see benchmarks/RESULTS.md, "Far-field speech".
    energy_rescue_score: float | None = _f(None, 0.0, 1.0)


@dataclass
class VADConfig:
    """Speech regions: which system VAD (oracle VAD is chosen by passing a reference instead),
    each method's own settings, and overlap-aware output."""

    # pyannote-seg: best full DER of the three on the shared recordings (benchmarks/RESULTS.md).
    method: str = "pyannote-seg"
    energy: EnergyVADConfig = field(default_factory=EnergyVADConfig)
    silero: SileroVADConfig = field(default_factory=SileroVADConfig)
    pyannote_seg: SegmentationVADConfig = field(default_factory=SegmentationVADConfig)
    device: str = "auto"  # for the neural VADs: auto | cpu | cuda | cuda:N | mps
    # Speaker turns reach this far into the silence on either side of a system VAD's region (at most to the
    # middle of a shorter pause), after clustering: the embedded regions stay as found (`pipeline.assemble`;
    # oracle regions are never widened). VADs cut soft onsets and tails. Chosen on dev with pyannote-seg (0.1-0.4;
    # benchmarks/RESULTS.md, "Choices on dev"): forgiving DER 13.81 -> 8.82 % on the dev sims and 5.37 -> 4.10 %
    # on the shared recordings (full DER 18.84 -> 18.56 and 16.77 -> 16.05 %), counts unchanged; padding the
    # regions (`pad_s`) moved counts. Silero's and the energy VAD's best are the same two values.
    turn_pad_s: float = _f(0.2, 0.0, 10.0)
    # And a speaker's turns on both sides of a pause shorter than this (no one else speaking) become one turn.
    # On the dev sims (whose references count a speaker's pauses as speech) forgiving DER 8.82 -> 7.10 %, shared
    # recordings unchanged; their references keep no pause of one speaker shorter than 1.06 s, so no longer
    # join was taken.
    turn_join_s: float = _f(1.0, 0.0, 60.0)
    # Give overlap regions found by pyannote-seg a second speaker (see diarize.overlap).
    overlap_assignment: bool = True
    overlap_context_s: float = _f(3.0, 0.0, 600.0)  # without local speakers: who counts as nearby
    # A segmentation window's local speaker is matched to a cluster only with this much solo speech
    # in the window (0.17 s: one segmentation frame) and this mean cosine to the cluster's centroid.
    # Re-chosen on dev with the count vote (grid 0.17-4 s x -1-0.6, mean full DER of the dev simulations
    # and the shared recordings 18.49 -> 18.21 %; was 2 s and 0.5): a close match keeps background babble
    # out better than a long solo stretch does (benchmarks/RESULTS.md, "Overlapped speech").
    overlap_min_solo_s: float = _f(0.17, 0.0, 10.0)
    overlap_min_similarity: float = _f(0.6, -1.0, 1.0)
    # Where no matched local speaker votes, still add the nearest other speaker heard within
    # `overlap_context_s`. Off: on the dev sims' overlap condition it raised the output's overlap
    # recall 0.60 -> 0.67 (full DER 15.10 -> 14.99 %), but over 17 dev sims with noise, where most
    # detected overlap is background talk, forgiving DER went 12.24 -> 17.52 % (issue 33).
    overlap_fallback: bool = False


@dataclass
class WindowConfig:
    """Multi-scale windows, longest first; the last scale is the base (finest) scale. NeMo's defaults."""

    window_lengths: list[float] = _f([1.5, 1.25, 1.0, 0.75, 0.5], 0.0, 30.0, lo_open=True)
    shifts: list[float] = _f([0.75, 0.625, 0.5, 0.375, 0.25], 0.0, 30.0, lo_open=True)
    weights: list[float] = _f([1.0, 1.0, 1.0, 1.0, 1.0], 0.0, 1e6)
    min_window_s: float = _f(0.05, 0.0, 30.0)  # NeMo drops sub-segments of 50 ms or less


@dataclass
class EmbeddingConfig:
    model: str = "auto"  # "auto" (titanet-large if at hand, else campplus), a name, or a .nemo path
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    batch_size: int = _f(512, 1, 65536)  # windows per batch at most ...
    # ... and at most this much padded audio per batch on CPU (its caches favour small batches; this binds
    # before batch_size there). Windows of any length (and fast-mode chunks) share a batch, zero-padded to
    # its longest, the model masking the padding. 16 s: as fast as 32 s with 2 threads, and the
    # 2D-convolution workspace of a batch, which sets peak memory, is halved (a 60 s file's five scales
    # peak at 654 MB instead of ~1,050 MB; RESULTS.md).
    max_batch_seconds: float = _f(16.0, 0.0, 1e6, lo_open=True)
    # The same on a GPU, where a call costs ~20 ms however small. 600 s: CAM++ embedding peaked at 1.1-1.3
    # GiB on an H200 (RESULTS.md); lower it on a small GPU.
    accelerator_batch_seconds: float = _f(600.0, 0.0, 1e6, lo_open=True)
    min_embed_s: float = _f(0.5, 0.0, 30.0)  # shorter windows are tiled (repeated) up to this length
    autocast: bool = True  # fp16/bf16 autocast on CUDA
    # bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere bf16 is emulated and runs
    # slower than fp32, so it is never used there. Off by default (dev 7.10 -> 7.80 % forgiving DER, 29 -> 28
    # exact counts), on in the `fast` preset (benchmarks/RESULTS.md, "`fast` (bf16) on dev").
    cpu_bf16: bool = False
    # "fast" (region-level, the default): the frame encoder runs once per speech region (chunks of
    # fast_chunk_s with fast_context_s each side) and every window of every scale is pooled from the shared
    # frames: ~9x faster embeddings for CAM++, and better than "exact" on recordings it was never tuned on
    # (benchmarks/RESULTS.md). "exact": every window embedded on its own, NeMo's way (the `exact` preset).
    mode: str = "fast"
    fast_chunk_s: float = _f(30.0, 1.0, 3600.0)
    fast_context_s: float = _f(3.0, 0.0, 60.0)
    # CAM++ only: fbank mean and context-mask means over a sliding window of this many seconds, so
    # chunks join seamlessly (None: over the whole chunk).
    fast_local_context_s: float | None = _f(1.5, 0.1, 60.0)


NEMO_SEARCH_VOLUME = 30  # NeMo's sparse_search_volume
NEMO_MAT_SIZE = 512  # NeMo's nme_mat_size


@dataclass
class ClusteringConfig:
    # Chosen on dev among 8/10/12/16 with the count vote below (benchmarks/RESULTS.md, "Choices on dev"):
    # NeMo's 8 cannot count the 9-10 speaker sessions; 12 and 16 gave the same on every dev set.
    max_num_speakers: int = _f(12, 1, 1000)
    max_rp_threshold: float = _f(0.25, 0.0, 1.0, lo_open=True)
    # p candidates of the NME-SC search (NeMo: 30); "auto": the model's own (MODEL_CLUSTERING). Each is a
    # dense eigenproblem, the largest part of clustering (benchmarks/RESULTS.md, "Choices on dev").
    sparse_search_volume: int | str = _f("auto", 1, 10000)
    # Rows the p-search subsamples the affinity to, at most (NeMo: 512); "auto": the model's own. Its cost
    # grows with their cube.
    nme_mat_size: int | str = _f("auto", 2, 100000)
    min_samples_for_nmesc: int = _f(6, 0, 100000)
    # The "auto" fields (AUTO_FIELDS): the embedding model's own values (MODEL_CLUSTERING below).
    # NeMo applies "enhanced counting" to sessions of <= 80 base windows; with CAM++ it
    # miscounted on our shared data (see benchmarks/RESULTS.md), so CAM++ turns it off.
    enhanced_count_threshold: int | str = _f("auto", 0, 100000)
    # NME-SC's count as the majority of the p candidates whose ratio is within this factor of the best
    # (None: the best p's count, as NeMo; NeMo's maj_vote_spk_count takes all candidates), p then the best
    # among those giving that count. The single best ratio can sit between two near-equal basins on short
    # sessions, and a re-encoding of the audio flips it (dev01: p 16 -> 7, 2 -> 5 speakers). Factor 3 was
    # chosen on dev among 1.5/2/3/4/all (benchmarks/RESULTS.md, "Choices on dev").
    nme_vote: float | str | None = _f("auto", 1.0, 1e9)
    enhanced_count_seeds: int = _f(5, 1, 100)
    kmeans_inits: int = _f(10, 1, 1000)
    # Clusters whose centroids have cosine >= this are one speaker (None: never merge).
    merge_threshold: float | str | None = _f("auto", -1.0, 1.0)
    # A cluster whose spectral halves have centroid cosine below this is split (None: never split):
    # recovers speakers with fewer windows than NME-SC's p, which the graph merges into others.
    split_threshold: float | str | None = _f("auto", -1.0, 1.0)
    split_min_windows: int = _f(6, 1, 100000)  # base windows (1.5 s of speech) in the smaller half at least
    # A turn (consecutive base windows of one cluster, no gap, at least `turn_min_windows`) whose mean has
    # cosine below this to the rest of its cluster and to every other cluster is a speaker of its own (one
    # who says a few words, too few windows for a group of the graph's own); such turns join each other at
    # `merge_threshold`. Unknown counts only; None: off. Chosen on dev (RESULTS.md, "Choices on dev").
    turn_split_threshold: float | str | None = _f("auto", -1.0, 1.0)
    turn_min_windows: int = _f(3, 1, 100000)
    # ... and at least this share of the session's base windows: in a long session a short noisy turn that
    # resembles no cluster is more often a stray than a new voice (RESULTS.md, "Choices on dev").
    turn_min_share: float = _f(0.006, 0.0, 1.0)
    # Each bisection binarises the cluster's affinity with p = this share of its items. A p-search per
    # cluster cost half of a 5-min session's clustering and was worse on the held-out dev set
    # (6.02 -> 5.07 % forgiving DER with 0.15; chosen on dev among 0.1-0.25, benchmarks/RESULTS.md).
    split_p_ratio: float = _f(0.15, 0.0, 1.0, lo_open=True)
    # With a known count: "merge" clusters into the graph's own groups, then merges (or splits) to the
    # count; "nemo" narrows the eigengap search to the count and runs k-means to it, as NeMo does.
    known_count: str = "merge"
    seed: int = _f(0, 0, 2**32 - 1)
    # Sessions with more base windows than this are clustered as "over-cluster each chunk into
    # chunk_cluster_count groups, then the same core on the group centroids" (bounded memory).
    embeddings_per_chunk: int = _f(10000, 0, 10**7)
    chunk_cluster_count: int = _f(50, 2, 100000)
    # Where the eigendecompositions run: "auto" = the device the embeddings ran on (the CPU when
    # `cluster` is called directly), or cpu | cuda | cuda:N. Only CUDA takes them off the host, and only
    # matrices of at least `clustering.GPU_EIGEN_MIN_N` rows (benchmarks/RESULTS.md).
    device: str = "auto"


# Per embedding-model values of the "auto" clustering fields. The cosines are the model's own scale:
# CAM++'s were chosen on the dev set alone (dev simulations + the six shared recordings; grid merge
# 0.60-0.75 x split none/0.40-0.50, benchmarks/RESULTS.md, "Choices on dev"). TitaNet gets NeMo's own
# clustering settings (no merge, no split, no vote, no turn split, enhanced counting up to 80 base windows)
# until real weights can be measured. CAM++'s 15 p candidates (NeMo's 30) were as good on dev and halve the
# search's eigenproblems; its 384 rows (NeMo's 512) gave the same or better on every dev set (the 20-40 min
# ones too; 320 lost there) for less than half the eigen work. Values in AUTO_FIELDS order.
AUTO_FIELDS = (
    "merge_threshold",
    "split_threshold",
    "enhanced_count_threshold",
    "nme_vote",
    "turn_split_threshold",
    "sparse_search_volume",
    "nme_mat_size",
)
MODEL_CLUSTERING: dict[str, dict[str, Any]] = {
    "campplus": dict(zip(AUTO_FIELDS, (0.65, 0.45, 0, 3.0, 0.3, 15, 384))),
    "titanet": dict(zip(AUTO_FIELDS, (None, None, 80, None, None, NEMO_SEARCH_VOLUME, NEMO_MAT_SIZE))),
}


def model_clustering(cfg: ClusteringConfig, model_name: str | None) -> ClusteringConfig:
    """`cfg` with its "auto" fields set to the embedding model's values (CAM++'s for other models)."""
    family = "titanet" if model_name and model_name.startswith("titanet") else "campplus"
    auto = {k: MODEL_CLUSTERING[family][k] for k in AUTO_FIELDS if getattr(cfg, k) == "auto"}
    return dataclasses.replace(cfg, **auto) if auto else cfg


@dataclass
class DiarizerConfig:
    vad: VADConfig = field(default_factory=VADConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SpeakerCount:
    """What the caller knows about the number of speakers: exactly `num`, or between `min` and `max`
    (None: not known; `max` None falls back to `clustering.max_num_speakers`)."""

    num: int | None = None
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        for name in ("num", "min", "max"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name}_speakers must be a whole number >= 1, got {short(v)}")
        if self.num is not None and (self.min is not None or self.max is not None):
            raise ConfigError("num_speakers cannot be combined with min_speakers/max_speakers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"min_speakers {self.min} is larger than max_speakers {self.max}")


# --------------------------------------------------------------------------- building and checking
_SECTIONS = {"vad": VADConfig, "windows": WindowConfig, "embedding": EmbeddingConfig, "clustering": ClusteringConfig}

# Flat VAD keys of configs written before the per-method split: old key -> (method section, new key).
_OLD_VAD_KEYS = {
    **{
        k: ("energy", k)
        for k in (
            "frame_s",
            "smooth_frames",
            "noise_percentile",
            "dynamic_range_db",
            "onset_db",
            "offset_db",
            "min_speech_s",
            "min_silence_s",
            "pad_s",
        )
    },
    "silero_threshold": ("silero", "onset"),
    "silero_neg_threshold": ("silero", "offset"),
    **{f"silero_{k}": ("silero", k) for k in ("min_speech_s", "min_silence_s", "pad_s")},
    **{
        f"seg_{k}": ("pyannote_seg", k)
        for k in (
            "step_s",
            "soft",
            "onset",
            "offset",
            "min_speech_s",
            "min_silence_s",
            "pad_s",
            "overlap_onset",
            "overlap_offset",
            "batch_size",
        )
    },
    "seg_min_overlap_s": ("pyannote_seg", "min_overlap_s"),
    "seg_device": (None, "device"),
}


def config_from_dict(data: Any, where: str = "config") -> DiarizerConfig:
    """Build and check a config from nested dicts (YAML); missing keys keep their defaults.

    Raises ConfigError naming the key for an unknown key, a wrong type or a value out of range.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {short(data)}")
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {short(sorted(map(str, unknown)))}; known: {sorted(_SECTIONS)}")
    data = dict(data)
    if isinstance(data.get("vad"), dict):
        data["vad"] = upgrade_flat_vad_keys(data["vad"], where)
    cfg = DiarizerConfig(**{k: build(cls, data.get(k), f"{where}:{k}") for k, cls in _SECTIONS.items()})
    validate(cfg, where)
    return cfg


def upgrade_flat_vad_keys(vad: dict[str, Any], where: str) -> dict[str, Any]:
    """Move pre-split flat VAD keys (`onset_db`, `seg_onset`, ...) into their method's section, with a warning."""
    old = [k for k in vad if k in _OLD_VAD_KEYS]
    if not old:
        return vad
    warnings.warn(
        f"{where}: flat vad keys {sorted(old)} are deprecated; write them under vad.energy, "
        "vad.silero or vad.pyannote_seg",
        DeprecationWarning,
        stacklevel=3,
    )
    out = {k: v for k, v in vad.items() if k not in _OLD_VAD_KEYS}
    for k in old:
        section, new = _OLD_VAD_KEYS[k]
        if section is None:
            out.setdefault(new, vad[k])
        else:
            sub = out.get(section)
            sub = dict(sub) if isinstance(sub, dict) else {}
            sub.setdefault(new, vad[k])
            out[section] = sub
    return out


def validate(cfg: DiarizerConfig, where: str = "config") -> None:
    """Checks that involve several fields (single values are checked when the config is built)."""
    w = cfg.windows
    if not (len(w.window_lengths) == len(w.shifts) == len(w.weights)) or not w.window_lengths:
        raise ConfigError(
            f"{where}: windows: window_lengths, shifts and weights must be non-empty lists of equal length"
        )
    if any(b > a for a, b in zip(w.window_lengths, w.window_lengths[1:])):
        raise ConfigError(f"{where}: windows: window_lengths must be non-increasing (longest first)")
    if any(s > L for L, s in zip(w.window_lengths, w.shifts)):
        raise ConfigError(f"{where}: windows: each shift must be in (0, window_length]")
    if sum(w.weights) <= 0:
        raise ConfigError(f"{where}: windows: weights must be non-negative with a positive sum")
    if cfg.embedding.mode not in ("exact", "fast"):
        raise ConfigError(f"{where}: embedding.mode must be exact or fast, got {short(cfg.embedding.mode)}")
    if cfg.clustering.known_count not in ("merge", "nemo"):
        raise ConfigError(
            f"{where}: clustering.known_count must be merge or nemo, got {short(cfg.clustering.known_count)}"
        )
    if cfg.vad.method not in VAD_METHODS:
        raise ConfigError(f"{where}: vad.method must be one of {', '.join(VAD_METHODS)}, got {short(cfg.vad.method)}")
    if cfg.vad.pyannote_seg.overlap_rule not in OVERLAP_RULES:
        raise ConfigError(
            f"{where}: vad.pyannote_seg.overlap_rule must be one of {', '.join(OVERLAP_RULES)}, "
            f"got {short(cfg.vad.pyannote_seg.overlap_rule)}"
        )
    from .models.base import resolve_device

    devices = [("vad.device", cfg.vad.device), ("embedding.device", cfg.embedding.device)]
    if cfg.clustering.device != "auto":
        devices.append(("clustering.device", cfg.clustering.device))
    for key, dev in devices:
        try:
            resolve_device(dev)
        except ConfigError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None


def preset_path(name: str) -> Path | None:
    for d in _PRESET_DIRS:
        p = d / f"{name}.yaml"
        if p.is_file():
            return p
    return None


def load_config(preset_or_path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> DiarizerConfig:
    """A preset name (general, meeting, telephonic), a YAML path, or None for the defaults, then
    `section.key=value` overrides. Raises ConfigError."""
    data: Any = {}
    where = "config"
    if preset_or_path is not None:
        s = str(preset_or_path)
        path = preset_path(s) if s in PRESET_NAMES else Path(s)
        if path is None or not path.is_file():
            raise ConfigError(f"{s}: not a preset ({', '.join(PRESET_NAMES)}) nor a YAML file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read ({e})") from None
        where = str(path)
        data = read_yaml(text, where)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of sections, got {short(data)}")
    if overrides:
        config_from_dict(data, where)  # the file alone: its errors name the file
        for item in overrides:  # each override's errors name it, not the file it changes
            data = apply_overrides(data, [item])
            try:
                config_from_dict(data, where)
            except ConfigError as e:
                # "FILE:section.key: ..." names its key; "FILE: ..." names none, so the override's key stands in.
                rest = str(e).removeprefix(f"{where}:")
                key = item.split("=", 1)[0][:80]
                raise ConfigError(f"--set {key}:{rest}" if rest.startswith(" ") else f"--set {rest}") from None
    return config_from_dict(data, where)
