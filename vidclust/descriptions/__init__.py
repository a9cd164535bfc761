"""The describe stage: key phrases, summaries or zero-shot labels per cluster (run.py:
run_describe)."""
