"""One test per row of README's bad-input table: `diarize run` on each kind of input."""

import os

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from diarize.cli import main
from diarize.manifest import read_manifest
from diarize.rttm import FormatError, read_rttm

SR = 16000


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)


def speechlike(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Two alternating harmonic 'voices' with syllable-rate modulation and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = np.where((t // 2.0) % 2 == 0, 120.0, 230.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    x *= (t % 2.0) < 1.6  # 0.4 s pause every 2 s, so there is a noise floor to find
    return (0.2 * x + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def run(tmp_path, audio_path, *extra):
    out = tmp_path / "out.rttm"
    rc = main(["run", str(audio_path), "--out", str(out), "--quiet", *extra])
    return rc, out


def assert_error(rc, out, capsys, text):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and text in err[0], err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.rttm")]  # no temp file left


def test_truncated_wav(tmp_path, capsys):
    path = tmp_path / "cut.wav"
    sf.write(path, speechlike(3.0), SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:30])  # header cut inside the fmt chunk
    assert_error(*run(tmp_path, path), capsys, "not a readable audio file")


def test_wav_with_missing_samples_still_reads(tmp_path, capsys):
    """A WAV whose data chunk is shorter than its header says: soundfile reads what is there."""
    path = tmp_path / "short_data.wav"
    sf.write(path, speechlike(4.0), SR, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * SR * 3])
    rc, out = run(tmp_path, path)
    assert rc == 0 and out.exists()


def test_shorter_than_shortest_window(tmp_path, capsys):
    path = tmp_path / "blip.wav"
    sf.write(path, speechlike(0.04), SR)
    rc, out = run(tmp_path, path)
    assert rc == 0 and out.read_text() == ""


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf_samples(tmp_path, capsys, value):
    x = speechlike(2.0)
    x[500] = value
    path = tmp_path / "bad.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    assert_error(*run(tmp_path, path), capsys, "NaN or infinite")


@pytest.mark.parametrize(
    "sr,channels,subtype",
    [
        (8000, 1, "PCM_16"),
        (44100, 1, "PCM_16"),
        (16000, 2, "PCM_16"),
        (16000, 6, "PCM_16"),
        (16000, 1, "PCM_24"),
        (48000, 2, "FLOAT"),
    ],
)
def test_rates_channels_and_depths_are_accepted(tmp_path, sr, channels, subtype):
    x = speechlike(8.0, sr)
    path = tmp_path / "in.wav"
    sf.write(path, np.repeat(x[:, None], channels, axis=1), sr, subtype=subtype)
    rc, out = run(tmp_path, path)
    assert rc == 0
    turns = read_rttm(out)["in"]
    assert turns.get_timeline().duration() > 4.0


@pytest.mark.xfail(
    strict=True,
    reason="known weakness of the region-level default: gain moves one VAD frame and 4.7 % of the labels "
    "(exact embeddings: 0.3 %); see benchmarks/RESULTS.md, 'Known weaknesses'",
)
def test_huge_sample_values(tmp_path):
    """Float WAV far outside [-1, 1]: features are mean-normalised and the VAD is relative to the
    file's own levels, so a real recording scaled by 1e4 diarizes like the original."""
    from conftest import DIAR, require_data
    from pyannote.metrics.diarization import DiarizationErrorRate

    require_data()
    x, sr = sf.read(DIAR / "pyannote_sample" / "sample.wav", dtype="float32")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, x, sr, subtype="FLOAT")
    sf.write(b, x * 1e4, sr, subtype="FLOAT")
    assert main(["run", str(a), "--out", str(tmp_path / "a.rttm"), "--quiet"]) == 0
    assert main(["run", str(b), "--out", str(tmp_path / "b.rttm"), "--quiet"]) == 0
    ra, rb = read_rttm(tmp_path / "a.rttm")["a"], read_rttm(tmp_path / "b.rttm")["b"]
    assert len(ra.labels()) == len(rb.labels()) == 2
    rb.uri = ra.uri
    assert DiarizationErrorRate()(ra, rb) < 0.02


def test_malformed_uem(tmp_path, capsys):
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(2.0), SR)
    uem = tmp_path / "u.uem"
    uem.write_text("in 1 0.0 1.0\nin 1 zero 2.0\n")
    assert_error(*run(tmp_path, path, "--uem", str(uem)), capsys, "u.uem:2")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_as_user(tmp_path, capsys):
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(2.0), SR)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(["run", str(path), "--out", str(ro / "x.rttm"), "--quiet"])
    finally:
        ro.chmod(0o700)
    assert rc == 2 and not (ro / "x.rttm").exists()


def test_output_path_is_a_directory_or_in_a_file(tmp_path, capsys):
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(2.0), SR)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["run", str(path), "--out", str(blocker / "x.rttm"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err
    (tmp_path / "d.rttm").mkdir()  # a directory named like an RTTM file
    rc = main(["run", str(path), "--out", str(tmp_path / "d.rttm"), "--quiet"])
    assert rc == 2 and "diarize: error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- manifest fuzzing
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=5))
def test_manifest_parser_only_raises_format_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("m") / "m.json"
    path.write_text("\n".join(lines))
    try:
        entries = read_manifest(path)
    except FormatError as e:
        assert str(path) in str(e)
    else:
        assert all(e.audio.name for e in entries)
