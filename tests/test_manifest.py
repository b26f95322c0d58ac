"""NeMo manifest fields per line (diarize.manifest) in `diarize run --manifest` and `diarize embed --manifest`."""

import json
import re

import numpy as np
import pytest

from diarize.cli import main
from diarize.manifest import read_manifest
from diarize.rttm import read_rttm

from conftest import DIAR, require_data

WAV = DIAR / "ami_pyannote_debug" / "dev00.wav"


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)


def _manifest(tmp_path, *items):
    p = tmp_path / "m.json"
    p.write_text("".join((it if isinstance(it, str) else json.dumps(it)) + "\n" for it in items))
    return p


def test_offset_duration_count_and_oracle_vad_are_honoured(tmp_path):
    require_data()
    m = _manifest(
        tmp_path,
        {
            "audio_filepath": str(WAV),
            "offset": 5.0,
            "duration": 15.0,
            "num_speakers": 2,
            "rttm_filepath": str(WAV.with_suffix(".rttm")),
        },
    )
    out = tmp_path / "out"
    assert main(["run", "--manifest", str(m), "--out", str(out), "--quiet"]) == 0
    hyp = read_rttm(out / "dev00.rttm")["dev00"]
    ref = read_rttm(WAV.with_suffix(".rttm"))["dev00"]
    span = hyp.get_timeline().extent()
    assert span.start >= 5.0 - 1e-6 and span.end <= 20.0 + 1e-6  # file times, only the asked part
    assert len(hyp.labels()) == 2
    # oracle VAD: every hypothesis turn lies inside reference speech
    ref_speech = ref.get_timeline().support()
    assert hyp.get_timeline().support().duration() <= ref_speech.duration() + 1e-6
    assert hyp.get_timeline().support().crop(ref_speech).duration() == pytest.approx(
        hyp.get_timeline().support().duration(), abs=1e-3
    )


def test_uem_filepath_restricts_the_regions(tmp_path):
    require_data()
    uem = tmp_path / "dev00.uem"
    uem.write_text("dev00 1 10.0 18.0\n")
    m = _manifest(tmp_path, {"audio_filepath": str(WAV), "uem_filepath": "dev00.uem"})  # relative to the manifest
    out = tmp_path / "out"
    assert main(["run", "--manifest", str(m), "--out", str(out), "--quiet"]) == 0
    span = read_rttm(out / "dev00.rttm")["dev00"].get_timeline().extent()
    assert span.start >= 10.0 - 1e-6 and span.end <= 18.0 + 1e-6


@pytest.mark.parametrize(
    "item,msg",
    [
        ('{"audio_filepath": "{wav}", "offset": -1}', "m.json:2: 'offset' must be >= 0"),
        ('{"audio_filepath": "{wav}", "duration": "ten"}', "m.json:2: 'duration' must be a number"),
        ('{"audio_filepath": "{wav}", "duration": 0}', "m.json:2: 'duration' must be > 0"),
        ('{"audio_filepath": "{wav}", "num_speakers": 1.5}', "m.json:2: 'num_speakers' must be null or a whole"),
        ('{"audio_filepath": "{wav}", "num_speakers": 0}', "m.json:2: 'num_speakers'"),
        (
            '{"audio_filepath": "{wav}", "rttm_filepath": "nope.rttm"}',
            "m.json:2: rttm_filepath nope.rttm: no such file",
        ),
        ('{"audio_filepath": "{wav}", "uem_filepath": 3}', "m.json:2: 'uem_filepath' must be a file path"),
        ('{"audio_filepath": "{wav}", "rttm_filepath": "{two}"}', "m.json:2: .*no turns for file id 'dev00'"),
        ('{"offset": 1}', "m.json:2: needs an 'audio_filepath'"),
        ('{"audio_filepath": ', "m.json:2: not valid JSON"),
    ],
)
def test_bad_manifest_values_exit_2_naming_file_and_line(tmp_path, capsys, item, msg):
    require_data()
    two = tmp_path / "two.rttm"
    two.write_text("SPEAKER a 1 0 1 <NA> <NA> x <NA> <NA>\nSPEAKER b 1 0 1 <NA> <NA> x <NA> <NA>\n")
    line = item.replace("{wav}", str(WAV)).replace("{two}", str(two))
    m = _manifest(tmp_path, {"audio_filepath": str(WAV.with_name("dev01.wav"))}, line)
    out = tmp_path / "out"
    assert main(["run", "--manifest", str(m), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diarize: error: ")
    assert re.search(msg.replace("(", r"\(").replace(")", r"\)"), err[0]), err[0]
    assert not (out / "dev00.rttm").exists()


def test_reader_keeps_nemo_fields(tmp_path):
    require_data()
    m = _manifest(
        tmp_path,
        {"audio_filepath": str(WAV), "offset": 1, "duration": 2.5, "num_speakers": None, "label": "x", "text": "-"},
    )
    (e,) = read_manifest(m)
    assert (e.offset, e.duration, e.num_speakers, e.label, e.uri) == (1.0, 2.5, None, "x", "dev00")
    assert e.window().extent().start == 1.0 and e.window().extent().end == 3.5


def test_embed_uses_offset_and_duration(tmp_path, monkeypatch, campplus):
    require_data()
    import diarize.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: campplus)
    m = _manifest(
        tmp_path,
        {"audio_filepath": str(WAV), "offset": 0, "duration": 3.0},
        {"audio_filepath": str(WAV), "offset": 20.0, "duration": 3.0},
    )
    assert main(["embed", "--manifest", str(m), "--out", str(tmp_path / "e.npz")]) == 0
    with np.load(tmp_path / "e.npz") as data:
        a, b = data["dev00@0.00"], data["dev00@20.00"]
    assert not np.allclose(a, b)
    bad = _manifest(tmp_path, {"audio_filepath": str(WAV), "offset": 1000.0})
    assert main(["embed", "--manifest", str(bad), "--out", str(tmp_path / "f.npz")]) == 2
