"""Timelines: the self-contained HTML page (checked in a real headless browser when one is installed)
and the matplotlib extra."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from pyannote.core import Annotation, Segment

from diarize.cli import main
from diarize.plot import MissingExtra, plot_timeline, timeline_html

from conftest import DIAR, require_data

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


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


def test_audio_is_linked_only_when_it_sits_beside_the_page(tmp_path):
    wav = tmp_path / "my talk.wav"
    wav.write_bytes(b"RIFF")
    plot_timeline(_ann(), tmp_path / "t.html", audio=wav)
    assert 'src="my%20talk.wav"' in (tmp_path / "t.html").read_text()
    (tmp_path / "sub").mkdir()
    plot_timeline(_ann(), tmp_path / "sub" / "t.html", audio=wav)
    assert "<audio" not in (tmp_path / "sub" / "t.html").read_text()


def test_image_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"diarize\[plot\]"):
        plot_timeline(_ann(), tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
            )
        except Exception as e:  # a browser that cannot start here is an environment limit, not a failure
            pytest.skip(f"chromium does not start: {e}")
        yield b
        b.close()


def test_html_timeline_in_a_headless_browser(tmp_path, browser, monkeypatch, campplus):
    require_data()
    import diarize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: campplus)
    wav = tmp_path / "sample.wav"
    shutil.copy(DIAR / "pyannote_sample" / "sample.wav", wav)
    html, rttm = tmp_path / "sample.html", tmp_path / "sample.rttm"
    assert main(["run", str(wav), "--out", str(rttm), "--plot", str(html), "--quiet"]) == 0
    from diarize.rttm import read_rttm

    speakers = sorted(read_rttm(rttm)["sample"].labels())
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(Path(html).as_uri())
    page.wait_for_selector(".lane")
    assert sorted(page.eval_on_selector_all(".lane", "els => els.map(e => e.dataset.speaker)")) == speakers
    titles = page.eval_on_selector_all(".turn", "els => els.map(e => e.title)")
    assert len(titles) == len(read_rttm(rttm)["sample"]) and all(re.search(r"\d:\d\d\.\d\d", t) for t in titles)
    lane = page.locator(".lane").first
    box = lane.bounding_box()
    lane.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    assert float(page.get_attribute("#timeline", "data-clicked")) == pytest.approx(15.0, abs=0.5)
    page.wait_for_function("document.getElementById('audio').readyState >= 1")
    assert page.evaluate("document.getElementById('audio').duration") == pytest.approx(30.0, abs=0.1)
    assert page.evaluate("document.getElementById('audio').currentTime") == pytest.approx(15.0, abs=1.0)
    assert errors == []
