"""The cluster stage: aggregate frames per video, cluster (VideoClusterer), near-duplicates,
scores, assign new videos to saved centres (run.py: run_cluster, run_assign_new)."""
