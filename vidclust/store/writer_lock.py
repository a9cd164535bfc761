"""One writer per OUT: a lock file that a second run into the same OUT finds and is refused by.

The lock (`OUT/_vidclust/lock.json`) names its holder (host, pid, run id) and carries a
heartbeat that the holder refreshes every few seconds from a thread of its own. A lock is taken
over when it is stale: its holder's process is gone (same host), or its heartbeat is older than
`stale_after_s` (any host: a live holder beats every few seconds, so an old heartbeat naming a live
pid of this host is a killed run's pid now reused, e.g. pid 1 of a restarted container). A lock
file that cannot be read a while after it was written (a run killed between creating it and
writing its record) is stale too. So a lock left by a killed run never blocks for long.

On a local filesystem the lock is created exclusively (O_EXCL): of two runs starting together
exactly one gets it, and a stale lock is taken over by an atomic rename, so that of two runs
taking over the same stale lock neither removes the lock the other has created since. Object
stores have no exclusive create; there the lock is written, read back after a moment, and kept
only if it still names this run.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Optional

import pyarrow.fs as pafs

from vidclust.store.contract import process_alive, write_bytes
from vidclust.errors import VidclustError
from vidclust.store.layout import OutputLayout

HEARTBEAT_S = 5.0
STALE_AFTER_S = 120.0
UNREADABLE_STALE_S = 10.0  # a creator writes its record right after creating the file


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
        if time.time() - float(held.get("heartbeat", 0)) > self.stale_after_s:
            return True
        if held.get("host") == socket.gethostname() and self.layout.is_local:
            return not process_alive(int(held.get("pid", -1)))
        return False

    def _unreadable_for_long(self) -> bool:
        info = self.layout.fs.get_file_info(self.layout.lock_file)
        if info.type == pafs.FileType.NotFound or info.mtime is None:
            return False
        return time.time() - info.mtime.timestamp() > UNREADABLE_STALE_S

    # ------------------------------------------------------------------ acquire / release

    def acquire(self) -> "WriterLock":
        self.layout.makedirs(self.layout.meta_dir)
        for _ in range(3):
            if self._try_create():
                self._start_heartbeat()
                return self
            held = self._read()
            if held is None:
                if self._unreadable_for_long():  # a run killed before it wrote its record
                    self._remove_stale(None)
                else:  # removed or half-written between our two looks: try again
                    time.sleep(0.2)
                continue
            if held.get("run_id") == self.run_id:
                self._start_heartbeat()
                return self
            if not self._is_stale(held):
                raise VidclustError(f"{being_written(self.layout, held)}: wait for it to finish, or use another OUT")
            self._remove_stale(held)  # a killed run's lock: take it over
        raise VidclustError(f"could not take the lock of {self.layout.root}: another run keeps taking it")

    def live_holder(self) -> Optional[dict]:
        """The record of the live run that holds the lock; None when it is free, stale or unreadable."""
        held = self._read()
        return None if held is None or self._is_stale(held) else held

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
        write_bytes(self.layout, self._record(), path)
        time.sleep(1.0)  # a run that wrote at the same moment overwrote one of the two: look again
        held = self._read()
        return held is not None and held.get("run_id") == self.run_id

    def _remove_stale(self, held: Optional[dict]) -> None:
        """Remove the lock judged stale (`held`, None for an unreadable one), unless another run
        has replaced it since: two runs may judge the same stale lock at once, and the later one
        must not delete the lock the earlier one has just created."""
        path = self.layout.lock_file
        if not self.layout.is_local:  # no atomic rename: `_try_create` reads back who won
            self._remove()
            return
        grave = f"{path}.{self.run_id}.stale"
        try:
            os.rename(path, grave)  # atomic: of two runs taking over, one moves the file
        except FileNotFoundError:
            return  # the other one did: try again
        try:
            if _read_json(grave) != held:  # moved a lock made since: put it back
                try:
                    os.link(grave, path)  # unless a third run has taken the free place since
                except FileExistsError:
                    pass
                except OSError:  # a filesystem without hard links
                    if not os.path.exists(path):
                        os.rename(grave, path)
        finally:
            if os.path.exists(grave):
                os.unlink(grave)

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
                    write_bytes(self.layout, self._record(), self.layout.lock_file)
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


def being_written(layout: OutputLayout, held: dict) -> str:
    """'OUT is being written by another vidclust run (pid, host, since when)', of a lock's record."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held.get("started", 0))))
    return (f"{layout.root} is being written by another vidclust run (pid {held.get('pid')} on "
            f"{held.get('host')}, since {since})")


def refuse_while_written(layout: OutputLayout, then: str) -> None:
    """One line naming the live run that writes OUT, if one does: a reader of its outputs waits
    for it, then does `then`."""
    held = WriterLock(layout).live_holder()
    if held is not None:
        raise VidclustError(f"{being_written(layout, held)}: wait for it to finish, then {then}")


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
