"""The drop-in Python API: Diarizer is callable, takes paths, arrays, tensors and pyannote's audio dict,
reports progress through `hook(stage, completed, total)`, and stops when the hook raises."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from pyannote.core import Annotation

from diarize import DiarizeError, Diarizer
from diarize.models.base import resolve_device
from diarize.pipeline import STAGES

from conftest import DIAR, require_data

WAV = DIAR / "nemo_an4" / "an4_diarize_test.wav"


@pytest.fixture(scope="module")
def diarizer(campplus):
    return Diarizer.from_config("general", model=campplus)


@pytest.fixture(scope="module")
def reference(diarizer):
    require_data()
    return diarizer.run(WAV)


def test_diarize_returns_an_annotation_with_centroids_in_run(diarizer, reference):
    ann = diarizer.diarize(WAV, num_speakers=2)  # a call returns the whole result (tests/test_pyannote4.py)
    assert isinstance(ann, Annotation) and len(ann.labels()) == 2
    assert set(reference.centroids) == set(reference.annotation.labels())
    for c in reference.centroids.values():
        assert c.shape == (192,) and abs(np.linalg.norm(c) - 1) < 1e-5


def test_channels_first_tensor_and_pyannote_dict_match_the_file(diarizer, reference):
    x, sr = sf.read(WAV, dtype="float32")
    stereo = torch.from_numpy(np.stack([x, x]))  # (C, T), as pyannote and whisperX pass it
    for audio in ({"waveform": stereo, "sample_rate": sr}, stereo[:1], x[None, :]):
        res = diarizer.run(audio, sample_rate=sr, uri="an4_diarize_test")
        assert res.duration == pytest.approx(reference.duration)
        assert res.annotation.get_timeline().support() == reference.annotation.get_timeline().support()


def test_hook_sees_each_stage_in_order_and_ends_complete(diarizer):
    require_data()
    calls = []
    diarizer.run(WAV, hook=lambda stage, done, total: calls.append((stage, done, total)))
    stages = list(dict.fromkeys(s for s, _, _ in calls))
    assert stages == [s for s in STAGES if s in stages] and {"vad", "embeddings", "clustering"} <= set(stages)
    for stage in stages:
        seen = [(d, t) for s, d, t in calls if s == stage]
        assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1]
        assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_raising_from_the_hook_cancels(diarizer):
    require_data()

    class Cancelled(Exception):
        pass

    stages = []

    def hook(stage, done, total):
        stages.append(stage)
        if stage == "embeddings" and done > 0:
            raise Cancelled

    with pytest.raises(Cancelled):
        diarizer.run(WAV, hook=hook)
    assert "clustering" not in stages


def test_to_device_and_auto_device(diarizer):
    assert diarizer.to("cpu") is diarizer and diarizer.config.embedding.device == "cpu"
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert str(resolve_device("auto")).startswith(want)


def test_limit_threads_caps_torch_and_blas():
    """`--threads N` caps both pools (in a fresh process: the limit is process-wide)."""
    code = (
        "import scipy.linalg, threadpoolctl, torch\n"
        "from diarize.models.base import limit_threads\n"
        "limit_threads(1)\n"
        "blas = [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
        "print(torch.get_num_threads(), max(blas))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    )
    assert out.stdout.split() == ["1", "1"]


def test_diarizer_threads_caps_each_run_and_restores_the_pools():
    """`Diarizer(threads=N)` is `--threads N` from Python, for the run only."""
    require_data()
    import threadpoolctl

    from diarize import load_config

    from conftest import ToyEmbedder

    def blas() -> int:
        return max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")

    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = load_config("general", ["vad.method=energy", "embedding.mode=exact"])  # the toy has no frames
        d = Diarizer(cfg, model=ToyEmbedder(), threads=1)
        d.run(WAV, hook=lambda stage, done, total: seen.append((torch.get_num_threads(), blas())))
        assert seen and set(seen) == {(1, 1)}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(DiarizeError, match="threads"):
        Diarizer(model=ToyEmbedder(), threads=0)
