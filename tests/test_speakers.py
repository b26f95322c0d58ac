"""Known speakers: `diarize enroll` and `diarize run --speakers` (diarize.speakers)."""

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Segment

from diarize.cli import main
from diarize.rttm import read_rttm
from diarize.speakers import identify, load_db

from conftest import librispeech_utts, require_data


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    import diarize.models as models
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: campplus)


def test_identify_is_one_to_one_and_needs_the_threshold():
    e = np.eye(3, dtype=np.float32)
    centroids = {"speaker_0": e[0], "speaker_1": 0.9 * e[0] + 0.1 * e[1], "speaker_2": e[2]}
    assert identify(centroids, {"ann": e[0], "bob": e[1]}, threshold=0.5) == {"speaker_0": "ann"}
    assert identify(centroids, {"ann": e[0]}, threshold=1.01) == {}


def test_enrolled_people_are_named_and_strangers_keep_speaker_n(tmp_path, capsys):
    require_data()
    alice, bob, carol = librispeech_utts("1998"), librispeech_utts("3331"), librispeech_utts("367")
    db = tmp_path / "people.npz"
    assert main(["enroll", "alice", str(alice[0]), str(alice[2]), "--db", str(db), "--model", "campplus"]) == 0
    assert main(["enroll", "bob", str(bob[0]), str(bob[3]), "--db", str(db), "--model", "campplus"]) == 0
    people, model = load_db(db)
    assert sorted(people) == ["alice", "bob"] and model == "campplus"
    # A conversation from other utterances of alice and bob, and carol, who is not enrolled.
    parts, who, t = [], [], 0.0
    pause = np.zeros(8000, dtype=np.float32)
    for name, path in [("alice", alice[1]), ("bob", bob[2]), ("carol", carol[4]), ("alice", alice[3])]:
        x, sr = sf.read(path, dtype="float32")
        parts += [x, pause]
        who.append((name, Segment(t, t + len(x) / sr)))
        t += (len(x) + len(pause)) / sr
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.concatenate(parts), 16000)
    out = tmp_path / "talk.rttm"
    assert main(["run", str(wav), "--out", str(out), "--speakers", str(db), "--num-speakers", "3", "--quiet"]) == 0
    hyp = read_rttm(out)["talk"]
    others = set(hyp.labels()) - {"alice", "bob"}
    assert {"alice", "bob"} <= set(hyp.labels()) and all(lab.startswith("speaker_") for lab in others)
    for name, seg in who:
        said = hyp.crop(seg).chart()[0][0]  # the label with the most time in that utterance
        assert said == name if name != "carol" else said.startswith("speaker_")


def test_enroll_refuses_a_database_of_another_model(tmp_path, capsys):
    require_data()
    db = tmp_path / "db.npz"
    np.savez(db, __model__=np.array("titanet-large"), x=np.ones(192, dtype=np.float32))
    assert main(["enroll", "y", str(librispeech_utts("1998")[0]), "--db", str(db), "--model", "campplus"]) == 2
    assert "enrolled with titanet-large" in capsys.readouterr().err
