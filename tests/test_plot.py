"""Timelines: the self-contained HTML page (checked in a real headless Chromium, driven over the DevTools
protocol by tests/browser.py; .ci/run installs it) and the matplotlib extra."""

import json
import os
import re
import shutil
import sys

import pytest
from pyannote.core import Annotation, Segment

from diarize.cli import main
from diarize.plot import MissingExtra, plot_timeline, timeline_html
from diarize.rttm import read_rttm

from browser import CHROMIUM, Chromium
from conftest import DIAR, require_data


def _ann():
    ann = Annotation(uri="talk </script>")
    ann[Segment(0, 5), 0] = "A"
    ann[Segment(4, 6), 1] = "B"
    ann[Segment(7, 9), 2] = "C"
    return ann


def test_page_is_self_contained_and_carries_the_turns(tmp_path):
    page = timeline_html(_ann(), duration=10.0)
    assert "http://" not in page and "https://" not in page and "<audio" not in page
    data = json.loads(
        re.search(r'<script id="diarization" type="application/json">(.*?)</script>', page, re.S).group(1)
    )
    assert data["speakers"] == ["A", "B", "C"] and data["duration"] == 10.0
    assert data["overlap"] == [{"start": 4.0, "end": 5.0, "speakers": ["A", "B"]}]
    assert data["uri"] == "talk </script>"  # the escaped "</" did not end the script early


def test_audio_is_linked_by_its_path_relative_to_the_page_wherever_it_is(tmp_path):
    wav = tmp_path / "my talk.wav"
    wav.write_bytes(b"RIFF")
    plot_timeline(_ann(), tmp_path / "t.html", audio=wav)
    assert 'src="my%20talk.wav"' in (tmp_path / "t.html").read_text()
    (tmp_path / "sub").mkdir()
    plot_timeline(_ann(), tmp_path / "sub" / "t.html", audio=wav)
    page = (tmp_path / "sub" / "t.html").read_text()
    assert 'src="../my%20talk.wav"' in page and "no-audio" not in page
    plot_timeline(_ann(), tmp_path / "sub" / "u.html", audio=wav, audio_url="https://example.org/talk.mp3")
    assert 'src="https://example.org/talk.mp3"' in (tmp_path / "sub" / "u.html").read_text()


def test_page_without_audio_says_so(tmp_path):
    plot_timeline(_ann(), tmp_path / "t.html", audio=tmp_path / "gone.wav")
    page = (tmp_path / "t.html").read_text()
    assert "<audio" not in page and 'id="no-audio"' in page and "--plot-audio" in page
    assert "click anywhere on a lane to play" not in page


def test_image_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"diarize\[plot\]"):
        plot_timeline(_ann(), tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


@pytest.fixture
def browser():
    # .ci/run installs chromium and sets DIARIZE_REQUIRE_BROWSER, so there a missing browser fails.
    if CHROMIUM is None:
        if os.environ.get("DIARIZE_REQUIRE_BROWSER"):
            pytest.fail("DIARIZE_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
        pytest.skip("no chromium installed (apt-get install chromium)")
    b = Chromium(CHROMIUM)
    yield b
    b.close()


RENDERED = """[...document.querySelectorAll('.lane')].map(lane => ({
  speaker: lane.dataset.speaker,
  turns: [...lane.querySelectorAll('.turn')].map(t => [t.getBoundingClientRect().width, t.title]),
  height: lane.getBoundingClientRect().height}))"""


def test_html_timeline_in_a_headless_browser(tmp_path, browser, monkeypatch, campplus):
    """The page renders one lane per speaker with every turn drawn, and a click seeks the player to the
    time under the mouse; the audio sits in another folder than the page."""
    require_data()
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    (tmp_path / "audio").mkdir()
    (tmp_path / "out").mkdir()
    wav = tmp_path / "audio" / "sample.wav"
    shutil.copy(DIAR / "pyannote_sample" / "sample.wav", wav)
    page, rttm = tmp_path / "out" / "sample.html", tmp_path / "out" / "sample.rttm"
    argv = ["run", str(wav), "--out", str(rttm), "--plot", str(page), "--vad", "energy", "--quiet"]
    assert main(argv) == 0
    ann = read_rttm(rttm)["sample"]
    browser.goto(page.as_uri())
    lanes = browser.evaluate(RENDERED)
    assert sorted(lane["speaker"] for lane in lanes) == sorted(ann.labels()) and len(lanes) >= 2
    assert all(lane["height"] > 10 for lane in lanes)
    drawn = [t for lane in lanes for t in lane["turns"]]
    assert len(drawn) == len(ann) and all(w > 0 and re.search(r"\d:\d\d\.\d\d", title) for w, title in drawn)
    box = browser.evaluate(
        "(r => [r.left, r.top, r.width, r.height])(document.querySelector('.lane').getBoundingClientRect())"
    )
    browser.wait_for("document.getElementById('audio').readyState >= 1")
    assert browser.evaluate("document.getElementById('audio').duration") == pytest.approx(30.0, abs=0.1)
    browser.click(box[0] + box[2] / 2, box[1] + box[3] / 2)
    assert float(browser.evaluate("document.getElementById('timeline').dataset.clicked")) == pytest.approx(
        15.0, abs=0.5
    )
    assert browser.evaluate("document.getElementById('audio').currentTime") == pytest.approx(15.0, abs=1.0)
    assert browser.errors() == []


def test_html_timeline_without_audio_renders_and_says_so(tmp_path, browser):
    plot_timeline(_ann(), tmp_path / "t.html", duration=10.0)
    browser.goto((tmp_path / "t.html").as_uri())
    lanes = browser.evaluate(RENDERED)
    assert [lane["speaker"] for lane in lanes] == ["A", "B", "C"]
    assert [len(lane["turns"]) for lane in lanes] == [1, 1, 1] and all(t[0] > 0 for x in lanes for t in x["turns"])
    assert "No audio" in browser.evaluate("document.getElementById('no-audio').textContent")
    assert browser.evaluate("document.getElementById('audio')") is None
    assert browser.errors() == []
