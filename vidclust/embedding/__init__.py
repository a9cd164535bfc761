"""The embed stage: decode and sample frames, encode them, write frames/ and commit which
videos are done (run.py: run_embed)."""
