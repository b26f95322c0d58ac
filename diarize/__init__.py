"""diarize: who spoke when, following NVIDIA's TitaNet multi-scale NME-SC recipe in plain PyTorch."""

from .config import DiarizerConfig, SpeakerCount, load_config
from .errors import DiarizeError
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
