"""The report stage: the page, its map, plots and frame strips (run.py: run_report)."""
