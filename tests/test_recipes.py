"""The corpus DER recipes (benchmarks/recipes/ami.py, callhome.py, sre2000.py) on tiny stand-in trees.

Each tree has the real folder and file names and formats, with two ~12 s recordings made of
real LibriSpeech utterances of two speakers and an exact reference; the recipes run end to end
with the real CAM++ model.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from benchmarks.recipes import _recipe, ami, callhome, sre2000
from conftest import SPEAKERS, require_data

SR = 16000
CONDITIONS = ("oracle_known", "oracle_unknown", "system_unknown")


def _utterances(speaker_index: int, first: int, n: int, max_s: float) -> list[np.ndarray]:
    spk = sorted(p for p in (SPEAKERS / "librispeech_test-other").iterdir() if p.is_dir())[speaker_index]
    out = []
    for wav in sorted(spk.glob("*.wav"))[first : first + n]:
        x, sr = sf.read(wav, dtype="float32")
        assert sr == SR
        out.append(x[: int(max_s * SR)])
    return out


def conversation(spk_a: int, spk_b: int, first: int, lead_s: float = 0.0, max_utt_s: float = 2.2, gap_s: float = 0.4):
    """Two tracks (one per speaker) of alternating turns A B A B, and the exact turns in seconds.

    Speakers are indices into the (three) LibriSpeech test-other speakers; utterances `first`
    and `first + 1` of each are used.
    """
    require_data()
    a, b = _utterances(spk_a, first, 2, max_utt_s), _utterances(spk_b, first, 2, max_utt_s)
    turns, t = [], lead_s
    for utt, label in ((a[0], "A"), (b[0], "B"), (a[1], "A"), (b[1], "B")):
        turns.append((t, t + len(utt) / SR, label, utt))
        t += len(utt) / SR + gap_s
    n = int((t + lead_s) * SR)
    tracks = {"A": np.zeros(n, np.float32), "B": np.zeros(n, np.float32)}
    for start, _, label, utt in turns:
        i = int(round(start * SR))
        tracks[label][i : i + len(utt)] += utt
    noise = np.random.default_rng(first).normal(0, 1e-4, (2, n)).astype(np.float32)
    tracks["A"] += noise[0]
    tracks["B"] += noise[1]
    assert n / SR <= 15.0
    return tracks, [(s, e, lab) for s, e, lab, _ in turns], n / SR


def rttm_text(uri: str, turns, names: dict[str, str]) -> str:
    return "".join(f"SPEAKER {uri} 1 {s:.4f} {e - s:.4f} <NA> <NA> {names[lab]} <NA> <NA>\n" for s, e, lab in turns)


def write_sphere_8k(path: Path, tracks) -> None:
    """2-channel 8 kHz NIST SPHERE, channel A then B (like a telephone call)."""
    stereo = np.stack([resample_poly(tracks["A"], 1, 2), resample_poly(tracks["B"], 1, 2)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, stereo, 8000, format="NIST", subtype="PCM_16")


# ------------------------------------------------------------------------- trees


def make_ami(root: Path) -> tuple[Path, Path]:
    setup, audio = root / "AMI-diarization-setup", root / "amicorpus"
    meetings = {"ES2004a": (0, 1, 0), "IS1009a": (2, 0, 2)}
    (setup / "lists").mkdir(parents=True)
    (setup / "lists" / "test.meetings.txt").write_text("".join(f"{m}\n" for m in meetings))
    for m, (a, b, first) in meetings.items():
        tracks, turns, dur = conversation(a, b, first)
        rttm = setup / "only_words" / "rttms" / "test" / f"{m}.rttm"
        rttm.parent.mkdir(parents=True, exist_ok=True)
        rttm.write_text(rttm_text(m, turns, {"A": "MEO015", "B": "FEE013"}))
        uem = setup / "uems" / "test" / f"{m}.uem"
        uem.parent.mkdir(parents=True, exist_ok=True)
        uem.write_text(f"{m} 1 0.000 {dur:.6f}\n")
        wav = audio / m / "audio" / f"{m}.Mix-Headset.wav"
        wav.parent.mkdir(parents=True)
        sf.write(wav, tracks["A"] + tracks["B"], SR)
    return setup, audio


def make_callhome(root: Path) -> tuple[Path, Path]:
    audio, trans = root / "LDC97S42", root / "LDC97T14"
    calls = {"en_4065": ("train", "train", 1, 2, 4), "en_4074": ("evaltest", "evltest", 0, 2, 6)}
    for uri, (tsplit, asplit, a, b, first) in calls.items():
        # 1.5 s of untranscribed audio before the transcribed stretch: times are in the full call.
        tracks, turns, _ = conversation(a, b, first, lead_s=1.5, max_utt_s=2.2)
        write_sphere_8k(audio / "data" / asplit / f"{uri}.sph", tracks)
        lines = ["#Language: eng", "#File id: " + uri.split("_")[1], ""]
        for s, e, lab in turns:
            lines += [f"{s:.2f} {e:.2f} {lab}: some words here", "  and a continuation line", ""]
        path = trans / "transcrpt" / tsplit / f"{uri}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
    # A third call with three speaker tags: not a two-speaker (CH109) call, and it has no audio.
    (trans / "transcrpt" / "devtest" / "en_4099.txt").parent.mkdir(parents=True, exist_ok=True)
    (trans / "transcrpt" / "devtest" / "en_4099.txt").write_text(
        "1.00 2.00 A: hi\n2.50 3.00 B: hello\n3.10 4.00 A1: me too\n"
    )
    return audio, trans


def make_sre2000(root: Path) -> tuple[Path, Path]:
    audio, key = root / "LDC2001S97", root / "key"
    data = audio / "r65_8_1" / "sid00sg1" / "data"
    ref, reco2num = "", ""
    for uri, (a, b, first) in {"iaaa": (2, 1, 8), "iaab": (0, 1, 2)}.items():
        tracks, turns, _ = conversation(a, b, first, max_utt_s=2.2)
        write_sphere_8k(data / f"{uri}.sph", tracks)
        ref += rttm_text(uri, turns, {"A": f"{uri}_A", "B": f"{uri}_B"})
        reco2num += f"{uri} 2\n"
    (key / "sre2000-key").mkdir(parents=True)
    (key / "sre2000-key" / "fullref.rttm").write_text(ref)
    (key / "sre2000-key" / "reco2num").write_text(reco2num)
    (key / "sre2000-key" / "segments").write_text("")
    return audio, key


# ------------------------------------------------------------------------- checks


def check_results(out: Path, uris: list[str], stdout: str, card: tuple[float, float]) -> dict:
    res = json.loads((out / "results.json").read_text())
    assert res["recordings"] == len(uris)
    assert sorted(res["files"]) == sorted(uris)
    for cond in CONDITIONS:
        for uri in uris:
            assert (out / "hyp" / cond / f"{uri}.rttm").is_file()
        c = res["conditions"][cond]
        assert math.isfinite(c["forgiving"]["der"]) and math.isfinite(c["full"]["der"])
        assert c["forgiving"]["total"] > 3.0  # seconds of scored reference speech were found
        assert c["full"]["total"] >= c["forgiving"]["total"]
    # Known count: the hypothesis has exactly the reference's two speakers.
    for uri in uris:
        assert res["files"][uri]["ref_speakers"] == 2
        assert res["files"][uri]["oracle_known"]["hyp_speakers"] == 2
    # Two clean, distinct LibriSpeech speakers with oracle speech: the real model gets it nearly right.
    assert res["conditions"]["oracle_known"]["forgiving"]["der"] < 10.0
    # The system VAD hears both speakers (both channels of the telephone files are in the mix).
    assert res["conditions"]["system_unknown"]["forgiving"]["miss"] < 25.0
    assert res["conditions"]["oracle_known"]["model_card_forgiving"] == card[0]
    assert res["conditions"]["oracle_unknown"]["model_card_forgiving"] == card[1]
    assert res["conditions"]["system_unknown"]["model_card_forgiving"] is None
    lines = {ln.split("  ")[0]: ln for ln in stdout.splitlines()}
    known = lines["oracle VAD, known #spk"]
    assert f"{res['conditions']['oracle_known']['forgiving']['der']:.2f}" in known and known.endswith(f"{card[0]:.2f}")
    assert lines["oracle VAD, unknown #spk"].endswith(f"{card[1]:.2f}")
    rows = (out / "per_file.csv").read_text().splitlines()
    assert rows[0].startswith("uri,condition,ref_speakers,hyp_speakers,forgiving_der")
    assert len(rows) == 1 + 3 * len(uris)
    return res


def test_ami_recipe_end_to_end_and_resume(tmp_path, campplus, capsys):
    setup, audio = make_ami(tmp_path)
    out = tmp_path / "out"
    argv = ["--setup", str(setup), "--audio", str(audio), "--subset", "test", "--out", str(out)]
    assert ami.main(argv, model=campplus) == 0
    cap = capsys.readouterr()
    assert "AMI MixHeadset test: 2 recording(s)" in cap.out
    res = check_results(out, ["ES2004a", "IS1009a"], cap.out, (1.73, 1.89))
    assert res["config"] == "meeting"
    assert "ES2004a oracle_known" in cap.err  # progress on stderr
    # A rerun resumes: nothing is diarized again and the numbers are the same.
    before = {p: p.read_text() for p in (out / "hyp").rglob("*.rttm")}
    assert ami.main(argv, model=campplus) == 0
    cap2 = capsys.readouterr()
    assert cap2.err.count("hypothesis exists, skipped") == 6
    assert {p: p.read_text() for p in (out / "hyp").rglob("*.rttm")} == before
    again = json.loads((out / "results.json").read_text())["conditions"]
    for cond in CONDITIONS:  # both runs score the written RTTMs: identical numbers
        for preset in ("forgiving", "full"):
            assert again[cond][preset] == pytest.approx(res["conditions"][cond][preset], abs=1e-6)


def test_callhome_recipe_end_to_end(tmp_path, campplus, capsys):
    audio, trans = make_callhome(tmp_path)
    out = tmp_path / "out"
    argv = ["--audio", str(audio), "--transcripts", str(trans), "--out", str(out)]
    assert callhome.main(argv, model=campplus) == 0
    cap = capsys.readouterr()
    assert "2 of 3 transcribed calls have exactly two speakers" in cap.err
    res = check_results(out, ["en_4065", "en_4074"], cap.out, (1.19, 1.63))
    assert res["config"] == "telephonic"
    # Scoring is restricted to the transcribed stretch (UEM), which starts 1.5 s into the call:
    # the system-VAD condition must not be charged for the untranscribed lead-in.
    hyp = (out / "hyp" / "system_unknown" / "en_4065.rttm").read_text().split()
    assert hyp and hyp[1] == "en_4065"
    assert res["conditions"]["system_unknown"]["forgiving"]["false_alarm"] < 20.0


def test_sre2000_recipe_limit_then_resume(tmp_path, campplus, capsys):
    audio, key = make_sre2000(tmp_path)
    out = tmp_path / "out"
    argv = ["--audio", str(audio), "--key", str(key), "--out", str(out)]
    assert sre2000.main(argv + ["--limit", "1"], model=campplus) == 0
    cap = capsys.readouterr()
    assert "1 recording(s) (--limit: NOT the full set)" in cap.out
    assert sorted(p.name for p in (out / "hyp" / "oracle_known").iterdir()) == ["iaaa.rttm"]
    assert sre2000.main(argv, model=campplus) == 0
    cap = capsys.readouterr()
    assert cap.err.count("hypothesis exists, skipped") == 3  # iaaa from the first run
    assert "iaab oracle_known" in cap.err
    check_results(out, ["iaaa", "iaab"], cap.out, (6.73, 5.38))


# ------------------------------------------------------------------------- layout errors


def test_bad_layouts_exit_2_naming_the_expected_path(tmp_path, capsys):
    setup, audio = make_ami(tmp_path)
    out = str(tmp_path / "out")
    assert ami.main(["--setup", str(setup), "--audio", str(audio), "--mic", "lapel", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "expected" in err
    assert str(audio / "ES2004a" / "audio" / "ES2004a.Mix-Lapel.wav") in err
    assert ami.main(["--setup", str(tmp_path / "nope"), "--audio", str(audio), "--out", out]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert ami.main(["--setup", str(setup), "--audio", str(audio), "--subset", "dev", "--out", out]) == 2
    assert str(setup / "lists" / "dev.meetings.txt") in capsys.readouterr().err

    ch_audio, ch_trans = make_callhome(tmp_path / "ch")
    assert callhome.main(["--audio", str(ch_audio), "--transcripts", str(tmp_path), "--out", out]) == 2
    assert str(tmp_path / "transcrpt") in capsys.readouterr().err
    assert callhome.main(["--audio", str(tmp_path), "--transcripts", str(ch_trans), "--out", out]) == 2
    assert str(tmp_path / "data") in capsys.readouterr().err

    sre_audio, _ = make_sre2000(tmp_path / "sre")
    (tmp_path / "emptykey").mkdir()
    assert sre2000.main(["--audio", str(sre_audio), "--key", str(tmp_path / "emptykey"), "--out", out]) == 2
    assert str(tmp_path / "emptykey" / "fullref.rttm") in capsys.readouterr().err


# ------------------------------------------------------------------------- SPHERE


def _shorten_header(path: Path) -> None:
    """Mark a SPHERE file as shorten-compressed, as LDC's CALLHOME files are (header only)."""
    raw = bytearray(path.read_bytes())
    head = raw[:1024].decode("latin-1")
    assert "end_head" in head
    line = "sample_coding -s26 ulaw,embedded-shorten-v2.00\n"
    if "sample_coding" in head:
        start = head.index("sample_coding")
        head = head[:start] + head[head.index("\n", start) + 1 :]
    head = head.replace("end_head", line + "end_head", 1)[:1024].ljust(1024)
    raw[:1024] = head.encode("latin-1")
    path.write_bytes(bytes(raw))


def test_sphere_header_and_shorten_handling(tmp_path, monkeypatch):
    sph = tmp_path / "en_0001.sph"
    sf.write(sph, np.zeros((800, 2), np.float32), 8000, format="NIST", subtype="PCM_16")
    hdr = _recipe.sphere_header(sph)
    assert hdr["channel_count"] == "2" and hdr["sample_rate"] == "8000"
    cache = tmp_path / "cache"
    assert _recipe.readable_sphere(sph, cache) == sph  # uncompressed: read directly

    _shorten_header(sph)
    assert "shorten" in _recipe.sphere_header(sph)["sample_coding"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(_recipe.RecipeError, match=r"shorten-compressed.*sph2pipe -f wav -p"):
        _recipe.readable_sphere(sph, cache)

    # With an sph2pipe on PATH it is called as `sph2pipe -f wav -p IN OUT`, once; OUT is cached.
    log = tmp_path / "calls.txt"
    fake = bindir / "sph2pipe"
    fake.write_text(
        f"#!{sys.executable}\nimport sys, numpy, soundfile\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "soundfile.write(sys.argv[-1], numpy.zeros((800, 2)), 8000, format='WAV', subtype='PCM_16')\n"
    )
    fake.chmod(0o755)
    wav = _recipe.readable_sphere(sph, cache)
    assert wav == cache / "en_0001.wav" and sf.info(wav).channels == 2
    assert _recipe.readable_sphere(sph, cache) == wav
    assert log.read_text().splitlines() == [f"-f wav -p {sph} {cache / '.en_0001.partial.wav'}"]


def test_callhome_shorten_without_sph2pipe_exits_2(tmp_path, monkeypatch, capsys):
    audio, trans = make_callhome(tmp_path)
    _shorten_header(audio / "data" / "train" / "en_4065.sph")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert callhome.main(["--audio", str(audio), "--transcripts", str(trans), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "en_4065.sph" in last and "sph2pipe -f wav -p" in last
