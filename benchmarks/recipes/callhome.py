"""DER on CH109: the two-speaker calls of CALLHOME American English (LDC97S42 + LDC97T14).

    python -m benchmarks.recipes.callhome --audio LDC97S42 --transcripts LDC97T14 --out runs/ch109 \\
        [--list ch109.txt] [--model titanet-large] [--config telephonic] [--device cuda] [--limit N]
    python -m benchmarks.recipes.callhome --audio LDC97S42 --rttm ch109.rttm [--uem ch109.uem] --out ...

Expected layout (as lhotse's callhome_english recipe reads it):

    <audio>/data/{train,devtest,evltest}/en_NNNN.sph   120 calls, 2-channel 8 kHz SPHERE (LDC spells
                                                       the eval folder 'evltest'; any subfolder of
                                                       data/ is searched)
    <transcripts>/transcrpt/{train,devtest,evaltest}/en_NNNN.txt
                                                       lines '<start> <end> <spk>: <words>'
                                                       (seconds in the full call; spk A, B, ...)

References are built from the transcripts: one turn per timestamped line, labelled by its speaker
tag; continuation lines and '#' lines are skipped. The transcripts cover only a 10-minute (train,
devtest) or 5-minute (evaltest) stretch of each call of up to 30 minutes, so the UEM of a call is
[first turn start, last turn end] and the system VAD is restricted to it.

CH109 is "the 109 CALLHOME American English calls with two speakers" (Park et al., NME-SC, 2019;
the TitaNet paper). No public file list or RTTM for it was found: NVIDIA's scripts read private
files (callhome_ch109.scp / callhome_ch109.rttm) and NeMo's dataset README says the CallHome
scripts are available on request. So by default the recipe selects the calls whose transcript has
exactly two speaker tags and reports how many it found (expect 109 if this matches the paper's
selection; not verified). Pass `--list FILE` (call ids, one a line) to fix the set, or `--rttm`
(file or folder of .rttm; optional `--uem`) to use your own references instead of the transcripts.

The two channels are mixed to mono. LDC's .sph files are usually shorten-compressed
(sample_coding 'ulaw,embedded-shorten-v2.00'), which libsndfile cannot read: with `sph2pipe` on
PATH they are converted once into <out>/audio_cache/, otherwise the recipe stops and says how to
convert them (`sph2pipe -f wav -p in.sph out.wav`).

Model card (TitaNet-Large, oracle VAD, forgiving = 0.25 s collar each side + overlap ignored):
CH109 1.19 (known #spk) / 1.63 (unknown).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline

from benchmarks.recipes._recipe import (
    Recording,
    RecipeError,
    add_common_arguments,
    limited,
    load_rttm,
    main_wrapper,
    read_list,
    readable_sphere,
    require_dir,
    run_recipe,
)
from diarize.rttm import FormatError, read_uem

MODEL_CARD = (1.19, 1.63)
_TURN = re.compile(r"^\s*(\d+(?:\.\d*)?)\s+(\d+(?:\.\d*)?)\s+([A-Za-z][A-Za-z0-9]*)\s*:")


def parse_transcript(path: Path) -> Annotation:
    """Speaker turns of one CALLHOME transcript (times in seconds of the full call)."""
    uri = path.stem
    ann = Annotation(uri=uri)
    for line in path.read_text(encoding="latin-1").splitlines():
        m = _TURN.match(line)
        if m is None:
            continue  # comment, blank or continuation line
        start, end = float(m.group(1)), float(m.group(2))
        if end > start:
            ann[Segment(start, end), len(ann)] = m.group(3)
    return ann


def sphere_index(audio: Path) -> dict[str, Path]:
    data = require_dir(
        audio / "data", "the CALLHOME speech folder data/ (LDC97S42: data/{train,devtest,evltest}/*.sph)"
    )
    index = {p.stem: p for p in sorted(data.rglob("*.sph"))}
    if not index:
        raise RecipeError(f"expected CALLHOME .sph files under {data} (none found)")
    return index


def callhome_recordings(
    audio: Path,
    transcripts: Path | None,
    rttm: Path | None,
    uem: Path | None,
    list_file: Path | None,
    cache: Path,
    limit: int | None = None,
    log=print,
) -> list[Recording]:
    sph = sphere_index(audio)
    if rttm is not None:
        refs: dict[str, Annotation] = {}
        files = sorted(rttm.glob("*.rttm")) if rttm.is_dir() else [rttm]
        for f in files:
            refs.update(load_rttm(f, "the CH109 reference RTTM"))
        if not refs:
            raise RecipeError(f"expected SPEAKER lines in {rttm} (none found)")
        try:
            uems = read_uem(uem) if uem is not None else {}
        except FormatError as e:
            raise RecipeError(str(e)) from None
    else:
        tdir = require_dir(
            transcripts / "transcrpt",
            "the CALLHOME transcript folder transcrpt/ (LDC97T14: transcrpt/{train,devtest,evaltest}/*.txt)",
        )
        paths = sorted(tdir.rglob("*.txt"))
        if not paths:
            raise RecipeError(f"expected CALLHOME transcripts en_NNNN.txt under {tdir} (none found)")
        refs = {p.stem: parse_transcript(p) for p in paths}
        refs = {u: a for u, a in refs.items() if len(a)}
        uems = {
            u: Timeline([Segment(a.get_timeline().extent().start, a.get_timeline().extent().end)], uri=u)
            for u, a in refs.items()
        }
    if list_file is not None:
        ids = read_list(list_file, "the CH109 call list")
        missing = [i for i in ids if i not in refs]
        if missing:
            raise RecipeError(f"{list_file}: call {missing[0]} has no reference ({len(missing)} such)")
    elif rttm is not None:
        ids = sorted(refs)
    else:
        ids = sorted(u for u, a in refs.items() if len(a.labels()) == 2)
        log(
            f"CH109: {len(ids)} of {len(refs)} transcribed calls have exactly two speakers"
            + ("" if len(ids) == 109 else " (the paper's CH109 has 109; pass --list to fix the set)")
        )
    recs = []
    for uri in limited(ids, limit):
        if uri not in sph:
            raise RecipeError(f"expected {uri}.sph under {audio / 'data'} (not found)")
        if uems and uri not in uems:
            raise RecipeError(f"{uem}: expected a region for file id {uri!r}")
        recs.append(Recording(uri=uri, audio=readable_sphere(sph[uri], cache), reference=refs[uri], uem=uems.get(uri)))
    return recs


def main(argv: list[str] | None = None, model=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, required=True, help="LDC97S42 root (holds data/)")
    ap.add_argument("--transcripts", type=Path, help="LDC97T14 root (holds transcrpt/)")
    ap.add_argument("--rttm", type=Path, help="reference RTTM file or folder, instead of --transcripts")
    ap.add_argument("--uem", type=Path, help="UEM file for --rttm references")
    ap.add_argument("--list", type=Path, dest="list_file", help="call ids to run, one a line [two-speaker calls]")
    add_common_arguments(ap, "telephonic")
    args = ap.parse_args(argv)
    if (args.transcripts is None) == (args.rttm is None):
        ap.error("give exactly one of --transcripts and --rttm")

    def body() -> int:
        log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
        recs = callhome_recordings(
            args.audio,
            args.transcripts,
            args.rttm,
            args.uem,
            args.list_file,
            args.out / "audio_cache",
            args.limit,
            log=log,
        )
        run_recipe("CALLHOME American English CH109", recs, args, MODEL_CARD, model=model)
        return 0

    return main_wrapper(body)


if __name__ == "__main__":
    sys.exit(main())
