import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from diarize.rttm import FormatError, parse_rttm, parse_uem, read_rttm, rttm_lines, write_rttm
from diarize.cli import add_score_arguments, run_score
from diarize.score import score

from conftest import DIAR, require_data


def ann(uri, turns):
    a = Annotation(uri=uri)
    for i, (s, e, lab) in enumerate(turns):
        a[Segment(s, e), i] = lab
    return a


PAIRS = {
    "overlap": (
        ann("a", [(0, 5, "A"), (4, 9, "B"), (10, 12, "A")]),
        ann("a", [(0, 4.5, "x"), (4.5, 9, "y"), (10, 12.5, "y")]),
    ),
    "collar_edges": (ann("b", [(0.1, 2.0, "A"), (2.0, 4.0, "B")]), ann("b", [(0.0, 2.2, "1"), (2.2, 4.3, "2")])),
    "empty_hyp": (ann("c", [(1, 3, "A"), (5, 6, "B")]), ann("c", [])),
    "extra_speaker": (ann("d", [(0, 10, "A")]), ann("d", [(0, 3, "1"), (3, 6, "2"), (6, 10, "3")])),
}
UEMS = {
    "a": Timeline([Segment(1, 11)]),
    "b": Timeline([Segment(0, 3)]),
    "c": Timeline([Segment(0, 10)]),
    "d": Timeline([Segment(2, 8)]),
}


@pytest.mark.parametrize("collar,skip", [(0.0, False), (0.25, True), (0.25, False), (0.5, True)])
@pytest.mark.parametrize("use_uem", [False, True])
def test_agrees_with_pyannote(collar, skip, use_uem):
    refs = {k: r for k, (r, h) in ((p[0].uri, p) for p in PAIRS.values())}
    hyps = {h.uri: h for r, h in PAIRS.values()}
    report = score(refs, hyps, UEMS if use_uem else None, collar=collar, ignore_overlap=skip)
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip)
    for uri in refs:
        expected = metric(refs[uri], hyps[uri], uem=UEMS[uri] if use_uem else None)
        assert report.files[uri].der == pytest.approx(expected, abs=1e-6)
    assert report.total.der == pytest.approx(abs(metric), abs=1e-6)  # pooled, like NeMo / md-eval


def test_missing_hypothesis_counts_as_missed_and_extra_is_an_error():
    r = score({"a": PAIRS["overlap"][0]}, {})
    assert r.files["a"].der == pytest.approx(1.0) and r.files["a"].miss == pytest.approx(r.files["a"].total)
    with pytest.raises(FormatError, match="not in the reference"):
        score({"a": PAIRS["overlap"][0]}, {"zzz": PAIRS["overlap"][1]})


def test_real_references_against_perturbed_selves(rng):
    require_data()
    metric = DiarizationErrorRate(collar=0.5, skip_overlap=True)
    refs, hyps = {}, {}
    for path in sorted(DIAR.glob("*/*.rttm")):
        for uri, ref in read_rttm(path).items():
            hyp = Annotation(uri=uri)
            for i, (seg, _, lab) in enumerate(ref.itertracks(yield_label=True)):
                s, e = seg.start + rng.normal(0, 0.2), seg.end + rng.normal(0, 0.2)
                if e > s:
                    hyp[Segment(max(0, s), e), i] = lab if rng.random() > 0.1 else "other"
            refs[uri], hyps[uri] = ref, hyp
    assert score(refs, refs, collar=0.0).total.der == pytest.approx(0.0, abs=1e-9)
    report = score(refs, hyps, collar=0.25, ignore_overlap=True)
    for uri in refs:
        assert report.files[uri].der == pytest.approx(metric(refs[uri], hyps[uri]), abs=1e-6)
    assert report.total.der == pytest.approx(abs(metric), abs=1e-6)


def _args(argv):
    p = argparse.ArgumentParser()
    add_score_arguments(p)
    return p.parse_args(argv)


def test_cli_json_shape_and_presets(tmp_path, capsys):
    ref, hyp = PAIRS["overlap"]
    write_rttm(tmp_path / "ref.rttm", ref)
    write_rttm(tmp_path / "hyp.rttm", hyp)
    assert (
        run_score(_args([str(tmp_path / "ref.rttm"), str(tmp_path / "hyp.rttm"), "--preset", "forgiving", "--json"]))
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"files", "total"} and set(out["files"]) == {"a"}
    assert set(out["total"]) == {"der", "miss", "false_alarm", "confusion", "total"}
    expected = 100 * DiarizationErrorRate(collar=0.5, skip_overlap=True)(ref, hyp)
    assert out["files"]["a"]["der"] == pytest.approx(expected, abs=1e-4)
    assert run_score(_args([str(tmp_path / "ref.rttm"), str(tmp_path / "hyp.rttm")])) == 0
    assert "TOTAL (pooled)" in capsys.readouterr().out


def test_cli_directories_and_malformed_lines(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    (tmp_path / "hyp").mkdir()
    for name, (r, h) in PAIRS.items():
        write_rttm(tmp_path / "ref" / f"{r.uri}.rttm", r)
        write_rttm(tmp_path / "hyp" / f"{h.uri}.rttm", h)
    assert run_score(_args([str(tmp_path / "ref"), str(tmp_path / "hyp"), "--json"])) == 0
    assert len(json.loads(capsys.readouterr().out)["files"]) == 4
    (tmp_path / "hyp" / "a.rttm").write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> x <NA> <NA>\nSPEAKER a 1 oops\n")
    assert run_score(_args([str(tmp_path / "ref"), str(tmp_path / "hyp")])) == 2
    err = capsys.readouterr().err
    assert "a.rttm:2" in err and err.count("\n") == 1
    (tmp_path / "u.uem").write_text("a 1 0 x\n")
    assert run_score(_args([str(tmp_path / "ref"), str(tmp_path / "ref"), "--uem", str(tmp_path / "u.uem")])) == 2
    assert "u.uem:1" in capsys.readouterr().err


# --------------------------------------------------------------------------- parser properties
times = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(times, st.floats(min_value=0.001, max_value=100), st.sampled_from("ABCD")), max_size=20))
def test_rttm_round_trip_property(turns):
    a = ann("f", [(round(s, 3), round(s, 3) + round(d, 3), lab) for s, d, lab in turns if round(d, 3) > 0])
    back = parse_rttm(rttm_lines(a)).get("f", Annotation(uri="f"))
    assert len(back) == len(a)
    assert abs(back.get_timeline().duration() - a.get_timeline().duration()) < 1e-3 * (len(a) + 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), max_size=6))
def test_parsers_only_raise_format_error(lines):
    for parser in (parse_rttm, parse_uem):
        try:
            parser(lines, source="fuzz")
        except FormatError as e:
            assert str(e).startswith("fuzz:")
