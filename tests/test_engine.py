"""Batch engines: the Ray engine gives the same RTTM as the local one."""

import json

import pytest

from diarize.cli import main

from conftest import DIAR, require_data


def test_ray_engine_matches_local(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    require_data()
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    files = [DIAR / "nemo_an4" / "an4_diarize_test.wav", DIAR / "pyaudioanalysis" / "diarizationExample2.wav"]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk" * 100)
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(f)}) + "\n" for f in files))
    assert (
        main(["run", "--manifest", str(manifest), "--out", str(tmp_path / "local"), "--model", "campplus", "--quiet"])
        == 0
    )
    import ray

    try:
        rc = main(
            [
                "run",
                "--manifest",
                str(manifest),
                str(bad),
                "--out",
                str(tmp_path / "ray"),
                "--engine",
                "ray",
                "--workers",
                "2",
                "--model",
                "campplus",
                "--quiet",
            ]
        )
    finally:
        ray.shutdown()
    assert rc == 1  # the bad file fails, the others are written
    for f in files:
        assert (tmp_path / "ray" / f"{f.stem}.rttm").read_text() == (tmp_path / "local" / f"{f.stem}.rttm").read_text()
    assert "fail\t" in (tmp_path / "ray" / "diarize_run.log").read_text()


def test_killed_batch_resumes_without_losing_or_redoing_files(tmp_path):
    """Kill a batch run after its first RTTM appears; the rerun skips finished files and completes the rest."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    require_data()
    src = DIAR / "pyaudioanalysis" / "diarizationExample2.wav"
    inputs = []
    for i in range(6):
        p = tmp_path / f"rec{i}.wav"
        shutil.copy(src, p)
        inputs.append(str(p))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "diarize", "run", *inputs, "--out", str(out), "--model", "campplus", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("*.rttm")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(out.glob("*.rttm"))
    assert 1 <= len(finished) < 6, "the run must be killed midway"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file became visible as output
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    contents = {p.name: p.read_text() for p in finished}
    rc = subprocess.run(cmd, capture_output=True, text=True).returncode
    assert rc == 0
    assert len(list(out.glob("*.rttm"))) == 6
    for name, stamp in stamps.items():  # finished files were skipped, not redone
        assert (out / name).stat().st_mtime_ns == stamp and (out / name).read_text() == contents[name]
    assert "skip\t" in (out / "diarize_run.log").read_text()
