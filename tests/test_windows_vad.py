import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline

from diarize.audio import load_audio
from diarize.config import EnergyVADConfig, WindowConfig
from diarize.rttm import read_rttm
from diarize.vad import energy_vad, oracle_regions
from diarize.windows import cut_region, multiscale_windows

from conftest import DIAR, require_data


def test_cut_region_follows_nemo_rules():
    s, e = cut_region(10.0, 12.0, 1.5, 0.75, 0.05)
    # n = ceil((2.0 - 1.5) / 0.75) + 1 = 2; the last window is clipped at the region end
    np.testing.assert_allclose(s, [10.0, 10.75])
    np.testing.assert_allclose(e, [11.5, 12.0])
    s, e = cut_region(3.0, 3.4, 1.5, 0.75, 0.05)  # shorter than the window: one window of its own length
    np.testing.assert_allclose(np.c_[s, e], [[3.0, 3.4]])
    s, e = cut_region(0.0, 0.04, 0.5, 0.25, 0.05)  # 40 ms: dropped
    assert len(s) == 0
    s, e = cut_region(0.0, 2.0, 0.5, 0.25, 0.05)  # exact fit: no float-noise extra window
    assert len(s) == 7 and e[-1] == pytest.approx(2.0)


def test_multiscale_windows_stay_inside_regions():
    regions = np.array([[0.0, 3.3], [4.0, 4.3], [5.0, 9.1]])
    scales = multiscale_windows(regions, WindowConfig())
    assert [s.window for s in scales] == [1.5, 1.25, 1.0, 0.75, 0.5]
    for sc in scales:
        assert np.all(sc.ends > sc.starts)
        inside = [(regions[:, 0] <= a + 1e-9) & (b <= regions[:, 1] + 1e-9) for a, b in zip(sc.starts, sc.ends)]
        assert all(m.any() for m in inside)
        assert np.all(sc.ends - sc.starts <= sc.window + 1e-9)
    base = scales[-1]
    assert len(base) > len(scales[0])


def test_oracle_regions_merge_overlaps_keep_touching_apart_and_respect_uem():
    ref = Annotation(uri="f")
    ref[Segment(0, 2)] = "A"
    ref[Segment(1.5, 3)] = "B"  # overlaps A -> merged
    ref[Segment(3, 4)] = "A"  # touches B -> separate region (a speaker-change boundary)
    ref[Segment(6, 8)] = "B"
    np.testing.assert_allclose(oracle_regions(ref), [[0, 3], [3, 4], [6, 8]])
    uem = Timeline([Segment(1, 7)])
    np.testing.assert_allclose(oracle_regions(ref, uem), [[1, 3], [3, 4], [6, 7]])


def test_energy_vad_finds_bursts_in_noise(rng):
    sr = 16000
    x = 0.003 * rng.standard_normal(10 * sr)
    truth = [(1.0, 2.5), (4.0, 4.8), (7.0, 9.0)]
    for s, e in truth:
        t = np.arange(int((e - s) * sr)) / sr
        x[int(s * sr) : int(s * sr) + len(t)] += (
            0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        )
    regions = energy_vad(x.astype(np.float32), EnergyVADConfig())
    assert len(regions) == 3
    for (s, e), (rs, re_) in zip(truth, regions):
        assert abs(rs - s) <= 0.15 and abs(re_ - e) <= 0.15


def test_energy_vad_on_silence_and_quiet_noise(rng):
    assert len(energy_vad(np.zeros(16000 * 3, dtype=np.float32), EnergyVADConfig())) == 0
    noise = (0.01 * rng.standard_normal(16000 * 3)).astype(np.float32)
    assert len(energy_vad(noise, EnergyVADConfig())) == 0


def test_energy_vad_on_real_recording_matches_reference():
    require_data()
    wav = DIAR / "pyannote_sample" / "sample.wav"
    ref = read_rttm(wav.with_suffix(".rttm"))["sample"]
    regions = energy_vad(load_audio(wav), EnergyVADConfig())
    speech = ref.get_timeline().support()
    hyp = Timeline([Segment(s, e) for s, e in regions]).support()
    missed = speech.duration() - speech.crop(hyp, mode="intersection").duration()
    false_alarm = hyp.duration() - hyp.crop(speech, mode="intersection").duration()
    assert (missed + false_alarm) / speech.duration() < 0.08
