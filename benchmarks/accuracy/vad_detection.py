"""Speech detection alone (no embeddings): missed and false-alarm speech of the default VAD
(pyannote-seg) per condition or file, against the reference turns, for one or more settings.

    python -m benchmarks.accuracy.vad_detection shared                 # the six shared recordings, per file
    python -m benchmarks.accuracy.vad_detection /tmp/heldout/dev       # a held-out set (benchmarks/accuracy/heldout.py)
    python -m benchmarks.accuracy.vad_detection /tmp/heldout/dev -s energy_rescue_score=null -s energy_rescue_score=0.05

Each `-s field=value[,field=value...]` (`SegmentationVADConfig` fields, scalar YAML values) is one column; without any,
the columns are "model alone" (energy_rescue_score=null, the default) and the rescue at 0.05. Frame scores do not
depend on these fields and are cached per file in --cache (the model runs once per file). Rows:
conditions of a held-out set (uri `<set>_<nn>_<condition>_<k>spk`) or files of the shared set, then
ALL (pooled). Cells: miss % / false alarm % of reference speech, at collar 0 and at 0.5 s (the
forgiving DER's collar), from pyannote.metrics' DetectionErrorRate.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from pyannote.core import Annotation, Segment
from pyannote.metrics.detection import DetectionErrorRate


from benchmarks import DATA
from diarize.audio import load_audio
from diarize.config import VADConfig, config_from_dict
from diarize.models.pyannet import FrameScores, load_pyannet, sliding_scores
from diarize.rttm import read_rttm
from diarize.vad import segmentation_regions


def list_files(where: str) -> list[tuple[str, Path, Path]]:
    """(row label, wav, rttm) per file: shared recordings by name, held-out sets by condition."""
    if where == "shared":
        rows = csv.DictReader(open(DATA / "diarization" / "manifest.tsv"), delimiter="\t")
        return [(Path(r["wav"]).stem, DATA / r["wav"], DATA / r["rttm"]) for r in rows]
    return [(w.stem.split("_")[2], w, w.with_suffix(".rttm")) for w in sorted(Path(where).glob("*.wav"))]


def cached_scores(model, wav: Path, audio: np.ndarray, cache: Path, cfg: VADConfig) -> FrameScores:  # noqa: ANN001
    s = cfg.pyannote_seg
    path = cache / f"{wav.parent.name}_{wav.stem}_{s.step_s}_{int(s.soft)}.npz"
    if path.is_file():
        z = np.load(path)
        return FrameScores(z["speech"], z["overlap"], float(z["step"]), float(z["offset"]))
    sc = sliding_scores(model, audio, step_s=s.step_s, batch_size=s.batch_size, soft=s.soft)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, speech=sc.speech, overlap=sc.overlap, step=sc.step, offset=sc.offset)
    return sc


def variant(setting: str | None) -> VADConfig:
    """`field=value[,field=value...]` of SegmentationVADConfig (scalar values) -> the VAD config."""
    if setting is None:
        return VADConfig()
    fields = dict(item.partition("=")[::2] for item in setting.split(","))
    return config_from_dict({"vad": {"pyannote_seg": {k: yaml.safe_load(v) for k, v in fields.items()}}}).vad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("where", help="'shared' or a held-out set directory")
    ap.add_argument(
        "-s", "--set", action="append", dest="settings", help="field=value[,field=value...] of SegmentationVADConfig"
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vad_detection_cache"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    settings = args.settings or ["energy_rescue_score=null", "energy_rescue_score=0.05"]
    cfgs = [variant(s) for s in settings]
    model = load_pyannet()
    # (row, variant, collar) -> [miss, false alarm, reference speech] seconds
    acc: dict[tuple[str, int, float], np.ndarray] = {}
    rows: list[str] = []
    for label, wav, rttm in list_files(args.where):
        audio = load_audio(wav)
        ref = read_rttm(rttm)[wav.stem]
        scores = cached_scores(model, wav, audio, args.cache, cfgs[0])
        rows += [label] if label not in rows else []
        for i, cfg in enumerate(cfgs):
            hyp = Annotation()
            for s, e in segmentation_regions(scores, audio, cfg).speech:
                hyp[Segment(s, e)] = "speech"
            for collar in (0.0, 0.5):
                d = DetectionErrorRate(collar=collar)(ref, hyp, detailed=True)
                for key in ((label, i, collar), ("ALL", i, collar)):
                    acc.setdefault(key, np.zeros(3))[:] += (d["miss"], d["false alarm"], d["total"])
        del audio
    print(f"{args.where}: miss % / false alarm % of reference speech ({len(list_files(args.where))} files)")
    for i, s in enumerate(settings):
        print(f"  [{i}] {s or 'default'}")
    head = "".join(f"  [{i}] c=0        [{i}] c=0.5     " for i in range(len(cfgs)))
    print(f"{'':20s}{head}")
    for row in [*rows, "ALL"]:
        cells = ""
        for i in range(len(cfgs)):
            for collar in (0.0, 0.5):
                miss, fa, total = acc[(row, i, collar)]
                cells += f"  {100 * miss / total:6.2f} / {100 * fa / total:5.2f}"
        print(f"{row:20s}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
