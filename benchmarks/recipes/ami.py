"""DER on AMI (dev or test), Mix-Headset or Lapel mix, as in the TitaNet-Large model card.

    python -m benchmarks.recipes.ami --setup AMI-diarization-setup --audio amicorpus \\
        [--subset test] [--mic mixheadset|lapel] --out runs/ami_test_mixheadset \\
        [--model titanet-large] [--config meeting] [--device cuda] [--limit N]

References, UEMs and the meeting lists come from the community setup
https://github.com/BUTSpeechFIT/AMI-diarization-setup (Landini et al., the one NeMo's
scripts/dataset_processing/speaker_tasks/get_ami_data.py downloads), the "only_words" variant
(word-level manual annotations of AMI 1.6.2, same-speaker adjacent words merged):

    <setup>/lists/{dev,test}.meetings.txt     one meeting id a line (test: 16 meetings, dev: 18)
    <setup>/only_words/rttms/{dev,test}/<meeting>.rttm   e.g. only_words/rttms/test/ES2004a.rttm
    <setup>/uems/{dev,test}/<meeting>.uem     one line '<meeting> 1 0.000 <end>': the whole recording

Audio comes from the AMI corpus download (https://groups.inf.ed.ac.uk/ami/download/), 16 kHz WAV:

    <audio>/<meeting>/audio/<meeting>.Mix-Headset.wav   --mic mixheadset (headset mix)
    <audio>/<meeting>/audio/<meeting>.Mix-Lapel.wav     --mic lapel (lapel mix)

(`<audio>` is the `amicorpus` folder; a folder that contains `amicorpus/` is accepted too.)
"AMI Lapel" in NeMo's numbers is the corpus' lapel *mix* file, `<meeting>.Mix-Lapel.wav`: the
scripts of NeMo's diarization author read e.g. `amicorpus_lapel/amicorpus/EN2004b/audio/
EN2004b.Mix-Lapel.wav` and note "Oracle number of speakers in EN2002c.Mix-Lapel is 3". (NeMo's
public get_ami_data.py fetches Mix-Headset and Array1-01 instead; Array1-01 is a single far-field
microphone and is not what the card calls Lapel.) The card does not say which subset it used; the
default here is test.

Model card (TitaNet-Large, oracle VAD, forgiving = 0.25 s collar each side + overlap ignored):
MixHeadset 1.73 (known #spk) / 1.89 (unknown); Lapel 2.03 / 2.03.
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
    read_list,
    require_dir,
    require_file,
    run_recipe,
)

from diarize.rttm import FormatError, read_uem

MICS = {
    "mixheadset": ("Mix-Headset", "AMI MixHeadset", (1.73, 1.89)),
    "lapel": ("Mix-Lapel", "AMI Lapel", (2.03, 2.03)),
}


def audio_root(root: Path) -> Path:
    require_dir(root, "the AMI corpus audio folder (amicorpus/<meeting>/audio/)")
    if (root / "amicorpus").is_dir():
        return root / "amicorpus"
    return root


def ami_recordings(setup: Path, audio: Path, subset: str, mic: str, limit: int | None = None) -> list[Recording]:
    require_dir(setup, "the AMI-diarization-setup checkout")
    meetings = read_list(setup / "lists" / f"{subset}.meetings.txt", f"the AMI {subset} meeting list")
    rttm_dir = require_dir(setup / "only_words" / "rttms" / subset, f"AMI {subset} reference RTTMs")
    uem_dir = require_dir(setup / "uems" / subset, f"AMI {subset} UEMs")
    root = audio_root(audio)
    suffix = MICS[mic][0]
    recs = []
    for m in limited(meetings, limit):
        refs = load_rttm(rttm_dir / f"{m}.rttm", f"the reference RTTM of {m}")
        if m not in refs:
            raise RecipeError(f"{rttm_dir / f'{m}.rttm'}: expected turns for file id {m!r}")
        uem_path = require_file(uem_dir / f"{m}.uem", f"the UEM of {m}")
        try:
            uems = read_uem(uem_path)
        except FormatError as e:
            raise RecipeError(str(e)) from None
        if m not in uems:
            raise RecipeError(f"{uem_path}: expected a region for file id {m!r}")
        wav = require_file(root / m / "audio" / f"{m}.{suffix}.wav", f"the {suffix} audio of {m}")
        recs.append(Recording(uri=m, audio=wav, reference=refs[m], uem=uems[m]))
    return recs


def main(argv: list[str] | None = None, model=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", type=Path, required=True, help="AMI-diarization-setup checkout")
    ap.add_argument("--audio", type=Path, required=True, help="amicorpus folder (<meeting>/audio/*.wav)")
    ap.add_argument("--subset", choices=("dev", "test"), default="test")
    ap.add_argument("--mic", choices=sorted(MICS), default="mixheadset")
    add_common_arguments(ap, "meeting")
    args = ap.parse_args(argv)

    def body() -> int:
        recs = ami_recordings(args.setup, args.audio, args.subset, args.mic, args.limit)
        _, name, card = MICS[args.mic]
        run_recipe(f"{name} {args.subset}", recs, args, card, model=model)
        return 0

    return main_wrapper(body)


if __name__ == "__main__":
    sys.exit(main())
