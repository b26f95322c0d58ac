"""Accuracy: DER, speaker counts, VAD and verification error; the simulated sets (`simulate`, `splits`, `heldout`)."""
