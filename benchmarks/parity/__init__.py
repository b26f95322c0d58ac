"""Parity with the reference implementations: NeMo TitaNet and its diarizer, pyannote segmentation."""
