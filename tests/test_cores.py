"""Cores shared by diarize processes side by side (diarize.cores), and the CLI's use of it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest
import torch

from diarize import cores
from diarize.cli import main
from diarize.cores import CoreShare, start_time

from conftest import DIAR, require_data

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no registry on Windows")


@pytest.fixture
def four_threads(monkeypatch):
    """torch at 4 threads for the test (the share divides what a process uses alone), restored after.

    The share sets torch's threads only: BLAS left at 4 threads would oversubscribe the later tests."""
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    monkeypatch.setattr(cores, "limit_threads", torch.set_num_threads)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def peer():
    """Another live process, as a diarize process side by side would be."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait()


def register(folder, pid: int, started: str | None = None) -> None:
    (folder / str(pid)).write_text(start_time(pid) if started is None else started)


def test_share_follows_the_processes_alive(tmp_path, monkeypatch, four_threads, peer):
    monkeypatch.setattr(cores, "CHECK_EVERY_S", 60.0)  # no unforced look during the test, however slow the machine
    with CoreShare(tmp_path) as share:
        assert (tmp_path / str(os.getpid())).exists()
        assert share.threads == 4 and torch.get_num_threads() == 4  # alone: unchanged
        register(tmp_path, peer.pid)
        assert share.update() == 4  # read at most every CHECK_EVERY_S
        assert share.update(force=True) == 2 and torch.get_num_threads() == 2
        peer.kill()
        peer.wait()
        assert share.update(force=True) == 4 and torch.get_num_threads() == 4
        assert not (tmp_path / str(peer.pid)).exists()  # the dead process's entry is removed
    assert not (tmp_path / str(os.getpid())).exists()


def test_share_never_drops_below_one_thread_and_is_restored_on_exit(tmp_path, four_threads):
    peers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(5)]
    try:
        for p in peers:
            register(tmp_path, p.pid)
        with CoreShare(tmp_path) as share:
            assert share.threads == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 4
    finally:
        for p in peers:
            p.kill()
            p.wait()


def test_dead_and_reused_pids_do_not_count(tmp_path, four_threads, peer):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    register(tmp_path, dead.pid)
    if start_time(peer.pid):  # Linux: a live pid registered with another start time was another process
        register(tmp_path, peer.pid, started="1")
    (tmp_path / "notes.txt").write_text("not an entry")
    with CoreShare(tmp_path) as share:
        assert share.processes() == 1 and share.threads == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_registry_refuses_a_link_in_the_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / f"diarize-{os.getuid()}").symlink_to(target)
    assert cores.registry() is None
    with CoreShare() as share:  # no registry: the share does nothing
        assert share.update(force=True) == share.alone and not list(target.iterdir())


def test_cli_run_takes_its_share_beside_another_diarize(tmp_path, monkeypatch, four_threads, peer, campplus):
    require_data()
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []
    monkeypatch.setattr(cores, "limit_threads", lambda n: calls.append(n) or torch.set_num_threads(n))
    folder = cores.registry()
    register(folder, peer.pid)
    out = tmp_path / "sample.rttm"
    wav = DIAR / "pyannote_sample" / "sample.wav"
    assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert calls == [2, 4]  # its share while the other runs, its own threads back at the end
    assert out.exists() and sorted(p.name for p in folder.iterdir()) == [str(peer.pid)]
    calls.clear()
    import diarize.cli.run as run

    asked = []
    monkeypatch.setattr(run, "limit_threads", lambda n: asked.append(n) or torch.set_num_threads(n))
    assert main(["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet", "--threads", "3"]) == 0
    assert asked == [3] and calls == []  # --threads is the user's choice: no share
