"""benchmarks/accuracy/simulate.py: seeded conversations whose RTTM matches the audio exactly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from benchmarks.accuracy import simulate, splits
from conftest import SPEAKERS, require_data
from diarize.rttm import read_rttm

ROOT = SPEAKERS / "librispeech_test-other"


def test_conversation_matches_its_rttm_and_is_seeded(tmp_path):
    require_data()
    pool = simulate.load_pool(simulate.find_speakers([ROOT]))
    cfg = simulate.SimConfig(overlap_rate=0.5)
    rttm = simulate.write_conversation(tmp_path / "a.wav", pool, 40.0, seed=3, cfg=cfg)
    simulate.write_conversation(tmp_path / "b.wav", pool, 40.0, seed=3, cfg=cfg)
    simulate.write_conversation(tmp_path / "c.wav", pool, 40.0, seed=4, cfg=cfg)
    a, sr = sf.read(tmp_path / "a.wav")
    assert sr == 16000 and len(a) >= 40 * sr
    assert np.array_equal(a, sf.read(tmp_path / "b.wav")[0])
    assert rttm.read_text().replace("a 1", "b 1") == (tmp_path / "b.rttm").read_text()
    assert not np.array_equal(a[: 16000 * 20], sf.read(tmp_path / "c.wav")[0][: 16000 * 20])

    ref = read_rttm(rttm)["a"]
    assert sorted(ref.labels()) == sorted(pool)  # all three speakers talk
    speech = ref.get_timeline().support()
    assert ref.get_overlap().duration() > 0.5  # overlap_rate 0.5 gives overlapping turns
    # Inside every turn the level is speech-like; outside all turns only the -65 dBFS floor remains.
    frame = 160
    e = 10 * np.log10((a[: len(a) // frame * frame].reshape(-1, frame) ** 2).mean(1) + 1e-12)
    t = (np.arange(len(e)) + 0.5) * frame / sr
    inside, near = np.zeros(len(e), bool), np.zeros(len(e), bool)
    for seg in speech:
        inside |= (t > seg.start) & (t < seg.end)
        near |= (t > seg.start - 0.01) & (t < seg.end + 0.01)  # frames straddling a boundary
    assert e[~near].max() < -55
    assert np.median(e[inside]) > -45
    # Every turn's first and last 10 ms carry speech energy (pieces are trimmed to their speech).
    for seg, _, _ in ref.itertracks(yield_label=True):
        i, j = int(seg.start * sr), int(seg.end * sr)
        assert 10 * np.log10(np.mean(a[i:j] ** 2)) > -50


def test_make_set_cycles_speaker_counts_and_reuses(tmp_path):
    require_data()
    convs = simulate.make_set(tmp_path, count=3, speakers=(2, 4), minutes=(0.2, 0.3), seed=1)
    assert [c.num_speakers for c in convs] == [2, 3, 4]
    for c in convs:
        ref = read_rttm(c.rttm)[c.uri]
        assert len(ref.labels()) == c.num_speakers
        assert 12 <= sf.info(c.wav).duration <= 30
    stamp = convs[0].wav.stat().st_mtime_ns
    again = simulate.make_set(tmp_path, count=3, speakers=(2, 4), minutes=(0.2, 0.3), seed=1)
    assert again == convs and convs[0].wav.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_bad_root_is_a_clear_error(tmp_path, capsys):
    assert simulate.main([str(tmp_path / "out"), "--root", str(tmp_path / "nope")]) == 2
    assert "speaker root not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- held-out sets (issue 12)


def test_speaker_split_is_the_documented_rule_and_disjoint():
    require_data()
    dev, test = set(splits.DEV_SPEAKERS), set(splits.TEST_SPEAKERS)
    assert not dev & test and len(dev) == len(splits.DEV_SPEAKERS) and len(test) == len(splits.TEST_SPEAKERS)
    genders = splits.read_genders()
    assert {s for _, s in genders} == dev | test  # every LibriSpeech speaker is on exactly one side
    assert splits.split_rule(genders) == {"dev": list(splits.DEV_SPEAKERS), "test": list(splits.TEST_SPEAKERS)}
    by_id = {s: g for (_, s), g in genders.items()}
    for side in (dev, test):
        f = sum(by_id[s] == "F" for s in side)
        assert abs(f - (len(side) - f)) <= 1  # gender-balanced
    assert set(splits.speaker_files("test")) == test


def _speech_mask(ref, n):
    m = np.zeros(n, bool)
    for seg in ref.get_timeline().support():
        m[int(seg.start * 16000) : int(seg.end * 16000)] = True
    return m


def test_render_is_seeded_and_adds_noise_at_the_asked_snr(tmp_path):
    require_data()
    pool = simulate.load_pool(simulate.find_speakers([ROOT]))
    cohort = simulate.load_pool(
        {k: v[:2] for k, v in splits.speaker_files("dev").items() if k in ("27", "32", "226", "233", "426")}
    )
    cfg = simulate.SimConfig(overlap_rate=0.5)
    for snr, noise in ((10.0, "babble"), (5.0, "pink")):
        ac = simulate.Acoustics(snr_db=snr, noise=noise)
        simulate.render_conversation(tmp_path / "a.wav", pool, 20.0, 5, cfg, ac, cohort)
        simulate.render_conversation(tmp_path / "b.wav", pool, 20.0, 5, cfg, ac, cohort)
        a = sf.read(tmp_path / "a.wav")[0]
        assert np.array_equal(a, sf.read(tmp_path / "b.wav")[0])
        ref = read_rttm(tmp_path / "a.rttm")["a"]
        assert sorted(ref.labels()) == sorted(pool) and ref.get_overlap().duration() > 0
        m = _speech_mask(ref, len(a))
        p_speech, p_noise = np.mean(a[m] ** 2), np.mean(a[~m] ** 2)
        # Speech regions hold speech + noise: their power over the noise's is 1 + 10^(snr/10).
        assert 10 * np.log10(p_speech / p_noise - 1) == pytest.approx(snr, abs=1.5)
    # Without noise the same seed gives the same turns (the RTTM does not depend on the acoustics).
    rttm_noisy = (tmp_path / "a.rttm").read_text()
    simulate.render_conversation(tmp_path / "a.wav", pool, 20.0, 5, cfg)
    assert (tmp_path / "a.rttm").read_text() == rttm_noisy


def test_render_telephone_band_and_reverb(tmp_path):
    require_data()
    pytest.importorskip("pyroomacoustics")  # the `bench` extra (also in `test`)
    pool = simulate.load_pool(simulate.find_speakers([ROOT]))
    simulate.render_conversation(tmp_path / "dry.wav", pool, 15.0, 2)
    simulate.render_conversation(tmp_path / "tel.wav", pool, 15.0, 2, acoustics=simulate.Acoustics(telephone=True))
    simulate.render_conversation(tmp_path / "rev.wav", pool, 15.0, 2, acoustics=simulate.Acoustics(rt60_s=(0.5, 0.6)))
    dry, tel, rev = (sf.read(tmp_path / f"{n}.wav")[0] for n in ("dry", "tel", "rev"))

    def band_share(x, lo, hi):
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        return p[(f >= lo) & (f < hi)].sum() / p.sum()

    assert band_share(dry, 3700, 8000) > 0.005 and band_share(tel, 3700, 8000) < 1e-4
    assert band_share(tel, 300, 3400) > 0.97
    # Reverberation fills the pauses: energy outside the turns rises far above the dry -65 dBFS floor.
    ref = read_rttm(tmp_path / "rev.rttm")["rev"]
    m = _speech_mask(ref, len(rev))
    assert 10 * np.log10(np.mean(rev[~m] ** 2)) > 10 * np.log10(np.mean(dry[~m] ** 2)) + 20


def test_minor_speakers_say_little(tmp_path):
    require_data()
    files = splits.speaker_files("dev")
    pool = simulate.load_pool({k: files[k] for k in sorted(files)[:6]})
    cfg = simulate.SimConfig(minor_speakers=2)
    simulate.render_conversation(tmp_path / "m.wav", pool, 150.0, 3, cfg)
    ref = read_rttm(tmp_path / "m.rttm")["m"]
    turns = {}
    for seg, _, spk in ref.itertracks(yield_label=True):
        turns.setdefault(spk, []).append(seg.duration)
    assert len(turns) == 6
    few = sorted(turns.values(), key=len)[:2]
    assert sorted(len(t) for t in few) == [1, 2] and max(max(t) for t in few) <= 2.0
    assert min(len(t) for t in sorted(turns.values(), key=len)[2:]) >= 3
