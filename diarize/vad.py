"""Speech regions: oracle (from a reference RTTM, optionally cut by a UEM), or a system VAD run
block by block over the audio (`detect_speech`): energy, Silero, or pyannote segmentation-3.0,
which also finds overlapped speech.

Models only score frames (`models.silero.silero_probs`, `models.pyannet.sliding_scores`); the
rules that turn scores into regions live here. Regions are (K, 2) float64 arrays of [start, end]
seconds, sorted and non-overlapping (see `regions.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pyannote.core import Annotation, Timeline

from . import regions as rg
from .audio import SAMPLE_RATE
from .config import VAD_METHODS, EnergyVADConfig, VADConfig

if TYPE_CHECKING:  # importing the model module loads torch; keep it out of a cold start
    from .models.pyannet import FrameScores, LocalSpeakers

# A region cut by a block seam ends at the block end and resumes within a frame or two of the
# next block (the models' frames do not line up with the seam): gaps shorter than this that
# contain a seam are joined.
SEAM_GAP_S = 0.05


@dataclass
class SpeechRegions:
    speech: np.ndarray  # (K, 2) seconds
    overlap: np.ndarray  # (K', 2) seconds where >= 2 speakers talk (pyannote-seg only, else empty)
    # pyannote-seg only: every segmentation window's local speakers, on the file's clock (diarize.overlap).
    local: LocalSpeakers | None = None


# --------------------------------------------------------------------------- oracle
def oracle_regions(reference: Annotation, uem: Timeline | None = None) -> np.ndarray:
    """Union of the reference's speaker turns, like NeMo's oracle VAD.

    Overlapping turns are merged but turns that merely touch stay separate (NeMo
    does the same by nudging each start by 20 us), so a speaker change at a touch
    point is also a region boundary. Restricted to `uem` when given.
    """
    turns = rg.as_regions([(s.start, s.end) for s in reference.get_timeline() if s.duration > 0])
    regions = rg.merge(turns, join_touching=False)
    if uem is not None:
        regions = rg.intersect(regions, rg.from_timeline(uem.support()))
    return regions[regions[:, 1] - regions[:, 0] > 2e-5]


# --------------------------------------------------------------------------- shared rules
def hysteresis(scores: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Active where `scores` rose above `onset` and has not yet fallen below `offset`.

    Two thresholds keep a score hovering near one threshold from chattering on and off.
    """
    active = np.zeros(len(scores), dtype=bool)
    on = False
    for i, v in enumerate(scores):  # each frame depends on the previous state
        on = v >= offset if on else v > onset
        active[i] = on
    return active


def clean_regions(
    regions: np.ndarray, min_speech_s: float, min_silence_s: float, pad_s: float, total: float
) -> np.ndarray:
    """Fill pauses shorter than `min_silence_s`, then drop regions shorter than `min_speech_s`,
    then pad by `pad_s` (within [0, total]).

    Filling first keeps the pieces of a word split by a short pause (NeMo's
    filter_speech_first=False order would drop them).
    """
    filled = rg.merge(regions, gap=min_silence_s, join_touching=False)  # a pause of exactly min_silence_s stays
    return rg.pad(rg.drop_short(filled, min_speech_s), pad_s, total)


def scores_to_regions(
    scores: np.ndarray,
    times: np.ndarray,
    step: float,
    onset: float,
    offset: float,
    min_speech_s: float,
    min_silence_s: float,
    pad_s: float,
    total: float,
) -> np.ndarray:
    """Regions from frame scores (frame i centred at `times[i]`, `step` s apart): hysteresis, then
    `clean_regions`."""
    runs = rg.runs(hysteresis(scores, onset, offset)).astype(int)
    if len(runs) == 0:
        return rg.EMPTY.copy()
    # A run of frames [a, b) covers from half a step before frame a's centre to half a step after frame b-1's.
    regions = np.stack([times[runs[:, 0]] - step / 2, times[runs[:, 1] - 1] + step / 2], axis=1)
    return clean_regions(np.clip(regions, 0.0, total), min_speech_s, min_silence_s, pad_s, total)


# --------------------------------------------------------------------------- energy
def frame_energy_db(audio: np.ndarray, frame_s: float) -> np.ndarray:
    """Log energy (dB) of consecutive non-overlapping frames, each with its own mean removed
    (a DC offset is not speech); a trailing partial frame is dropped.

    Non-overlapping frames let a long file be processed block by block (blocks a
    multiple of the frame length) with results identical to one pass.
    """
    n = int(round(frame_s * SAMPLE_RATE))
    k = len(audio) // n
    frames = audio[: k * n].reshape(k, n).astype(np.float64)
    return 10.0 * np.log10(frames.var(axis=1) + 1e-12)


def energy_regions(frame_db: np.ndarray, cfg: EnergyVADConfig) -> np.ndarray:
    """Speech regions from per-frame energies (see `EnergyVADConfig` for the rule)."""
    if len(frame_db) == 0:
        return rg.EMPTY.copy()
    from scipy.ndimage import median_filter  # here, not at the top: only the energy VAD needs scipy.ndimage

    db = median_filter(frame_db, size=cfg.smooth_frames, mode="nearest") if cfg.smooth_frames > 1 else frame_db
    peak = np.percentile(db, 99)
    floor = max(np.percentile(db, cfg.noise_percentile), peak - cfg.dynamic_range_db)
    if peak - floor < cfg.onset_db:  # no frame clearly above the floor: nothing to find
        return rg.EMPTY.copy()
    active = hysteresis(db, floor + cfg.onset_db, floor + cfg.offset_db)
    total = len(db) * cfg.frame_s
    return clean_regions(rg.runs(active) * cfg.frame_s, cfg.min_speech_s, cfg.min_silence_s, cfg.pad_s, total)


def energy_vad(audio: np.ndarray, cfg: EnergyVADConfig) -> np.ndarray:
    return energy_regions(frame_energy_db(audio, cfg.frame_s), cfg)


# --------------------------------------------------------------------------- neural
@functools.lru_cache(maxsize=2)
def _segmentation_model(device: str):
    from .models.pyannet import load_pyannet

    return load_pyannet(device=device)


def _block_regions(block: np.ndarray, cfg: VADConfig, progress: Callable[[int], None] | None = None) -> SpeechRegions:
    """Speech (and overlap) regions of one block of audio by a neural VAD; `progress` gets its samples as they
    are done (pyannote-seg: batch by batch)."""
    from .models.base import resolve_device

    total = len(block) / SAMPLE_RATE
    if cfg.method == "silero":
        from .models.silero import FRAME, silero_probs

        s = cfg.silero
        probs = silero_probs(block)
        if progress is not None:
            progress(len(block))
        step = FRAME / SAMPLE_RATE
        times = step * (np.arange(len(probs)) + 0.5)
        speech = scores_to_regions(
            probs, times, step, s.onset, s.offset, s.min_speech_s, s.min_silence_s, s.pad_s, total
        )
        return SpeechRegions(speech, rg.EMPTY.copy())
    from .models.pyannet import sliding_scores

    s = cfg.pyannote_seg
    device = resolve_device(cfg.device)
    model = _segmentation_model(str(device))
    batch = s.batch_size if device.type == "cpu" else s.accelerator_batch_size
    head_dtype = None
    if device.type == "cpu" and s.cpu_bf16:
        import torch

        from .models.base import cpu_has_native_bf16

        head_dtype = torch.bfloat16 if cpu_has_native_bf16() else None
    scores = sliding_scores(
        model, block, step_s=s.step_s, batch_size=batch, soft=s.soft, progress=progress, head_dtype=head_dtype
    )
    return segmentation_regions(scores, block, cfg)


def energy_rescue(
    model_speech: np.ndarray,
    scores: np.ndarray,
    times: np.ndarray,
    step: float,
    energy_speech: np.ndarray,
    min_score: float,
    min_speech_s: float,
    total: float,
) -> np.ndarray:
    """`model_speech` plus the parts of `energy_speech` where the model's frame score is above
    `min_score` (frame i centred at `times[i]`, `step` s apart), each added piece at least
    `min_speech_s` long; (K, 2) regions in, (K', 2) out.

        scores > min_score      ..|=============|.......
        energy_speech           |---|  |--|  |------|
        model_speech                  |---|
        result                    |-| |---|  |--|

    The segmentation model scores reverberant (far-field) and band-limited speech low but seldom
    zero, while the energy detector finds it; where the model is sure there is no speech (score
    at or below `min_score`) energy alone, e.g. a noise burst, adds nothing. Model regions are never cut.
    Short pieces are dropped because a lone blip gets clustered as a speaker of its own (on dev01 a
    0.2 s piece made the count 4 instead of 2).
    """
    unsure = scores_to_regions(scores, times, step, min_score, min_score, 0.0, 0.0, 0.0, total)
    rescued = rg.drop_short(rg.intersect(rg.as_regions(energy_speech), unsure), min_speech_s)
    return rg.merge(np.concatenate([rg.as_regions(model_speech), rescued]))


def speaker_count(mean_count: np.ndarray) -> np.ndarray:
    """Speakers per frame from the windows' mean count of active local speakers (`FrameScores.count`),
    rounded half to even as pyannote's `speaker_count` does (0.5 -> 0, 1.5 -> 2); (F,) uint8."""
    return np.rint(mean_count).astype(np.uint8)


def segmentation_regions(scores: FrameScores, block: np.ndarray, cfg: VADConfig) -> SpeechRegions:
    """Speech and overlap regions of one block from its pyannote-seg frame `scores` (`block`: the
    block's 16 kHz samples, for the energy rescue): hysteresis and `RegionRules`, then
    `energy_rescue` when `cfg.pyannote_seg.energy_rescue_score` is set.

    Overlap by `overlap_rule`: "count" = where `speaker_count` is >= 2 (and with `count_speech`,
    frames it counts as speech join the speech score's regions: a frame most windows call silence
    can still average one speaker when some windows hear two there); "score" = hysteresis on
    `scores.overlap`.
    """
    s = cfg.pyannote_seg
    total = len(block) / SAMPLE_RATE
    t, step = scores.times, scores.step
    by_count = s.overlap_rule == "count" and scores.count is not None
    speech_score = scores.speech
    if by_count:
        count = speaker_count(scores.count)
        if s.count_speech:
            speech_score = np.maximum(speech_score, (count >= 1).astype(speech_score.dtype))
    speech = scores_to_regions(
        speech_score, t, step, s.onset, s.offset, s.min_speech_s, s.min_silence_s, s.pad_s, total
    )
    if s.energy_rescue_score is not None:
        energy = energy_vad(block, cfg.energy)
        speech = energy_rescue(speech, scores.speech, t, step, energy, s.energy_rescue_score, s.min_speech_s, total)
    if by_count:
        # An indicator in [0, 1]: any threshold in (0, 1) picks exactly the frames counted >= 2.
        overlap = scores_to_regions((count >= 2).astype(float), t, step, 0.5, 0.5, s.min_overlap_s, 0.0, 0.0, total)
    else:
        overlap = scores_to_regions(
            scores.overlap, t, step, s.overlap_onset, s.overlap_offset, s.min_overlap_s, 0.0, 0.0, total
        )
    return SpeechRegions(speech, overlap, scores.local)


def turn_rules(cfg: VADConfig, found_by: str | None) -> tuple[float, float]:
    """How far speaker turns reach into the silence around regions that `found_by` found, and across how
    short a pause one speaker's turns join (`rttm.widen_turns`): `cfg.turn_pad_s` and `cfg.turn_join_s` for
    a system VAD; neither around a reference's own turns ("oracle") or regions of unknown origin (None)."""
    if found_by in (None, "oracle"):
        return 0.0, 0.0
    return cfg.turn_pad_s, cfg.turn_join_s


def join_at_seams(parts: list[np.ndarray], seams: np.ndarray) -> np.ndarray:
    """Concatenate per-block regions, joining pairs that a block seam cut apart (gap < SEAM_GAP_S
    with a seam inside it)."""
    merged: list[list[float]] = []
    for s, e in rg.as_regions(np.concatenate(parts) if parts else rg.EMPTY):
        if merged and s - merged[-1][1] < SEAM_GAP_S and np.any((seams >= merged[-1][1] - 1e-6) & (seams <= s + 1e-6)):
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return rg.as_regions(merged)


# --------------------------------------------------------------------------- entry point
def detect_speech(
    blocks: Iterable[np.ndarray], cfg: VADConfig, progress: Callable[[int], None] | None = None
) -> SpeechRegions:
    """Speech (and overlap) regions of 16 kHz mono audio given as consecutive blocks, by `cfg.method`.

    Energy VAD carries the partial frame at each block's end into the next block, so it gives
    exactly the whole-file result. Neural VADs run per block (one block for audio up to a block
    long) and join regions cut at a seam. `progress` is called with the samples done as they are done.
    """
    if cfg.method not in VAD_METHODS:
        raise ValueError(f"unknown VAD method {cfg.method!r}; choose one of {', '.join(VAD_METHODS)}")
    total = 0
    if cfg.method == "energy":
        frame = int(round(cfg.energy.frame_s * SAMPLE_RATE))
        energies: list[np.ndarray] = []
        carry = np.zeros(0, dtype=np.float32)
        for block in blocks:
            total += len(block)
            x = np.concatenate([carry, block]) if len(carry) else block
            used = len(x) // frame * frame
            energies.append(frame_energy_db(x[:used], cfg.energy.frame_s))
            carry = x[used:].copy()
            if progress is not None:
                progress(len(block))
        speech = energy_regions(np.concatenate(energies) if energies else np.zeros(0), cfg.energy)
        return SpeechRegions(speech, rg.EMPTY.copy())
    speech_parts, overlap_parts, local_parts, seams = [], [], [], []
    for block in blocks:
        found = _block_regions(block, cfg, progress)
        speech_parts.append(found.speech + total / SAMPLE_RATE)
        overlap_parts.append(found.overlap + total / SAMPLE_RATE)
        if found.local is not None:
            local_parts.append(found.local.shifted(total / SAMPLE_RATE))
        total += len(block)
        seams.append(total / SAMPLE_RATE)
    seam_arr = np.array(seams[:-1])
    local = None
    if local_parts:
        from .models.pyannet import LocalSpeakers

        local = LocalSpeakers.concatenate(local_parts)
    return SpeechRegions(join_at_seams(speech_parts, seam_arr), join_at_seams(overlap_parts, seam_arr), local)


def speech_regions(audio: np.ndarray, cfg: VADConfig) -> tuple[np.ndarray, np.ndarray]:
    """(speech, overlap) regions of one in-memory waveform: `detect_speech` with a single block."""
    found = detect_speech([audio], cfg)
    return found.speech, found.overlap
