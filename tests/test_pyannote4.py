"""Acceptance: the Python API as a pyannote.audio 4 user writes it (issue 36).

pyannote.audio 4:

    pipeline = Pipeline.from_pretrained("pyannote/speaker-diarization-community-1")
    with ProgressHook() as hook:
        output = pipeline("audio.wav", hook=hook)
    for turn, speaker in output.speaker_diarization: ...
    output.exclusive_speaker_diarization; output.speaker_embeddings

The same lines, with `Diarizer` for `Pipeline`, run here on a shared recording with overlapped speech.
"""

import numpy as np
import pytest
from pyannote.core import Annotation

from diarize import Diarizer
from diarize.formats import overlap_regions
from diarize.pipeline import StageHook

from conftest import DIAR, require_data

AUDIO = DIAR / "pyannote_sample" / "sample.wav"


class ProgressHook:
    """A hook written to pyannote.audio's signature (pyannote.audio.pipelines.utils.hook.ProgressHook)."""

    def __init__(self):
        self.calls = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, step_name, step_artifact, file=None, total=None, completed=None):
        if completed is None:
            completed = total = 1
        self.calls.append((step_name, step_artifact, file, total, completed))


@pytest.fixture(scope="module")
def run(campplus):
    require_data()
    pipeline = Diarizer.from_config("fast", model=campplus)  # the fast preset: this test is about shapes
    with ProgressHook() as hook:
        output = pipeline(str(AUDIO), hook=hook)
    return output, hook


@pytest.fixture(scope="module")
def output(run):
    return run[0]


def test_output_has_pyannote4_fields(output):
    diarization = output.speaker_diarization
    assert isinstance(diarization, Annotation) and isinstance(output.exclusive_speaker_diarization, Annotation)
    turns = [(turn.start, turn.end, speaker) for turn, speaker in diarization]
    assert len(turns) == len(list(diarization.itertracks(yield_label=True))) > 4
    assert all(0 <= a < b <= 30.0 for a, b, _ in turns)
    assert sorted({s for _, _, s in turns}) == diarization.labels()
    # speaker_embeddings[s] is the embedding of speaker_diarization.labels()[s]
    emb = output.speaker_embeddings
    assert emb.shape == (len(diarization.labels()), 192)
    for s, label in enumerate(diarization.labels()):
        np.testing.assert_allclose(emb[s], output.centroids[label])


def test_exclusive_view_is_one_speaker_at_a_time_over_the_same_speech(output):
    diarization, exclusive = output.speaker_diarization, output.exclusive_speaker_diarization
    assert overlap_regions(diarization), "this recording should show overlapped speech"
    assert overlap_regions(exclusive) == []
    assert exclusive.get_timeline().support() == diarization.get_timeline().support()
    # In each overlap, the exclusive speaker is one of the two heard there, frame by frame.
    for a, b, speakers in overlap_regions(diarization):
        for t in np.arange(a, b, 0.05):
            here = [lab for seg, _, lab in exclusive.itertracks(yield_label=True) if seg.start <= t < seg.end]
            assert len(here) == 1 and here[0] in speakers


def test_pyannote3_style_code_still_reads_the_output(output):
    """pyannote 3 returned the Annotation itself: its methods work on the output unchanged."""
    assert output.labels() == output.speaker_diarization.labels()
    assert list(output.itertracks(yield_label=True)) == list(output.speaker_diarization.itertracks(yield_label=True))
    assert output.get_timeline() == output.speaker_diarization.get_timeline()
    assert output.uri == "sample" and len(output) == len(output.speaker_diarization)


def test_a_pyannote_progress_hook_sees_each_step_and_its_artifact(run):
    output, hook = run
    steps = list(dict.fromkeys(name for name, *_ in hook.calls))
    assert steps == ["vad", "embeddings", "clustering"]
    assert all(file == {"uri": "sample"} for _, _, file, _, _ in hook.calls)
    for step in steps:
        calls = [(artifact, total, completed) for name, artifact, _, total, completed in hook.calls if name == step]
        assert all(0 <= c <= t for _, t, c in calls) and calls[-1][2] == calls[-1][1]
        artifacts = [a for a, _, _ in calls if a is not None]
        assert len(artifacts) == 1, step  # progress comes without one, the finished step with it
    (speech,) = [a for name, a, *_ in hook.calls if name == "vad" and a is not None]
    (embeddings,) = [a for name, a, *_ in hook.calls if name == "embeddings" and a is not None]
    (labels,) = [a for name, a, *_ in hook.calls if name == "clustering" and a is not None]
    np.testing.assert_array_equal(speech, output.regions)
    assert len(embeddings) == 5 and embeddings[-1].shape[1] == 192  # one array per scale, finest last
    assert labels.shape == (len(embeddings[-1]),) and len(set(labels.tolist())) == output.num_speakers


def test_hook_shape_is_told_by_its_signature():
    calls = []

    def ours(stage, completed, total):
        calls.append(("ours", stage, completed, total))

    def theirs(step_name, step_artifact, file=None, total=None, completed=None):
        calls.append(("pyannote", step_name, step_artifact, file, total, completed))

    for hook in (ours, lambda *a: calls.append(("ours", *a)), theirs, lambda *a, **k: calls.append(("pyannote",))):
        steps = StageHook(hook, {"uri": "x"})
        steps.progress("vad", 1, 2)
        steps.finished("vad", "regions")
    assert calls == [
        ("ours", "vad", 1, 2),
        ("ours", "vad", 1, 2),
        ("pyannote", "vad", None, {"uri": "x"}, 2, 1),
        ("pyannote", "vad", "regions", {"uri": "x"}, None, None),
        ("pyannote",),
        ("pyannote",),
    ]
