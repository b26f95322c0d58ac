"""Issue 35, hostile and careless input, second round: outputs never clobber inputs, everything is
checked before the work, readers never crash, writers write valid files, the speakers database is
safe. Each test is a reproduction from the issue run through the CLI, and fails on the code before
the fix. Rows of README's bad-input table."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import diarize.models as diarize_models
from diarize.align import parse_cues
from diarize.cli import main
from diarize.errors import WeightsUnavailable
from diarize.models import load_model as real_load_model
from diarize.speakers import load_db, save_db

from test_bad_input import speechlike
from test_hostile_input import RTTM, no_work, one_error

SR = 16000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _use_campplus(monkeypatch, campplus):
    """Every command uses the already-loaded CAM++ unless a test puts the real loader back."""
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    monkeypatch.setattr(diarize_models, "load_model", lambda *a, **k: campplus)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "talk.wav"
    sf.write(path, speechlike(6.0), SR)
    return path


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def campplus_db(path: Path, people: dict[str, np.ndarray], model: str = "campplus") -> Path:
    save_db(path, people, model)
    return path


# --------------------------------------------------------------------------- A: outputs never clobber inputs
def test_out_equal_to_the_transcript_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    m = tmp_path / "talk.json"
    m.write_text('{"segments": [{"start": 0, "end": 2, "text": "hi"}]}')
    before = files_in(tmp_path)
    rc = main(["run", str(wav), "--out", str(m), "--transcript", str(m), "--quiet"])
    one_error(capsys, rc, "refusing to overwrite an input")
    assert files_in(tmp_path) == before


def test_a_derived_format_file_that_is_the_reference_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    ref = tmp_path / "talk.rttm"
    ref.write_text(RTTM)
    out = tmp_path / "talk.json"
    rc = main(["run", str(wav), "--out", str(out), "--format", "json,rttm", "--oracle-vad", str(ref), "--quiet"])
    one_error(capsys, rc, "refusing to overwrite an input")
    # the same through a hard link under another name
    (tmp_path / "x.rttm").hardlink_to(ref)
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.json"), "--format", "json,rttm", "--oracle-vad", str(ref)])
    one_error(capsys, rc, "refusing to overwrite an input")
    assert ref.read_text() == RTTM and not out.exists() and not (tmp_path / "x.json").exists()


def test_out_equal_to_the_speakers_database_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    db = campplus_db(tmp_path / "people.npz", {"ann": np.ones(192, np.float32)})
    before = db.read_bytes()
    one_error(
        capsys, main(["run", str(wav), "--out", str(db), "--speakers", str(db), "--quiet"]), "refusing to overwrite"
    )
    assert db.read_bytes() == before


def test_align_out_equal_to_its_transcript_is_refused(tmp_path, capsys):
    t = tmp_path / "t.json"
    t.write_text('{"segments": [{"start": 0, "end": 2, "text": "hi"}]}')
    m = tmp_path / "m.rttm"
    m.write_text(RTTM.replace("talk", "m"))
    before = t.read_text()
    one_error(capsys, main(["align", str(t), str(m), "--out", str(t)]), "refusing to overwrite an input")
    assert t.read_text() == before


@pytest.mark.parametrize(
    "out, fmt, text",
    [
        ("x.rttm", "json,srt", "its extension says rttm but --format asks for json,srt"),
        ("x.json", "rttm", "its extension says json"),
        ("x.mp4", None, "unknown output extension '.mp4'"),
        ("x.txt", "json", "unknown output extension '.txt'"),
    ],
)
def test_an_extension_that_disagrees_with_the_format_is_refused(tmp_path, wav, monkeypatch, capsys, out, fmt, text):
    no_work(monkeypatch)
    extra = ["--format", fmt] if fmt else []
    one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / out), *extra, "--quiet"]), text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.wav"]


# --------------------------------------------------------------------------- B: checked before the work
@pytest.mark.parametrize(
    "content, text",
    [
        (None, "cannot read transcript"),
        ('{"segments": [{"start": 0, "end": 2, "words": 5}]}', "segments[0].words must be a list"),
        ('{"segments": 7}', "expected whisper JSON"),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_transcript_fails_before_the_work(tmp_path, wav, monkeypatch, capsys, content, text):
    no_work(monkeypatch)
    t = tmp_path / "asr.json"
    if content is not None:
        t.write_text(content)
    out = tmp_path / "x.rttm"
    one_error(capsys, main(["run", str(wav), "--out", str(out), "--transcript", str(t), "--quiet"]), text)
    assert not out.exists()


def test_an_image_plot_without_matplotlib_fails_before_the_work(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    out = tmp_path / "x.rttm"
    rc = main(["run", str(wav), "--out", str(out), "--plot", str(tmp_path / "x.png"), "--quiet"])
    one_error(capsys, rc, "pip install 'diarize[plot]'")
    assert not out.exists()


def test_enroll_into_a_missing_folder_fails_before_the_model_is_loaded(tmp_path, wav, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the database folder was checked")

    monkeypatch.setattr(diarize_models, "load_model", refuse)
    one_error(capsys, main(["enroll", "ann", str(wav), "--db", str(tmp_path / "nodir" / "x.npz")]), "nodir")


# --------------------------------------------------------------------------- M: the model asked for
@pytest.fixture
def empty_cache(cache, monkeypatch):
    """The private CAM++-only cache (no TitaNet), offline."""

    def offline(*a, **k):
        raise WeightsUnavailable("could not download TitaNet-Large (offline)")

    from diarize.models import nemo

    monkeypatch.setattr(nemo, "download_titanet", offline)
    monkeypatch.setattr(diarize_models, "load_model", real_load_model)
    monkeypatch.setattr(diarize_models, "_fallback_noted", False, raising=False)
    return cache


def test_explicit_titanet_without_weights_exits_2(tmp_path, wav, empty_cache, capsys):
    out = tmp_path / "e.npz"
    one_error(capsys, main(["embed", str(wav), "--model", "titanet-large", "--out", str(out)]), "TitaNet-Large")
    assert not out.exists()


def test_the_fallback_notice_is_shown_once_per_process(tmp_path, wav, empty_cache, capsys):
    for i in range(2):
        assert main(["embed", str(wav), "--out", str(tmp_path / f"e{i}.npz")]) == 0
    assert capsys.readouterr().err.count("TitaNet-Large weights are not at hand") == 1


def test_a_bogus_cached_titanet_falls_back_with_a_warning(tmp_path, wav, empty_cache, capsys):
    (empty_cache / "titanet-large.nemo").write_bytes(b"not a nemo archive" * 100)
    out = tmp_path / "e.npz"
    assert main(["embed", str(wav), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "using CAM++" in err and "campplus" in err and out.exists()


# --------------------------------------------------------------------------- C: readers never crash
BIG = "9" * 400


@pytest.mark.parametrize(
    "name, content, text",
    [
        ("asr.json", "[" * 200000, "not valid JSON"),
        ("asr.json", '{"segments": [{"start": %s, "end": 2}]}' % BIG, "segments[0].start"),
        ("asr.json", '{"segments": [{"start": 1e306, "end": 1e306}]}', "segments[0].start"),
        ("asr.srt", "1\n%s:00:00,000 --> 00:00:01,000\nhi\n" % BIG, "bad cue timing"),
    ],
)
def test_transcript_readers_never_crash(tmp_path, capsys, name, content, text):
    t = tmp_path / name
    t.write_text(content)
    m = tmp_path / "m.rttm"
    m.write_text(RTTM)
    one_error(capsys, main(["align", str(t), str(m), "--out", str(tmp_path / "o.json")]), text)


@pytest.mark.parametrize(
    "content, text",
    [
        ('{"uri": "m", "turns": [{"start": 0, "end": %s, "speaker": "A"}]}' % BIG, "turns[0]"),
        ('{"uri": ["a"], "turns": []}', "'uri' must be a string"),
    ],
)
def test_diarization_json_reader_never_crashes(tmp_path, capsys, content, text):
    t = tmp_path / "t.json"
    t.write_text('{"segments": [{"start": 0, "end": 2, "text": "hi"}]}')
    d = tmp_path / "d.json"
    d.write_text(content)
    one_error(capsys, main(["align", str(t), str(d), "--out", str(tmp_path / "o.json")]), text)


@pytest.mark.parametrize(
    "line, text",
    [
        ('{"audio_filepath": "talk.wav", "offset": %s}' % BIG, "'offset' must be a number"),
        ('{"audio_filepath": "talk.wav", "num_speakers": Infinity}', "'num_speakers' must be"),
        ('{"audio_filepath": "talk.wav", "num_speakers": NaN}', "'num_speakers' must be"),
        ('{"audio_filepath": "talk.wav", "num_speakers": 1e300}', "'num_speakers' must be"),
    ],
)
def test_manifest_reader_never_crashes(tmp_path, wav, monkeypatch, capsys, line, text):
    no_work(monkeypatch)
    man = tmp_path / "m.jsonl"
    man.write_text(line + "\n")
    err = one_error(capsys, main(["run", "--manifest", str(man), "--out", str(tmp_path / "out"), "--quiet"]), text)
    assert "--num-speakers" not in err and len(err) < 300


def test_text_inputs_are_bounded_in_size(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:  # sparse: 65 MiB of NULs without writing them
        f.truncate(65 << 20)
    one_error(capsys, main(["align", str(huge), str(huge), "--out", str(tmp_path / "o.json")]), "larger than 32 MiB")
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--oracle-vad", str(huge), "--quiet"])
    one_error(capsys, rc, "larger than 64 MiB")


# --------------------------------------------------------------------------- D: writers write valid files
@pytest.mark.parametrize("ext", ["srt", "vtt"])
def test_subtitles_cannot_be_injected_with_fake_cues(tmp_path, capsys, ext):
    t = tmp_path / "t.json"
    t.write_text('{"segments": [{"start": 0, "end": 1, "text": "a\\n\\nb --> c"}, {"start": 1, "end": 2}]}')
    m = tmp_path / "m.rttm"
    m.write_text(RTTM.replace("talk", "m"))
    out = tmp_path / f"o.{ext}"
    assert main(["align", str(t), str(m), "--out", str(out)]) == 0
    cues = parse_cues(out.read_text())["segments"]
    assert [(c["start"], c["end"]) for c in cues] == [(0.0, 1.0), (1.0, 2.0)]
    assert cues[0]["text"] == "[A] a b -> c"


def test_times_before_zero_are_clipped_with_a_warning(tmp_path, capsys):
    t = tmp_path / "t.json"
    t.write_text('{"segments": [{"start": -1.5, "end": 1, "text": "early"}]}')
    m = tmp_path / "m.rttm"
    m.write_text(RTTM.replace("talk", "m"))
    out = tmp_path / "o.srt"
    assert main(["align", str(t), str(m), "--out", str(out)]) == 0
    assert "before the start" in capsys.readouterr().err
    assert "00:00:00,000 --> 00:00:01,000" in out.read_text()


# --------------------------------------------------------------------------- E: the speakers database
def test_a_nan_speaker_threshold_is_refused(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    db = campplus_db(tmp_path / "p.npz", {"ann": np.ones(192, np.float32)})
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--speakers", str(db), "--speaker-threshold", "nan"])
    one_error(capsys, rc, "--speaker-threshold")


@pytest.mark.parametrize(
    "members, text",
    [
        ({"__model__": np.array("campplus"), "ann": np.full(192, np.nan, np.float32)}, "not a finite"),
        ({"__model__": np.array("campplus"), "Alice Smith": np.ones(192), "Alice_Smith": -np.ones(192)}, "two"),
        ({"__model__": np.array("campplus"), "speaker_1": np.ones(192)}, "generated label"),
    ],
)
def test_bad_speaker_databases_are_refused_naming_the_file(tmp_path, wav, monkeypatch, capsys, members, text):
    no_work(monkeypatch)
    db = tmp_path / "p.npz"
    np.savez(db, **members)
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--speakers", str(db), "--quiet"])
    assert "p.npz" in one_error(capsys, rc, text)


def _npz_with_a_huge_member(path: Path) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    with zipfile.ZipFile(path, "w") as zf, zf.open("ann.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)


@pytest.mark.parametrize("make", ["npy", "huge"])
def test_a_file_that_is_not_a_speakers_database_exits_2(tmp_path, wav, monkeypatch, capsys, make):
    no_work(monkeypatch)
    db = tmp_path / "p.npz"
    if make == "npy":
        with open(db, "wb") as f:
            np.save(f, np.ones(192))
    else:
        _npz_with_a_huge_member(db)
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--speakers", str(db), "--quiet"])
    assert "p.npz" in one_error(capsys, rc, "p.npz")


def test_a_database_of_another_model_is_refused_before_the_work(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    db = campplus_db(tmp_path / "p.npz", {"ann": np.ones(192, np.float32)}, model="titanet-large")
    rc = main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--speakers", str(db), "--quiet"])
    one_error(capsys, rc, "enrolled with titanet-large, but this run uses campplus")


@pytest.mark.parametrize("name", ["speaker_1", "SPEAKER_01", " "])
def test_enroll_refuses_names_that_look_generated(tmp_path, wav, capsys, name):
    db = tmp_path / "p.npz"
    one_error(capsys, main(["enroll", name, str(wav), "--db", str(db)]), "invalid speaker name")
    assert not db.exists()


def test_enroll_stores_names_that_are_numpy_keywords(tmp_path, wav, capsys):
    db = tmp_path / "p.npz"
    for name in ("file", "allow_pickle"):
        assert main(["enroll", name, str(wav), "--db", str(db)]) == 0
    assert sorted(load_db(db)[0]) == ["allow_pickle", "file"]


@pytest.mark.parametrize("seconds", [3.0, 0.01])
def test_enroll_refuses_silence_and_a_blip_of_noise(tmp_path, capsys, seconds):
    x = tmp_path / "x.wav"
    n = int(seconds * SR)
    sf.write(x, np.zeros(n, np.float32) if seconds > 1 else 0.3 * np.random.default_rng(0).standard_normal(n), SR)
    db = tmp_path / "p.npz"
    one_error(capsys, main(["enroll", "ann", str(x), "--db", str(db)]), "no speech found")
    assert not db.exists()


def test_two_enrolls_at_once_lose_nobody(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, speechlike(3.0, seed=1), SR)
    sf.write(b, speechlike(3.0, seed=2), SR)
    db = tmp_path / "p.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "diarize", "enroll", name, str(path), "--db", str(db), "--model", "campplus"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in (("ann", a), ("bob", b))
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert sorted(load_db(db)[0]) == ["ann", "bob"]


# --------------------------------------------------------------------------- H: no write through a symlink
def test_a_planted_run_log_symlink_is_not_written_through(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "diarize_run.log").symlink_to(victim)
    b = tmp_path / "b.wav"
    b.write_bytes(wav.read_bytes())
    one_error(capsys, main(["run", str(wav), str(b), "--out", str(out), "--quiet"]), "symbolic link")
    assert victim.read_text() == "precious\n"


# --------------------------------------------------------------------------- G: resume checks every output
def test_resume_redoes_a_file_missing_one_of_its_formats_and_removes_stale_temps(tmp_path, wav):
    b = tmp_path / "b.wav"
    sf.write(b, speechlike(4.0, seed=3), SR)
    out = tmp_path / "out"
    args = ["run", str(wav), str(b), "--out", str(out), "--format", "rttm,vtt", "--vad", "energy", "--quiet"]
    assert main(args) == 0
    (out / "b.vtt").unlink()  # as if killed between the two formats
    stale = out / ".0123abcd.b.vtt.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert main(args) == 0
    assert (out / "b.vtt").is_file() and not stale.exists()


# --------------------------------------------------------------------------- rough edges
def test_an_input_directory_says_is_a_directory(tmp_path, monkeypatch, capsys):
    no_work(monkeypatch)
    (tmp_path / "d.wav").mkdir()
    one_error(capsys, main(["run", str(tmp_path / "d.wav"), "--out", str(tmp_path / "x.rttm")]), "is a directory")


def test_a_read_only_output_is_replaced_only_with_overwrite(tmp_path, wav, capsys):
    out = tmp_path / "x.rttm"
    out.write_text("mine\n")
    out.chmod(0o444)
    args = ["run", str(wav), "--out", str(out), "--vad", "energy", "--quiet"]
    one_error(capsys, main(args), "read-only")
    assert out.read_text() == "mine\n"
    assert main([*args, "--overwrite"]) == 0 and out.read_text().startswith("SPEAKER talk")


def test_one_speaker_label_rule_in_every_format(tmp_path, wav, capsys):
    db = tmp_path / "p.npz"
    assert main(["enroll", "Alice Smith", str(wav), "--db", str(db)]) == 0
    out = tmp_path / "talk.json"
    rc = main(
        ["run", str(wav), "--out", str(out), "--format", "json,rttm,srt,csv", "--speakers", str(db), "--quiet"]
        + ["--num-speakers", "1", "--vad", "energy"]
    )
    assert rc == 0
    for name in ("talk.json", "talk.rttm", "talk.srt", "talk.csv"):
        text = (tmp_path / name).read_text()
        assert "Alice_Smith" in text and "Alice Smith" not in text, name


# --------------------------------------------------------------------------- I: manifests in `run`
def test_run_manifest_offset_past_the_end_exits_2(tmp_path, wav, monkeypatch, capsys):
    no_work(monkeypatch)
    man = tmp_path / "m.jsonl"
    man.write_text(json.dumps({"audio_filepath": str(wav), "offset": 60.0}) + "\n")
    rc = main(["run", "--manifest", str(man), "--out", str(tmp_path / "out"), "--quiet"])
    one_error(capsys, rc, "offset 60.0 s is past the end")


def test_run_manifest_segments_of_one_file_get_their_own_ids(tmp_path, wav):
    man = tmp_path / "m.jsonl"
    man.write_text(
        "".join(json.dumps({"audio_filepath": str(wav), "offset": t, "duration": 3.0}) + "\n" for t in (0.0, 3.0))
    )
    out = tmp_path / "out"
    assert main(["run", "--manifest", str(man), "--out", str(out), "--vad", "energy", "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.rttm")) == ["talk@0.00.rttm", "talk@3.00.rttm"]


# --------------------------------------------------------------------------- K: resource bounds
def test_a_header_claiming_a_huge_sample_rate_is_refused(tmp_path, capsys):
    path = tmp_path / "fast.wav"
    sf.write(path, speechlike(1.0), 999_983)  # resampling it took 1.3 GB; 9,999,991 Hz over 5 GB
    out = tmp_path / "x.rttm"
    one_error(capsys, main(["run", str(path), "--out", str(out), "--quiet"]), "sample rate 999983 Hz is above 384000")
    assert not out.exists()


# --------------------------------------------------------------------------- L: non-UTF-8 file names
def test_json_of_a_non_utf8_file_name_is_valid_and_reads_back(tmp_path, wav, capsys):
    bad = tmp_path / os.fsdecode(b"caf\xe9.wav")
    bad.write_bytes(wav.read_bytes())
    out = tmp_path / os.fsdecode(b"caf\xe9.json")
    assert main(["run", str(bad), "--out", str(out), "--format", "json,rttm", "--vad", "energy", "--quiet"]) == 0
    out.read_bytes().decode("utf-8")  # valid UTF-8
    t = tmp_path / "t.json"
    t.write_text('{"segments": [{"start": 0, "end": 2, "text": "hi"}]}')
    for diarization in (out, out.with_suffix(".rttm")):
        assert main(["align", str(t), str(diarization), "--out", str(tmp_path / "o.json")]) == 0


# --------------------------------------------------------------------------- J: config values
@pytest.mark.parametrize(
    "setting, text",
    [
        ("clustering.seed=" + "9" * 5000, "--set clustering.seed: invalid value"),
        ("clustering.seed=" + "9" * 400, "--set clustering.seed: '9999"),
        ("clustering.max_num_speakers=0", "--set clustering.max_num_speakers: must be >= "),
        ("bogus.key=1", "--set bogus.key: unknown section(s) ['bogus']"),
        ("embedding.mode=slow", "--set embedding.mode: embedding.mode must be exact or fast"),
        ("b" * 5000 + ".key=1", "--set " + "b" * 80 + ": unknown section(s) ['" + "b" * 20),
    ],
)
def test_set_errors_name_the_setting_and_stay_short(tmp_path, wav, monkeypatch, capsys, setting, text):
    no_work(monkeypatch)
    err = one_error(capsys, main(["run", str(wav), "--out", str(tmp_path / "x.rttm"), "--set", setting]), text)
    assert "general.yaml" not in err and len(err) < 300


def test_yaml_exponent_numbers_are_numbers(tmp_path):
    from diarize.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("vad:\n  method: energy\n  energy:\n    min_speech_s: 1e-1\n")
    assert load_config(str(cfg)).vad.energy.min_speech_s == 0.1


# --------------------------------------------------------------------------- F: plots
def test_html_plot_of_a_name_with_a_comment_opener_keeps_its_script(tmp_path, wav):
    odd = tmp_path / "a<!--b.wav"
    odd.write_bytes(wav.read_bytes())
    page = tmp_path / "p.htm"
    args = ["run", str(odd), "--out", str(tmp_path / "x.rttm"), "--plot", str(page), "--vad", "energy", "--quiet"]
    assert main(args) == 0
    text = page.read_text()
    data = text.split('<script id="diarization" type="application/json">')[1].split("</script>")[0]
    assert "<" not in data and json.loads(data)


def test_image_plot_of_a_name_with_mathtext_is_drawn(tmp_path, wav):
    pytest.importorskip("matplotlib")
    odd = tmp_path / "m$\\frac{$.wav"
    odd.write_bytes(wav.read_bytes())
    out = tmp_path / "x.rttm"
    args = ["run", str(odd), "--out", str(out), "--plot", str(tmp_path / "p.png"), "--vad", "energy", "--quiet"]
    assert main(args) == 0 and (tmp_path / "p.png").stat().st_size > 0


# --------------------------------------------------------------------------- errors name the user's path
def test_a_failed_database_write_names_the_database_not_a_temp_file(tmp_path, wav, monkeypatch, capsys):
    import diarize.speakers as speakers

    def disk_full(path, *a, **k):
        raise OSError(28, "No space left on device", str(Path(path).parent / ".0123abcd.p.npz.tmp"))

    monkeypatch.setattr(speakers, "save_db", disk_full)
    db = tmp_path / "p.npz"
    err = one_error(capsys, main(["enroll", "ann", str(wav), "--db", str(db)]), "p.npz: cannot write")
    assert ".tmp" not in err


# --------------------------------------------------------------------------- J: window lengths against the model
def test_windows_shorter_than_the_model_can_embed_are_a_usage_error(tmp_path, wav, monkeypatch, capsys):
    # CAM++'s fbank needs 720 samples; 10 ms pieces tiled to 10 ms crashed inside the model (exit 3).
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "embedding: {mode: exact, min_embed_s: 0.01}\n"
        "windows: {window_lengths: [1.5, 0.03], shifts: [0.75, 0.015], weights: [1, 1], min_window_s: 0.01}\n"
    )
    no_work(monkeypatch)
    out = tmp_path / "out.rttm"
    rc = main(["run", str(wav), "--out", str(out), "--config", str(cfg), "--quiet"])
    one_error(capsys, rc, "embedding.min_embed_s")
    assert not out.exists()


def test_a_header_claiming_ten_megahertz_costs_no_memory(tmp_path):
    # A 40 KB WAV whose header claims 9,999,991 Hz needed > 5 GB for the resampling filter: now the whole
    # process, refusing it, stays far under 1 GB.
    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros(20_000, np.float32), 9_999_991, subtype="PCM_16")
    # The peak is the child's own VmHWM: ru_maxrss of an exec'd child starts at its parent's peak (Linux keeps
    # it across exec), which a pytest process that has run the models itself can be past 1 GB.
    code = (
        "import re, resource, sys\n"
        "from diarize.cli import main\n"
        f"rc = main(['run', {str(path)!r}, '--out', {str(tmp_path / 'o.rttm')!r}, '--quiet'])\n"
        "try:\n"
        "    peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "except OSError:\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(rc, peak)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    rc, peak_kb = map(int, done.stdout.split())
    assert rc == 2 and "above 384000 Hz" in done.stderr
    assert peak_kb < 1024 * 1024, f"peak {peak_kb / 1024:.0f} MB"
    assert not (tmp_path / "o.rttm").exists()
