"""The fixed development / test split of the LibriSpeech speakers in ../shared/data/speakers (issue 12).

Dev speakers are what thresholds may be chosen on; test speakers are never used to choose anything.
Every script that simulates conversations for tuning or reporting takes its speakers from here.

Rule (applied once, frozen below so that a change in the data cannot move a speaker silently):
- librispeech_train-clean-100_1utt (54 speakers, one ~12 s utterance each; 25 F, 29 M): within each
  gender, speakers sorted by numeric LibriSpeech id alternate dev, test, dev, ... -> dev 13 F + 15 M,
  test 12 F + 14 M.
- librispeech_test-other (3 speakers, all F, 10 utterances each): sorted by id, the first (367) goes to
  dev and the other two (1998, 3331) to test, which makes both sides 14 F.
Dev: 29 speakers (14 F, 15 M); test: 28 speakers (14 F, 14 M). Genders from speakers/utterances.tsv.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import DATA

SPEAKERS_ROOT = DATA / "speakers"
SETS = ("librispeech_train-clean-100_1utt", "librispeech_test-other")

DEV_SPEAKERS: tuple[str, ...] = (
    "32",
    "226",
    "426",
    "669",
    "1183",
    "1970",
    "2989",
    "3440",
    "4137",
    "5339",
    "6078",
    "7511",
    "7794",  # F
    "27",
    "233",
    "446",
    "911",
    "2136",
    "2514",
    "3240",
    "3436",
    "4397",
    "6181",
    "6563",
    "7190",
    "7367",  # M
    "8095",
    "8629",  # M
    "367",  # test-other, F
)
TEST_SPEAKERS: tuple[str, ...] = (
    "125",
    "289",
    "587",
    "887",
    "1578",
    "2007",
    "3112",
    "3983",
    "4297",
    "5514",
    "7302",
    "7635",  # F
    "60",
    "311",
    "625",
    "1355",
    "2159",
    "3168",
    "3374",
    "3857",
    "6081",
    "6529",
    "7067",
    "7264",  # M
    "8088",
    "8226",  # M
    "1998",
    "3331",  # test-other, F
)
SIDES = {"dev": DEV_SPEAKERS, "test": TEST_SPEAKERS}


def split_rule(genders: dict[tuple[str, str], str]) -> dict[str, list[str]]:
    """The rule above applied to {(set, speaker id): "F" | "M"}; tests check it still gives the frozen lists."""
    out: dict[str, list[str]] = {"dev": [], "test": []}
    for gender in ("F", "M"):
        ids = sorted((s for (st, s), g in genders.items() if st == SETS[0] and g == gender), key=int)
        for i, s in enumerate(ids):
            out["dev" if i % 2 == 0 else "test"].append(s)
    other = sorted((s for (st, s) in genders if st == SETS[1]), key=int)
    out["dev"] += other[:1]
    out["test"] += other[1:]
    return out


def read_genders(root: Path = SPEAKERS_ROOT) -> dict[tuple[str, str], str]:
    """{(set, speaker id): gender} of the LibriSpeech sets, from speakers/utterances.tsv."""
    import csv

    with open(root / "utterances.tsv", newline="") as f:
        return {
            (r["set"], r["speaker"]): r["gender_or_note"] for r in csv.DictReader(f, delimiter="\t") if r["set"] in SETS
        }


def speaker_files(side: str, root: Path = SPEAKERS_ROOT) -> dict[str, list[Path]]:
    """Speaker id -> utterance files for one side ("dev" or "test")."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; known: {', '.join(SIDES)}")
    want = set(SIDES[side])
    out: dict[str, list[Path]] = {}
    for st in SETS:
        folder = root / st
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: speaker root not found")
        for d in sorted(folder.iterdir()):
            if d.name in want:
                out[d.name] = sorted(p for p in d.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    missing = want - set(out)
    if missing:
        raise FileNotFoundError(f"{root}: {side} speaker(s) {sorted(missing, key=int)} not found")
    return out
