"""diarize: who spoke when, following NVIDIA's TitaNet multi-scale NME-SC recipe in plain PyTorch."""
from .config import DiarizerConfig, load_config
from .pipeline import DiarizationResult, Diarizer, diarize_audio

__version__ = "0.1.0"
__all__ = ["Diarizer", "DiarizerConfig", "DiarizationResult", "diarize_audio", "load_config", "__version__"]
