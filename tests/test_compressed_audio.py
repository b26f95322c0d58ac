"""Compressed inputs (m4a/mp4/webm ...): decoded with PyAV when soundfile cannot read them, and a
message naming the extra to install when PyAV is missing."""

import sys

import numpy as np
import pytest
import soundfile as sf

from diarize.audio import load_audio
from diarize.cli import main
from diarize.errors import AudioError
from diarize.rttm import read_rttm

from conftest import DIAR, require_data

WAV = DIAR / "nemo_an4" / "an4_diarize_test.wav"


def _encode(wav, path, codec, rate):
    """Write `wav` into the container named by `path` with PyAV (the test builds its own input)."""
    av = pytest.importorskip("av")
    x, sr = sf.read(wav, dtype="float32")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(
    "name,codec,rate", [("a.m4a", "aac", 44100), ("a.webm", "libopus", 48000), ("a.mp4", "aac", 16000)]
)
def test_compressed_files_decode_to_the_same_audio(tmp_path, name, codec, rate):
    require_data()
    path = tmp_path / name
    _encode(WAV, path, codec, rate)
    with pytest.raises(Exception):
        sf.SoundFile(str(path))  # soundfile alone cannot read it: PyAV does the work
    ref, got = load_audio(WAV), load_audio(path)
    assert abs(len(got) - len(ref)) < 0.2 * 16000  # codec priming/padding only (AAC: up to 2 frames)
    # Lossy codecs shift the signal by their delay: compare envelopes after the best alignment.
    env = lambda x: np.sqrt(np.convolve(x**2, np.ones(320) / 320, mode="valid"))[::160]  # noqa: E731
    a, b = env(ref), env(got)
    n = min(len(a), len(b)) - 20
    best = max(np.corrcoef(a[:n], b[s : s + n])[0, 1] for s in range(0, 20))
    assert best > 0.95


def test_run_diarizes_an_m4a(tmp_path, monkeypatch, campplus):
    require_data()
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    m4a = tmp_path / "an4.m4a"
    _encode(WAV, m4a, "aac", 44100)
    assert main(["run", str(m4a), "--out", str(tmp_path / "an4.rttm"), "--quiet"]) == 0
    ann = read_rttm(tmp_path / "an4.rttm")["an4"]
    assert len(ann.labels()) >= 1 and ann.get_timeline().support().duration() > 2.0


def test_without_pyav_the_error_names_the_extra(tmp_path, monkeypatch):
    require_data()
    m4a = tmp_path / "a.m4a"
    _encode(WAV, m4a, "aac", 44100)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(AudioError, match=r"a\.m4a: not a readable audio file .*pip install 'diarize\[av\]'"):
        load_audio(m4a)


def test_junk_is_still_not_audio(tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError, match="junk.mp3: not a readable audio file"):
        load_audio(junk)
