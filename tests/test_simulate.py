"""benchmarks/simulate.py: seeded conversations whose RTTM matches the audio exactly."""
from __future__ import annotations

import sys

import numpy as np
import soundfile as sf

from conftest import REPO, SPEAKERS, require_data

sys.path.insert(0, str(REPO / "benchmarks"))
import simulate  # noqa: E402

from diarize.rttm import read_rttm  # noqa: E402

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
        assert 10 * np.log10(np.mean(a[i: j] ** 2)) > -50


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
