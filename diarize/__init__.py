"""diarize: who spoke when, following NVIDIA's TitaNet multi-scale NME-SC recipe in plain PyTorch."""

from typing import TYPE_CHECKING

from .config import DiarizerConfig, SpeakerCount, load_config
from .errors import DiarizeError

if TYPE_CHECKING:
    from .pipeline import DiarizationResult, Diarizer, diarize

__version__ = "0.1.0"
__all__ = [
    "Diarizer",
    "DiarizerConfig",
    "DiarizationResult",
    "DiarizeError",
    "SpeakerCount",
    "diarize",
    "load_config",
    "__version__",
]
_PIPELINE = ("Diarizer", "DiarizationResult", "diarize")


def __getattr__(name: str):
    # The pipeline (torch, pyannote.core) loads on first use, so that the `diarize` command can set up
    # its imports first (diarize/__main__.py) and `import diarize.config` stays light.
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
