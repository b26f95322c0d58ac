"""Why resampled copies of a recording change its speaker count (issue 32, item 4): the level of each band
of a re-encoded copy, read back by `diarize.audio.load_audio`, against the 16 kHz original; and, with
`--counts`, the speaker count of each copy as it is and after a sharp low-pass below the band the
resampling filters touch (a probe of a fix, not a pipeline setting).

    python -m benchmarks.accuracy.resample_band [FILE.wav ...] [--counts] [--lowpass-hz 6900]

Files default to the shared recording trn04; copies as `stability.ENCODINGS` writes them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import DATA
from benchmarks.accuracy.stability import ENCODINGS, encode

BANDS_HZ = [(0, 4000), (4000, 6000), (6000, 7000), (7000, 7500), (7500, 7800), (7800, 8000)]
COPIES = ["16k-int16", "22k-int16", "44k-float", "48k-int16"]


def band_levels(original: np.ndarray, copy: np.ndarray) -> list[float]:
    """dB of the copy's power relative to the original's in each of BANDS_HZ."""
    n = min(len(original), len(copy))
    a, b = (np.abs(np.fft.rfft(x[:n].astype(np.float64))) ** 2 for x in (original, copy))
    freqs = np.fft.rfftfreq(n, 1 / 16000)
    return [
        10 * np.log10(b[(freqs >= lo) & (freqs < hi)].sum() / a[(freqs >= lo) & (freqs < hi)].sum())
        for lo, hi in BANDS_HZ
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, default=[DATA / "diarization/ami_pyannote_debug/trn04.wav"])
    ap.add_argument("--counts", action="store_true", help="also diarize every copy, plain and low-passed")
    ap.add_argument("--lowpass-hz", type=float, default=6900.0)
    args = ap.parse_args(argv)
    from scipy.signal import fftconvolve, firwin

    from diarize import Diarizer
    from diarize.audio import load_audio

    taps = firwin(401, args.lowpass_hz, fs=16000)  # linear phase; "same" convolution keeps the timing
    diarizer = Diarizer() if args.counts else None
    tmp = Path(tempfile.mkdtemp())

    def count(x: np.ndarray) -> int:
        sf.write(tmp / "in.wav", x, 16000, subtype="FLOAT")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return diarizer.run(str(tmp / "in.wav")).num_speakers

    print("| file | copy | " + " | ".join(f"{lo}-{hi} Hz" for lo, hi in BANDS_HZ) + " | count | low-passed |")
    print("|---" * (len(BANDS_HZ) + 4) + "|")
    for f in args.files:
        original = load_audio(f)
        for name in COPIES:
            rate, subtype, gain_db, dither = ENCODINGS[name]
            encode(original, tmp / f"{name}.wav", rate, subtype, gain_db, dither, seed=0)
            x = load_audio(tmp / f"{name}.wav")
            levels = " | ".join(f"{v:+.2f} dB" for v in band_levels(original, x))
            counts = "- | -"
            if diarizer is not None:
                counts = f"{count(x)} | {count(fftconvolve(x, taps, mode='same').astype(np.float32))}"
            print(f"| {f.stem} | {name} | {levels} | {counts} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
