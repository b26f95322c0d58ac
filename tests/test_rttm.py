import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from diarize.files import atomic_write as atomic_write_text
from diarize.rttm import (
    FormatError,
    labels_to_annotation,
    parse_rttm,
    parse_uem,
    read_rttm,
    rttm_lines,
    widen_turns,
    write_rttm,
)

from conftest import DIAR, require_data


def test_round_trip_real_references(tmp_path):
    require_data()
    for ref_path in sorted(DIAR.glob("*/*.rttm")):
        refs = read_rttm(ref_path)
        out = tmp_path / ref_path.name
        write_rttm(out, list(refs.values()))
        again = read_rttm(out)
        assert set(again) == set(refs)
        for uri in refs:
            a = sorted(
                (round(s.start, 3), round(s.end, 3), lab) for s, _, lab in refs[uri].itertracks(yield_label=True)
            )
            b = sorted(
                (round(s.start, 3), round(s.end, 3), lab) for s, _, lab in again[uri].itertracks(yield_label=True)
            )
            assert len(a) == len(b)
            for x, y in zip(a, b):
                assert x[2] == y[2] and abs(x[0] - y[0]) < 1e-3 and abs(x[1] - y[1]) < 2e-3


def test_rttm_lines_have_ten_fields():
    ann = Annotation(uri="f")
    ann[Segment(1.0, 2.5)] = "A"
    (line,) = rttm_lines(ann)
    assert line.split() == ["SPEAKER", "f", "1", "1.000", "1.500", "<NA>", "<NA>", "A", "<NA>", "<NA>"]


@pytest.mark.parametrize(
    "line,msg",
    [
        ("SPEAKER f 1 abc 1.0 <NA> <NA> A <NA> <NA>", "onset"),
        ("SPEAKER f 1 0.0 x <NA> <NA> A <NA> <NA>", "duration"),
        ("SPEAKER f 1 0.0", "10 fields"),
        ("SPEAKER f 1 -1.0 1.0 <NA> <NA> A <NA> <NA>", "negative"),
        ("SPEAKER f 1 nan 1.0 <NA> <NA> A <NA> <NA>", "finite"),
    ],
)
def test_malformed_rttm_names_file_and_line(line, msg):
    with pytest.raises(FormatError, match=rf"ref\.rttm:2: .*{msg}"):
        parse_rttm(["SPEAKER f 1 0.0 1.0 <NA> <NA> A <NA> <NA>", line], source="ref.rttm")


def test_uem_parse_and_errors():
    uem = parse_uem(["f 1 0.0 10.0", "f 1 5.0 12.0", "g 1 1 2"])
    assert [(s.start, s.end) for s in uem["f"]] == [(0.0, 12.0)]
    with pytest.raises(FormatError, match="u.uem:1"):
        parse_uem(["f 1 5.0 2.0"], source="u.uem")
    with pytest.raises(FormatError, match="4 fields"):
        parse_uem(["f 1 5.0"], source="u.uem")


def test_labels_to_annotation_cuts_overlaps_at_midpoint_and_merges():
    starts = np.array([0.0, 0.25, 0.5, 0.75, 3.0])
    ends = np.array([0.5, 0.75, 1.0, 1.25, 3.5])
    labels = np.array([4, 4, 7, 7, 4])
    ann = labels_to_annotation(starts, ends, labels, "u")
    turns = [(round(s.start, 4), round(s.end, 4), lab) for s, _, lab in ann.itertracks(yield_label=True)]
    # windows 1 and 2 overlap over [0.5, 0.75]: the change point is its middle, 0.625
    assert turns == [(0.0, 0.625, "speaker_0"), (0.625, 1.25, "speaker_1"), (3.0, 3.5, "speaker_0")]


def annotation_of(*turns):
    ann = Annotation(uri="u")
    for i, (start, end, label) in enumerate(turns):
        ann[Segment(start, end), i] = label
    return ann


def rounded(ann):
    return sorted((round(s.start, 6), round(s.end, 6), lab) for s, _, lab in ann.itertracks(yield_label=True))


def test_widen_turns_reaches_into_silence_up_to_the_middle_of_a_pause():
    regions = np.array([[0.1, 2.0], [2.3, 4.0], [5.0, 6.0], [6.3, 7.0]])
    ann = annotation_of(
        (0.1, 1.0, "A"),  # starts its region: 0.1 s of file before it
        (1.0, 2.0, "B"),  # a pause of 0.3 s to the next region: half each side
        (2.3, 3.0, "C"),
        (3.0, 3.95, "A"),  # the region's last turn, though it ends before the region does
        (5.0, 6.0, "D"),  # D on both sides of a 0.3 s pause: one turn across it
        (6.3, 7.0, "D"),
    )
    got = rounded(widen_turns(ann, regions, pad_s=0.2, join_s=0.0, within=np.array([[0.0, 7.1]])))
    assert got == [
        (0.0, 1.0, "A"),
        (1.0, 2.15, "B"),
        (2.15, 3.0, "C"),
        (3.0, 4.2, "A"),
        (4.8, 7.1, "D"),
    ]
    assert widen_turns(ann, regions, 0.0, 0.0, np.array([[0.0, 7.1]])) is ann
    # a UEM's scored part bounds the turns as it bounds the regions
    got = rounded(widen_turns(ann, regions, pad_s=0.2, join_s=0.0, within=np.array([[0.1, 4.1], [4.9, 6.9]])))
    assert got == [(0.1, 1.0, "A"), (1.0, 2.15, "B"), (2.15, 3.0, "C"), (3.0, 4.1, "A"), (4.9, 6.9, "D")]


def test_widen_turns_joins_one_speakers_turns_across_a_short_pause_only():
    regions = np.array([[0.0, 1.0], [1.8, 3.0], [4.0, 5.0], [5.5, 6.0]])
    ann = annotation_of(
        (0.0, 1.0, "A"),
        (1.8, 2.5, "A"),  # A on both sides of a 0.8 s pause: joined
        (2.5, 3.0, "B"),  # B on both sides of a 1.0 s pause, not shorter than join_s: padded only
        (4.0, 4.5, "B"),
        (4.5, 5.0, "C"),  # C, then A after a 0.5 s pause: different speakers, each padded
        (5.5, 6.0, "A"),
    )
    got = rounded(widen_turns(ann, regions, pad_s=0.2, join_s=1.0, within=np.array([[0.0, 6.0]])))
    assert got == [
        (0.0, 2.5, "A"),
        (2.5, 3.2, "B"),
        (3.8, 4.5, "B"),
        (4.5, 5.2, "C"),
        (5.3, 6.0, "A"),
    ]
    joined_only = rounded(widen_turns(ann, regions, pad_s=0.0, join_s=1.0, within=np.array([[0.0, 6.0]])))
    assert joined_only[0] == (0.0, 2.5, "A") and (2.5, 3.0, "B") in joined_only and (5.5, 6.0, "A") in joined_only


def test_widen_turns_widens_both_speakers_of_an_overlap_and_no_inner_turn():
    regions = np.array([[1.0, 3.0]])
    ann = annotation_of((1.0, 2.0, "A"), (1.0, 1.5, "B"), (2.0, 3.0, "B"), (2.5, 3.0, "A"))
    got = rounded(widen_turns(ann, regions, pad_s=0.25, join_s=0.0, within=np.array([[0.0, 10.0]])))
    assert got == [(0.75, 1.5, "B"), (0.75, 2.0, "A"), (2.0, 3.25, "B"), (2.5, 3.25, "A")]


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out.rttm"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic_write_text(target, "x" * 100)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n" and len(list(tmp_path.iterdir())) == 1
