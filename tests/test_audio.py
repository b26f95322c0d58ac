import platform
import subprocess
import sys
from math import gcd

import numpy as np
import pytest
import soundfile as sf

from diarize.audio import SAMPLE_RATE, AudioError, AudioSource, load_audio, read_blocks, to_mono_16k

from conftest import DIAR, require_data


def tone(sr: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "subtype,ext,fmt",
    [
        ("PCM_16", "wav", "WAV"),
        ("PCM_24", "wav", "WAV"),
        ("PCM_32", "wav", "WAV"),
        ("FLOAT", "wav", "WAV"),
        ("PCM_U8", "wav", "WAV"),
        ("PCM_16", "flac", "FLAC"),
        ("VORBIS", "ogg", "OGG"),
    ],
)
def test_formats_read_as_mono_float32_16k(tmp_path, subtype, ext, fmt):
    x = tone(16000)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, subtype=subtype, format=fmt)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x)) <= 1
    tol = 0.05 if subtype in ("VORBIS", "PCM_U8") else 1e-3
    assert np.abs(y[:1000] - x[:1000]).max() < tol


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_keeps_pitch(tmp_path, sr):
    path = tmp_path / "a.wav"
    sf.write(path, tone(sr, 2.0, 300.0), sr)
    y = load_audio(path)
    assert abs(len(y) - 2 * SAMPLE_RATE) <= 2
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(y) - 300.0) < 2.0


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 15999])
def test_resampling_is_scipys_bit_for_bit(sr, rng):
    """`_resample_poly` (short inputs, common rates: no scipy.signal import) gives exactly what
    scipy.signal.resample_poly gives on x86-64, at the edges and for inputs of a few samples too."""
    from scipy.signal import resample_poly as scipy_resample_poly

    from diarize.audio import _resample_poly

    g = gcd(sr, SAMPLE_RATE)
    for n in (0, 1, 2, 37, 1000, 2 * sr + 7):
        x = (0.3 * rng.standard_normal(n)).astype(np.float32)
        want = scipy_resample_poly(x, SAMPLE_RATE // g, sr // g)
        got = _resample_poly(x, SAMPLE_RATE // g, sr // g)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, (sr, n)
        if platform.machine().lower() in ("x86_64", "amd64"):
            assert np.array_equal(got, want), (sr, n)
        else:  # scipy's compiled loop may fuse multiply-adds there (FMA): rounding only
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_short_file_is_resampled_without_scipy_signal(tmp_path):
    """Importing scipy.signal costs ~0.9 s: a 44.1 kHz clip does not pay it (a fresh process: imports are
    process-wide); a rate like 44,101 Hz, whose ratio does not reduce, does."""
    for sr, imported in ((44100, False), (44101, True)):
        path = tmp_path / f"{sr}.wav"
        sf.write(path, tone(sr, 1.0), sr)
        code = (
            "import sys\n"
            "from diarize.audio import load_audio\n"
            f"print(len(load_audio({str(path)!r})), 'scipy.signal' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == [str(SAMPLE_RATE), str(imported)]


def test_stereo_is_mixed_down(tmp_path):
    x = tone(16000)
    sf.write(tmp_path / "s.wav", np.stack([x, -x * 0 + x], axis=1), 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), x, atol=1e-4)
    sf.write(tmp_path / "c.wav", np.stack([x, -x], axis=1), 16000)  # opposite phases cancel
    assert np.abs(load_audio(tmp_path / "c.wav")).max() < 1e-4


@pytest.mark.parametrize("sr", [16000, 44100])
def test_blocks_match_whole_file(tmp_path, sr, rng):
    x = (0.1 * rng.standard_normal(sr * 5)).astype(np.float32)
    sf.write(tmp_path / "n.wav", x, sr, subtype="FLOAT")
    whole = to_mono_16k(x, sr)
    blocks = list(read_blocks(tmp_path / "n.wav", block_seconds=1.3))
    assert len(blocks) > 3
    joined = np.concatenate(blocks)
    assert len(joined) == len(whole)
    assert np.abs(joined - whole).max() < 1e-3


def test_bad_inputs_raise_audio_error(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 50)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(tmp_path / "junk.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="0 seconds"):
        load_audio(tmp_path / "zero.wav")
    bad = tone(16000)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_real_file_duration():
    require_data()
    path = DIAR / "pyannote_sample" / "sample.wav"
    assert AudioSource.from_file(path).duration == pytest.approx(30.0, abs=0.01)
    assert len(load_audio(path)) == pytest.approx(30 * SAMPLE_RATE, abs=1)
