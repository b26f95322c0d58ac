"""Parity of our TitaNet with NVIDIA NeMo on randomly initialised checkpoints.

NeMo is not a dependency of diarize. Step 1 runs in a scratch venv that has it:

    python3 -m venv /tmp/nemo-venv && /tmp/nemo-venv/bin/pip install torch==2.13.0 "nemo_toolkit[asr]==3.0.0"
    /tmp/nemo-venv/bin/python -m benchmarks.parity.nemo_parity make OUT_DIR [--configs tiny small large]

It builds TitaNet models with NeMo from their configs, randomises every weight and BatchNorm
statistic, saves each as a .nemo, and stores NeMo's eval-mode fp32 features and embeddings for
real utterances from ../shared/data (including a 0.5 s clip). Step 2 runs in diarize's own env:

    python -m benchmarks.parity.nemo_parity compare OUT_DIR

and prints max |feature diff| and max |embedding diff| / max |embedding| per config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import DATA

CLIPS = [  # (file under speakers/, start s, duration s or None for the whole file)
    ("librispeech_test-other/3331/3331-159605-0001.wav", 0.5, 0.5),
    ("librispeech_test-other/367/367-130732-0000.wav", 1.0, 1.5),
    ("librispeech_test-other/1998/1998-15444-0000.wav", 2.0, 1.0),
    ("picovoice_eagle", 0.0, 3.0),
    ("librispeech_test-other/3331/3331-159605-0002.wav", 0.0, None),
]


def _block(filters, repeat, kernel, residual, dropout=0.0):
    return {
        "filters": filters,
        "repeat": repeat,
        "kernel": [kernel],
        "stride": [1],
        "dilation": [1],
        "dropout": dropout,
        "residual": residual,
        "separable": True,
        "se": True,
        "se_context_size": -1,
    }


def titanet_config(size: str) -> dict:
    """NeMo's titanet-large / -small layouts, and a tiny one for the committed test fixture."""
    if size == "large":
        c, ks, last, att = 1024, (7, 11, 15), 3072, 128
    elif size == "small":
        c, ks, last, att = 256, (3, 7, 11), 1536, 128
    else:
        c, ks, last, att = 48, (3, 5, 7), 96, 16
    jasper = [_block(c, 1, 3, False)] + [_block(c, 3, k, True, 0.1) for k in ks] + [_block(last, 1, 1, False)]
    return {
        "sample_rate": 16000,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "normalize": "per_feature",
            "window_size": 0.025,
            "sample_rate": 16000,
            "window_stride": 0.01,
            "window": "hann",
            "features": 80,
            "n_fft": 512,
            "frame_splicing": 1,
            "dither": 0.00001,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 80,
            "activation": "relu",
            "conv_mask": True,
            "jasper": jasper,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.SpeakerDecoder",
            "feat_in": last,
            "num_classes": 16,
            "pool_mode": "attention",
            "emb_sizes": 192,
            "attention_channels": att,
        },
        "loss": {"_target_": "nemo.collections.asr.losses.angularloss.AngularSoftmaxLoss", "scale": 30, "margin": 0.2},
    }


def load_clips() -> list[np.ndarray]:
    import soundfile as sf

    out = []
    for rel, start, dur in CLIPS:
        path = DATA / "speakers" / rel
        if path.is_dir():
            path = (sorted(path.rglob("*.wav")) or sorted(path.rglob("*.flac")))[0]
        elif not path.exists():
            path = path.with_suffix(".flac")  # a device run carries FLAC copies of the same utterances
        x, sr = sf.read(path, dtype="float32")
        assert sr == 16000
        x = x[int(start * sr) :]
        out.append(x if dur is None else x[: int(dur * sr)])
    return out


def make(out: Path, sizes: list[str]) -> None:
    import torch
    from omegaconf import OmegaConf
    from nemo.collections.asr.models import EncDecSpeakerLabelModel

    out.mkdir(parents=True, exist_ok=True)
    clips = load_clips()
    for size in sizes:
        torch.manual_seed({"tiny": 1, "small": 2, "large": 3}[size])
        model = EncDecSpeakerLabelModel(cfg=OmegaConf.create(titanet_config(size)))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "featurizer" in name:
                    continue
                p.copy_(
                    torch.randn_like(p) * (0.5 / max(1, p[0].numel()) ** 0.5)
                    if p.dim() > 1
                    else 1.0 + 0.2 * torch.randn_like(p)
                    if name.endswith("weight")
                    else 0.1 * torch.randn_like(p)
                )
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.running_mean.copy_(0.1 * torch.randn_like(m.running_mean))
                    m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
        model.eval()
        path = out / f"titanet_{size}.nemo"
        model.save_to(str(path))
        feats, embs = [], []
        with torch.no_grad():
            for x in clips:
                sig = torch.from_numpy(x)[None]
                n = torch.tensor([len(x)])
                f, fl = model.preprocessor(input_signal=sig, length=n)
                _, e = model.forward(input_signal=sig, input_signal_length=n)
                feats.append(f[0, :, : int(fl[0])].numpy())
                embs.append(e[0].numpy())
        np.savez(
            out / f"titanet_{size}_ref.npz",
            embeddings=np.stack(embs),
            **{f"audio{i}": x for i, x in enumerate(clips)},
            **{f"features{i}": f for i, f in enumerate(feats)},
        )
        n_params = sum(p.numel() for n_, p in model.named_parameters() if not n_.startswith("decoder.final"))
        print(
            f"{size}: saved {path} ({path.stat().st_size / 1e6:.1f} MB, {n_params / 1e6:.2f}M params without classifier)"
        )


def compare(out: Path) -> int:
    import torch

    from diarize.models.titanet import load_titanet

    worst = 0.0
    for ref_path in sorted(out.glob("titanet_*_ref.npz")):
        size = ref_path.name.split("_")[1]
        model = load_titanet(out / f"titanet_{size}.nemo")
        ref = np.load(ref_path)
        f_err, e_err = 0.0, 0.0
        for i in range(len(ref["embeddings"])):
            x = torch.from_numpy(ref[f"audio{i}"])[None]
            feats, n = model.features(x)
            ours_f = feats[0, :, : int(n[0])].numpy()
            f_err = max(f_err, float(np.abs(ours_f - ref[f"features{i}"]).max()))
            e = model.embed_batch(x)[0].numpy()
            e_ref = ref["embeddings"][i]
            e_err = max(e_err, float(np.abs(e - e_ref).max() / np.abs(e_ref).max()))
        worst = max(worst, e_err)
        print(
            f"{size}: clips={len(ref['embeddings'])} features max|diff|={f_err:.2e}  "
            f"embeddings max|diff|/max|emb|={e_err:.2e}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out", type=Path)
    m.add_argument("--configs", nargs="+", default=["tiny", "small", "large"], choices=["tiny", "small", "large"])
    c = sub.add_parser("compare")
    c.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "make":
        make(args.out, args.configs)
        return 0
    return compare(args.out)


if __name__ == "__main__":
    sys.exit(main())
