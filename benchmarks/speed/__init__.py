"""Speed: end-to-end wall time, start-up, the embedding stage and transcript alignment."""
