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

from conftest import DIAR, require_data

AUDIO = DIAR / "pyannote_sample" / "sample.wav"


@pytest.fixture(scope="module")
def output(campplus):
    require_data()
    pipeline = Diarizer.from_config("fast", model=campplus)  # the fast preset: this test is about shapes
    return pipeline(str(AUDIO))


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
