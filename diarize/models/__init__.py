"""Speaker-embedding models and the policy that picks one.

`titanet-large` is the default whenever its weights are at hand (a `.nemo` path,
the user cache); otherwise `auto` says so in one line (a warning, once per process) and falls
back to CAM++, whose weights it fetches itself with pip. `titanet-large` asked for by name is
fetched when online, else an error: it never silently becomes another model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WeightsUnavailable
from .base import SpeakerEmbedder, resolve_device
from .hub import cache_dir

if TYPE_CHECKING:  # loaded with the model itself, so that the CLI's light commands never import torch
    import torch

MODEL_NAMES = ("titanet-large", "campplus")

__all__ = ["MODEL_NAMES", "SpeakerEmbedder", "load_model", "resolve_device"]


_fallback_noted = False


def _note_fallback(message: str) -> None:
    """Warn about the CAM++ fallback once per process, not on every command and every `Diarizer()`."""
    global _fallback_noted
    if not _fallback_noted:
        _fallback_noted = True
        warnings.warn(message, stacklevel=3)


def load_model(name_or_path: str = "auto", device: str | torch.device = "auto") -> SpeakerEmbedder:
    """Load a speaker-embedding model by name (`auto`, `titanet-large`, `campplus`) or a `.nemo`/`.pt` path.

    Raises:
        WeightsUnavailable: unknown name, unreadable file, or weights that cannot be fetched or verified.
        ConfigError: a device this machine does not have.
    """
    dev = resolve_device(device)
    spec = str(name_or_path)
    path = Path(spec)
    if spec.lower().endswith((".nemo", ".pt")):
        if not path.is_file():
            raise WeightsUnavailable(f"{spec}: no such model file")
        if spec.lower().endswith(".nemo"):
            from .titanet import load_titanet

            return load_titanet(path, device=dev)
        from .campplus import load_campplus

        return load_campplus(path, device=dev)
    if spec == "titanet-large":  # asked for by name: its weights or an error, never another model
        from . import nemo
        from .titanet import load_titanet

        if nemo.titanet_weights_at_hand() is None:
            nemo.download_titanet()
        return load_titanet("titanet-large", device=dev)
    if spec == "auto":
        from . import nemo

        reason = "not in the cache"
        if nemo.titanet_weights_at_hand() is not None:
            from .titanet import load_titanet

            try:
                return load_titanet("titanet-large", device=dev)
            except WeightsUnavailable as e:  # a corrupt or bogus cached file must not break the default run
                reason = str(e).splitlines()[0]
        _note_fallback(
            f"TitaNet-Large weights are not at hand ({reason}); using CAM++. To use TitaNet pass "
            f"--model PATH.nemo or put it at {cache_dir() / nemo.CACHE_NAME}."
        )
        spec = "campplus"
    if spec == "campplus":
        from .campplus import load_campplus

        return load_campplus(device=dev)
    raise WeightsUnavailable(
        f"unknown model {spec[:60]!r}: use one of {', '.join(MODEL_NAMES)}, 'auto', or a .nemo/.pt path"
    )
