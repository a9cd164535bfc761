"""One writer per OUT: a lock file that a second run into the same OUT finds and is refused by.

The lock (`OUT/_vidclust/lock.json`) names its holder (host, pid, run id) and carries a
heartbeat that the holder refreshes every few seconds from a thread of its own. A lock is taken
over when it is stale: its holder's process is gone (same host), or its heartbeat is older than
`stale_after_s` (another host, or a filesystem such as S3 that no process on this host can
check). So a lock left by a killed run never blocks for long.

On a local filesystem the lock is created exclusively (O_EXCL): of two runs starting together
exactly one gets it. Object stores have no exclusive create; there the lock is written, read back
after a moment, and kept only if it still names this run.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Optional

from vidclust.errors import VidclustError
from vidclust.layout import OutputLayout

HEARTBEAT_S = 5.0
STALE_AFTER_S = 120.0


class WriterLock:
    def __init__(self, layout: OutputLayout, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S):
        self.layout, self.heartbeat_s, self.stale_after_s = layout, heartbeat_s, stale_after_s
        self.run_id = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ holder's record

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                           "started": self.started, "heartbeat": time.time()}).encode()

    def _read(self) -> Optional[dict]:
        try:
            return json.loads(self.layout.read_bytes(self.layout.lock_file))
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None

    def _is_stale(self, held: dict) -> bool:
        if held.get("host") == socket.gethostname() and self.layout.is_local:
            return not _process_alive(int(held.get("pid", -1)))
        return time.time() - float(held.get("heartbeat", 0)) > self.stale_after_s

    # ------------------------------------------------------------------ acquire / release

    def acquire(self) -> "WriterLock":
        self.layout.makedirs(self.layout.meta_dir)
        for _ in range(3):
            if self._try_create():
                self._start_heartbeat()
                return self
            held = self._read()
            if held is None:  # removed or half-written between our two looks: try again
                time.sleep(0.2)
                continue
            if held.get("run_id") == self.run_id:
                self._start_heartbeat()
                return self
            if not self._is_stale(held):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held.get("started", 0))))
                raise VidclustError(
                    f"{self.layout.root} is being written by another vidclust run (pid {held.get('pid')} "
                    f"on {held.get('host')}, since {since}): wait for it to finish, or use another OUT")
            self._remove()  # a killed run's lock: take it over
        raise VidclustError(f"could not take the lock of {self.layout.root}: another run keeps taking it")

    def _try_create(self) -> bool:
        path = self.layout.lock_file
        if self.layout.is_local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(self._record())
            return True
        if self._read() is not None:
            return False
        self.layout.write_bytes_atomic(path, self._record())
        time.sleep(1.0)  # a run that wrote at the same moment overwrote one of the two: look again
        held = self._read()
        return held is not None and held.get("run_id") == self.run_id

    def _remove(self) -> None:
        try:
            self.layout.fs.delete_file(self.layout.lock_file)
        except (FileNotFoundError, OSError):
            pass

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                held = self._read()
                if held is not None and held.get("run_id") != self.run_id:
                    return  # taken over (we were presumed dead): never write over another's lock
                try:
                    self.layout.write_bytes_atomic(self.layout.lock_file, self._record())
                except OSError:
                    pass  # a full disk or a flaky store: the next beat tries again

        self._thread = threading.Thread(target=beat, name="vidclust-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        held = self._read()
        if held is not None and held.get("run_id") == self.run_id:
            self._remove()

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
