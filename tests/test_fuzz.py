"""Property-based fuzzing of everything that reads user input: RTTM, UEM, manifests, YAML configs,
and short random audio through `Diarizer.run`. The property is the issue-14 contract: a result, or
one of our own errors (a `DiarizeError` with a one-line message), never any other exception.

Bounded for CI: each test has a small `max_examples` and no per-example deadline; the whole file
runs in well under a minute on two cores (a toy embedder and the energy VAD keep audio cheap).
"""

import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ToyEmbedder
from diarize.audio import SAMPLE_RATE
from diarize.manifest import read_manifest
from diarize.config import DiarizerConfig, config_from_dict, load_config
from diarize.errors import DiarizeError
from diarize.rttm import parse_rttm, parse_uem, read_rttm, read_uem

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def one_line(e: DiarizeError) -> None:
    text = str(e)
    assert text and "\n" not in text.strip() and len(text) < 1000, text[:200]


# --------------------------------------------------------------------------- RTTM / UEM text
TOKENS = st.one_of(
    st.sampled_from(
        [
            "SPEAKER",
            "speaker",
            "SPKR-INFO",
            "LEXEME",
            "SPEKAER",
            "<NA>",
            "1",
            "a",
            "b",
            "0",
            "0.5",
            "-1",
            "nan",
            "inf",
            "1e308",
            "1e-320",
            "\ufeff",
            "\ufeffSPEAKER",
            ";;",
            "#",
            "",
            "NOSCORE",
            "A/P",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=8),
)
LINES = st.lists(st.lists(TOKENS, max_size=12).map(" ".join), max_size=8)


@FUZZ
@given(LINES)
def test_rttm_parser_gives_annotations_or_format_errors(lines):
    try:
        anns = parse_rttm(lines, source="fuzz.rttm")
    except DiarizeError as e:
        one_line(e)
        assert str(e).startswith("fuzz.rttm:")
        return
    for uri, ann in anns.items():
        for seg in ann.itersegments():
            assert 0 <= seg.start < seg.end and math.isfinite(seg.end)


@FUZZ
@given(LINES)
def test_uem_parser_gives_timelines_or_format_errors(lines):
    try:
        uems = parse_uem(lines, source="fuzz.uem")
    except DiarizeError as e:
        one_line(e)
        return
    for tl in uems.values():
        for seg in tl:
            assert 0 <= seg.start < seg.end


@FUZZ
@given(st.binary(max_size=300))
def test_rttm_and_uem_files_of_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("f") / "x.rttm"
    path.write_bytes(data)
    for reader in (read_rttm, read_uem):
        try:
            reader(path)
        except DiarizeError as e:
            one_line(e)


# --------------------------------------------------------------------------- manifests
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
ENTRY = st.fixed_dictionaries({"audio_filepath": JSON}, optional={"offset": JSON, "duration": JSON, "label": JSON})


@FUZZ
@given(st.lists(st.one_of(ENTRY.map(json.dumps), JSON.map(json.dumps), st.text(max_size=30)), max_size=5))
def test_manifest_reader_checks_every_field(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("m") / "m.json"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        entries = read_manifest(path)
    except DiarizeError as e:
        one_line(e)
        assert str(path) in str(e)
        return
    for entry in entries:
        assert str(entry.audio).strip()
        assert math.isfinite(entry.offset) and entry.offset >= 0
        assert entry.duration is None or (math.isfinite(entry.duration) and entry.duration > 0)


# --------------------------------------------------------------------------- YAML configs
def _fields(cls):
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]


SECTION_KEYS = {
    name: _fields(type(getattr(DiarizerConfig(), name))) for name in ("vad", "windows", "embedding", "clustering")
}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.one_of(st.floats(), st.integers(-2, 5)), max_size=6),
    st.dictionaries(st.sampled_from(["onset", "step_s", "x"]), st.floats(), max_size=2),
)
CONFIGS = st.dictionaries(
    st.sampled_from([*SECTION_KEYS, "other"]),
    st.one_of(VALUES, st.dictionaries(st.sampled_from(sum(SECTION_KEYS.values(), ["nope"])), VALUES, max_size=4)),
    max_size=4,
)


@FUZZ
@given(CONFIGS)
def test_config_from_any_mapping_is_valid_or_a_config_error(data):
    try:
        cfg = config_from_dict(data)
    except DiarizeError as e:
        one_line(e)
        return
    w = cfg.windows
    assert all(math.isfinite(x) and x > 0 for x in w.window_lengths + w.shifts)
    assert all(math.isfinite(x) and x >= 0 for x in w.weights) and sum(w.weights) > 0
    assert isinstance(cfg.vad.overlap_assignment, bool)


@FUZZ
@given(st.one_of(CONFIGS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=80)))
def test_yaml_config_files_of_any_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("c") / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(str(path))
    except DiarizeError as e:
        one_line(e)


# --------------------------------------------------------------------------- short random audio


@pytest.fixture(scope="module")
def diarizer():
    from diarize import Diarizer

    return Diarizer(load_config("general", ["vad.method=energy"]), model=ToyEmbedder())


SIGNALS = st.builds(
    lambda kind, seconds, scale, seed: _signal(kind, seconds, scale, seed),
    st.sampled_from(["noise", "bursts", "silence", "dc", "tone", "clipped"]),
    st.floats(0.0, 4.0),
    st.sampled_from([1e-6, 0.01, 0.5, 1.0, 1e4]),
    st.integers(0, 3),
)


def _signal(kind: str, seconds: float, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    x = {
        "noise": lambda: rng.standard_normal(n),
        "bursts": lambda: rng.standard_normal(n) * ((t % 1.0) < 0.4),
        "silence": lambda: np.zeros(n),
        "dc": lambda: np.ones(n) + 0.01 * rng.standard_normal(n) * ((t % 0.8) < 0.5),
        "tone": lambda: np.sin(2 * np.pi * 220 * t) * ((t % 1.2) < 0.7),
        "clipped": lambda: np.clip(5 * rng.standard_normal(n), -1, 1),
    }[kind]()
    return (scale * x).astype(np.float32)


@pytest.mark.filterwarnings("ignore:.*no speech found")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    SIGNALS,
    st.sampled_from([8000, 16000, 44100, 999, 0, -5]),
    st.sampled_from(
        [
            {},
            {"num_speakers": 1},
            {"num_speakers": 3},
            {"min_speakers": 2},
            {"max_speakers": 1},
            {"min_speakers": 20},
            {"num_speakers": 0},
        ]
    ),
)
def test_random_short_audio_through_the_pipeline(diarizer, audio, sample_rate, counts):
    try:
        res = diarizer.run(audio, sample_rate, uri="fuzz", **counts)
    except DiarizeError as e:
        one_line(e)
        return
    assert res.num_speakers == len(res.annotation.labels())
    if counts.get("num_speakers") and res.num_speakers:
        assert res.num_speakers == counts["num_speakers"]
    for seg in res.annotation.itersegments():
        assert 0 <= seg.start < seg.end <= res.duration + 1e-6


# --------------------------------------------------------------------------- transcripts, diarization JSON (issue 35)
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(), st.none(), st.text(max_size=3)
)
WORD = st.fixed_dictionaries({}, optional={"start": NUMBERS, "end": NUMBERS, "word": JSON})
SEGMENT = st.fixed_dictionaries(
    {}, optional={"start": NUMBERS, "end": NUMBERS, "text": JSON, "words": st.one_of(st.lists(WORD, max_size=3), JSON)}
)
TRANSCRIPTS = st.one_of(
    st.fixed_dictionaries({}, optional={"segments": st.one_of(st.lists(SEGMENT, max_size=3), JSON), "words": JSON}),
    st.lists(WORD, max_size=3),
    JSON,
)


@FUZZ
@given(TRANSCRIPTS, st.sampled_from(["json", "srt", "vtt"]))
def test_transcripts_are_labelled_and_written_or_format_errors(tmp_path_factory, doc, ext):
    from pyannote.core import Annotation, Segment

    from diarize.align import label_transcript, read_transcript, write_transcript

    folder = tmp_path_factory.mktemp("t")
    path = folder / "t.json"
    path.write_text(json.dumps(doc))
    ann = Annotation(uri="t")
    ann[Segment(0, 2)] = "A"
    try:
        labelled = label_transcript(read_transcript(path), ann)
    except DiarizeError as e:
        one_line(e)
        return
    write_transcript(folder / f"o.{ext}", labelled)


TURN = st.fixed_dictionaries({}, optional={"start": NUMBERS, "end": NUMBERS, "speaker": JSON})
DIARIZATIONS = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"uri": JSON, "turns": st.one_of(st.lists(TURN, max_size=4), JSON), "duration": NUMBERS}
    ),
    JSON,
)


@FUZZ
@given(DIARIZATIONS)
def test_diarization_json_gives_annotations_or_format_errors(tmp_path_factory, doc):
    from diarize.formats import read_json, render

    path = tmp_path_factory.mktemp("d") / "d.json"
    path.write_text(json.dumps(doc))
    try:
        ann, _ = read_json(path)
    except DiarizeError as e:
        one_line(e)
        return
    assert isinstance(ann.uri, str)
    for fmt in ("rttm", "json", "srt", "vtt", "csv"):
        render(fmt, ann)


# --------------------------------------------------------------------------- speakers database (issue 35)
ARRAYS = st.one_of(
    st.lists(st.floats(width=32), min_size=0, max_size=4).map(lambda v: np.array(v, dtype=np.float32)),
    st.text(max_size=5).map(np.array),
    st.lists(st.text(max_size=4), max_size=3).map(lambda v: np.array(v, dtype=str)),
    st.integers(-3, 3).map(lambda n: np.full((2, 2), n)),
)


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=8), ARRAYS, max_size=4), st.binary(max_size=40))
@example({"Alice Smith": np.array([1.0, np.nan], np.float32)}, b"")
def test_speaker_databases_load_or_format_errors(tmp_path_factory, members, junk):
    from diarize.speakers import load_db

    folder = tmp_path_factory.mktemp("s")
    path = folder / "db.npz"
    try:
        with open(path, "wb") as f:
            np.savez(f, **members)
    except (ValueError, TypeError):  # a member name numpy itself refuses
        return
    for candidate in (path, folder / "junk.npz"):
        (folder / "junk.npz").write_bytes(junk)
        try:
            db, _ = load_db(candidate)
        except DiarizeError as e:
            one_line(e)
            continue
        for label, v in db.items():
            assert label.strip() == label and " " not in label and np.isfinite(v).all()


# --------------------------------------------------------------------------- SRT / VTT writers (issue 35)
CUES = st.lists(
    st.tuples(st.integers(0, 10**11 - 10**6), st.integers(0, 10**6), st.text(max_size=30)),  # ms, up to MAX_SECONDS
    max_size=5,
).map(lambda cues: [(a / 1000, (a + d) / 1000, text) for a, d, text in cues])


@FUZZ
@given(CUES, st.sampled_from(["srt", "vtt"]))
def test_subtitles_parse_back_to_the_same_cues(cues, fmt):
    from diarize.align import parse_cues
    from diarize.formats import cue_text, cues_to_srt, cues_to_vtt

    text = (cues_to_srt if fmt == "srt" else cues_to_vtt)(cues)
    if not cues:
        return
    got = parse_cues(text)["segments"]
    assert [(s["start"], s["end"], s["text"]) for s in got] == [
        (pytest.approx(a, abs=5e-4), pytest.approx(b, abs=5e-4), cue_text(t)) for a, b, t in cues
    ]
