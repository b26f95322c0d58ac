"""DER on the CALLHOME part of NIST SRE 2000 (LDC2001S97, disk 8): the 500 calls of Kaldi's
callhome_diarization recipe, usually just called "CALLHOME" in diarization papers.

    python -m benchmarks.recipes.sre2000 --audio LDC2001S97 --key sre2000-key --out runs/sre2000 \\
        [--model titanet-large] [--config telephonic] [--device cuda] [--limit N]

Expected layout:

    <audio>/.../<reco>.sph   2-channel 8 kHz SPHERE; searched recursively like Kaldi's
                             `find $src_dir -name "$reco.sph"` (in LDC2001S97 they sit in
                             r65_8_1/sid00sg1/data/)
    <key>/fullref.rttm       reference turns of all 500 calls
    <key>/reco2num           '<reco> <number of speakers>' per call: the list of calls, and the
                             speaker count of the known-#spk condition

The key is not in the LDC release. Kaldi's egs/callhome_diarization/v1/local/make_callhome.sh
downloads it from OpenSLR resource 10 (http://www.openslr.org/resources/10/sre2000-key.tar.gz,
which unpacks to sre2000-key/{fullref.rttm,reco2num,segments}); lhotse's callhome_english recipe
(SRE mode) reads the same fullref.rttm. `--key` may name the sre2000-key folder or the folder that
holds it. There is no UEM: the scored region of a call is the extent of reference + hypothesis
(pyannote's default).

Calls have two or more speakers (the extra ones share a channel with one of the two main
callers); the channels are mixed to mono. The .sph files are usually shorten-compressed, which libsndfile
cannot read: with `sph2pipe` on PATH they are converted once into <out>/audio_cache/ (what
Kaldi's `sph2pipe -f wav -p` does), otherwise the recipe stops and says how to convert them.

Model card (TitaNet-Large, oracle VAD, forgiving = 0.25 s collar each side + overlap ignored):
NIST-SRE2000 6.73 (known #spk) / 5.38 (unknown).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from benchmarks.recipes._recipe import (
    Recording,
    RecipeError,
    add_common_arguments,
    limited,
    load_rttm,
    main_wrapper,
    readable_sphere,
    require_dir,
    require_file,
    run_recipe,
)

MODEL_CARD = (6.73, 5.38)


def key_dir(key: Path) -> Path:
    require_dir(key, "the SRE2000 key folder sre2000-key/ (OpenSLR 10: fullref.rttm, reco2num)")
    if not (key / "fullref.rttm").is_file() and (key / "sre2000-key").is_dir():
        key = key / "sre2000-key"
    return key


def read_reco2num(path: Path) -> dict[str, int]:
    require_file(path, "the SRE2000 call list reco2num ('<reco> <#speakers>' per line)")
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise RecipeError(f"{path}:{n}: expected '<reco> <number of speakers>', got {line.strip()!r}")
        out[fields[0]] = int(fields[1])
    return out


def sre2000_recordings(audio: Path, key: Path, cache: Path, limit: int | None = None) -> list[Recording]:
    key = key_dir(key)
    refs = load_rttm(key / "fullref.rttm", "the SRE2000 reference fullref.rttm")
    reco2num = read_reco2num(key / "reco2num")
    require_dir(audio, "the LDC2001S97 root (with <reco>.sph files below it)")
    sph = {p.stem: p for p in sorted(audio.rglob("*.sph"))}
    if not sph:
        raise RecipeError(f"expected <reco>.sph files (e.g. r65_8_1/sid00sg1/data/*.sph) under {audio} (none found)")
    recs = []
    for reco in limited(sorted(reco2num), limit):
        if reco not in refs:
            raise RecipeError(f"{key / 'fullref.rttm'}: expected turns for call {reco!r} (listed in reco2num)")
        if reco not in sph:
            raise RecipeError(f"expected {reco}.sph under {audio} (not found)")
        recs.append(
            Recording(
                uri=reco, audio=readable_sphere(sph[reco], cache), reference=refs[reco], num_speakers=reco2num[reco]
            )
        )
    return recs


def main(argv: list[str] | None = None, model=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, required=True, help="LDC2001S97 root (<reco>.sph below it)")
    ap.add_argument("--key", type=Path, required=True, help="sre2000-key folder (fullref.rttm, reco2num)")
    add_common_arguments(ap, "telephonic")
    args = ap.parse_args(argv)

    def body() -> int:
        recs = sre2000_recordings(args.audio, args.key, args.out / "audio_cache", args.limit)
        run_recipe("NIST SRE2000 CALLHOME", recs, args, MODEL_CARD, model=model)
        return 0

    return main_wrapper(body)


if __name__ == "__main__":
    sys.exit(main())
