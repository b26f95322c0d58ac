"""Output formats (diarize.formats) and `diarize run --format/--exclusive/--labels`, including file ids
with whitespace (RTTM fields must not contain any)."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from diarize import formats
from diarize.align import parse_cues
from diarize.cli import main
from diarize.errors import FormatError
from diarize.rttm import parse_rttm, read_rttm, rttm_lines

from conftest import DIAR, require_data


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)


def _ann(*turns, uri="m"):
    ann = Annotation(uri=uri)
    for a, b, lab in turns:
        ann[Segment(a, b), len(ann)] = lab
    return ann


def test_json_round_trips_and_reports_speech_and_overlap():
    ann = _ann((0, 5, "A"), (3, 4, "B"), (6, 9, "B"))
    cents = {"A": np.ones(4, np.float32) / 2, "B": np.array([1, 0, 0, 0], np.float32)}
    doc = json.loads(formats.render("json", ann, duration=10.0, centroids=cents))
    assert doc["uri"] == "m" and doc["duration"] == 10.0
    assert {s["label"]: s["speech"] for s in doc["speakers"]} == {"A": 5.0, "B": 4.0}
    assert doc["speakers"][0]["centroid"] == [0.5] * 4
    assert doc["overlap"] == [{"start": 3.0, "end": 4.0, "speakers": ["A", "B"]}]
    back, _ = formats.from_json(doc)
    assert back == ann


def test_exclusive_keeps_one_speaker_at_a_time():
    ann = _ann((0, 5, "A"), (3, 4, "B"), (4.5, 8, "B"))
    ex = formats.exclusive(ann)
    assert formats.overlap_regions(ex) == []
    assert formats.turns(ex) == [(0.0, 5.0, "A"), (5.0, 8.0, "B")]
    assert ex.get_timeline().support() == ann.get_timeline().support()


def test_srt_vtt_csv_carry_every_turn():
    ann = _ann((0, 1.5, "A"), (61.25, 62, "B"))
    for fmt in ("srt", "vtt"):
        cues = parse_cues(formats.render(fmt, ann))["segments"]
        assert [(c["start"], c["end"], c["text"]) for c in cues] == formats.turns(ann)
    rows = list(csv.DictReader(io.StringIO(formats.render("csv", ann))))
    assert [(float(r["start"]), float(r["end"]), r["speaker"]) for r in rows] == formats.turns(ann)


def test_whitespace_never_reaches_an_rttm_line():
    ann = _ann((0, 1, "speaker 0"), uri="my meeting")
    (line,) = rttm_lines(ann)
    assert len(line.split()) == 10 and line.split()[1] == "my_meeting" and line.split()[7] == "speaker_0"
    assert list(parse_rttm([line])) == ["my_meeting"]
    with pytest.raises(FormatError, match="x.rttm:1: .* with spaces"):
        parse_rttm(["SPEAKER my meeting 1 0.0 1.0 <NA> <NA> A <NA> <NA>"], "x.rttm")


def test_unknown_format_is_named():
    with pytest.raises(FormatError, match="'docx'"):
        formats.parse_formats("rttm,docx")


def test_run_writes_every_format_for_a_file_name_with_spaces(tmp_path, capsys):
    require_data()
    wav = tmp_path / "my meeting.wav"
    shutil.copy(DIAR / "nemo_an4" / "an4_diarize_test.wav", wav)
    out = tmp_path / "out" / "my meeting.json"
    out.parent.mkdir()
    assert (
        main(
            [
                "run",
                str(wav),
                "--out",
                str(out),
                "--format",
                "rttm,json,srt,vtt,csv",
                "--labels",
                "pyannote",
                "--exclusive",
                "--centroids",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "file id 'my_meeting'" in err
    hyp = read_rttm(out.with_suffix(".rttm"))
    assert list(hyp) == ["my_meeting"]
    labels = sorted(hyp["my_meeting"].labels())
    assert labels and all(lab.startswith("SPEAKER_") and len(lab) == 10 for lab in labels)
    doc = json.loads(out.read_text())  # --out's own extension names the JSON file
    assert doc["uri"] == "my_meeting" and doc["overlap"] == []  # --exclusive
    assert sorted(s["label"] for s in doc["speakers"]) == labels
    assert all(len(s["centroid"]) == 192 and abs(np.linalg.norm(s["centroid"]) - 1) < 1e-3 for s in doc["speakers"])
    ann, _ = formats.read_json(out)
    assert len(ann) == len(hyp["my_meeting"])
    for (a, b, x), (c, d, y) in zip(formats.turns(ann), formats.turns(hyp["my_meeting"])):
        assert (x, a, b) == (y, pytest.approx(c, abs=1e-3), pytest.approx(d, abs=1e-3))
    for fmt in ("srt", "vtt", "csv"):
        assert out.with_suffix(f".{fmt}").stat().st_size > 0


def test_directory_output_uses_the_format_extension(tmp_path):
    require_data()
    wav = DIAR / "nemo_an4" / "an4_diarize_test.wav"
    out = tmp_path / "outdir"
    assert main(["run", str(wav), "--out", str(out), "--format", "vtt", "--quiet"]) == 0
    assert (out / "an4_diarize_test.vtt").read_text().startswith("WEBVTT")


def test_subtitles_transcripts_and_exclusive_take_the_pipelines_one_speaker_view(tmp_path, monkeypatch):
    """The overlap 4-5 s goes to B in the pipeline's exclusive view (the speaker clustering heard there),
    not to A, whose turn is longer (the rule `formats.exclusive` falls back on)."""
    require_data()
    from diarize.pipeline import DiarizationResult, Diarizer

    both = _ann((0, 5, "speaker_0"), (4, 6, "speaker_1"), uri="an4_diarize_test")
    alone = _ann((0, 4, "speaker_0"), (4, 6, "speaker_1"), uri="an4_diarize_test")
    res = DiarizationResult(both, np.array([[0.0, 6.0]]), 2, 6.0, exclusive_annotation=alone)
    monkeypatch.setattr(Diarizer, "run", lambda self, *a, **k: res)
    wav = DIAR / "nemo_an4" / "an4_diarize_test.wav"
    words = {"segments": [], "words": [{"word": "hm", "start": 4.2, "end": 4.6}]}
    (tmp_path / "asr.json").write_text(json.dumps(words))
    out = tmp_path / "x.rttm"
    argv = ["run", str(wav), "--out", str(out), "--format", "rttm,srt,vtt", "--quiet"]
    assert main([*argv, "--transcript", str(tmp_path / "asr.json")]) == 0
    assert formats.turns(read_rttm(out)["an4_diarize_test"]) == formats.turns(both)  # the RTTM keeps the overlap
    for fmt in ("srt", "vtt"):
        cues = parse_cues(out.with_suffix(f".{fmt}").read_text())["segments"]
        assert [(c["start"], c["end"], c["text"]) for c in cues] == formats.turns(alone), fmt
    assert json.loads((tmp_path / "x.speakers.json").read_text())["words"][0]["speaker"] == "speaker_1"
    assert main([*argv, "--exclusive"]) == 0
    assert formats.turns(read_rttm(out)["an4_diarize_test"]) == formats.turns(alone)
