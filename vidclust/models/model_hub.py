"""Is a model hub reachable from here? One quick answer for every model loader of vidclust.

Without it, huggingface_hub retries for most of a minute on a machine with no network before it
fails; with it, a loader that finds no local weights stops in seconds with a clear message.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set; else whether a TCP
    connection to the hub endpoint (HF_ENDPOINT, huggingface.co by default) opens in `timeout` s."""
    if _truthy_env("HF_HUB_OFFLINE") or _truthy_env("TRANSFORMERS_OFFLINE"):
        return False
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # an old or odd huggingface_hub: assume the public hub
        endpoint = urlparse("https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
