"""The stats command: durations, frame rates, sizes and codecs of a SOURCE (run.py: run_stats)."""
