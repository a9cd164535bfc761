"""Entry point that `ray job submit` runs: the whole `vidclust` command line on the cluster.

    ray job submit --working-dir . -- python jobs/vidclust_job.py run SOURCE OUT [options]

Inside a submitted job RAY_ADDRESS is set, so vidclust joins that cluster instead of starting a
local Ray. Any subcommand works (embed, cluster, describe, report, run, assign, stats).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vidclust.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
