"""Starting or joining Ray: the only place that decides where the job runs."""
from __future__ import annotations

import logging
import os

from vidclust.config import Config

log = logging.getLogger("vidclust")


def init_ray(cfg: Config) -> None:
    """Join the cluster this job was submitted to, or start a local Ray on this machine.

    `ray job submit` sets RAY_ADDRESS for the driver, so the same code runs unchanged on a
    laptop and on a cluster. An explicit `ray.address` in the config wins.
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS") or running_local_cluster()
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address and address != "local":
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, **kwargs)
    else:
        log.info("starting a local Ray")
        ray.init(address="local", **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True


def running_local_cluster(timeout: float = 1.0) -> str | None:
    """The address of a cluster that `ray start` left running on this machine, if its GCS answers.

    Ray's own auto-detection also follows a stale /tmp/ray/ray_current_cluster, and then waits
    for a dead cluster for good; a cluster that does not answer here is ignored.
    """
    import socket
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")
    try:
        address = open(path).read().strip()
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=timeout):
            return address
    except (OSError, ValueError):
        return None


def cluster_resources() -> dict:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}
