"""Errors that are the user's to fix: the command line prints their message, never a traceback."""
from __future__ import annotations

import errno
from typing import Optional


class VidclustError(Exception):
    """A problem with the user's input, configuration or environment, explained in one line."""


class StaleOutputs(VidclustError):
    """Outputs of a stage that OUT does not hold whole (a run of the stage was stopped half-way)
    or that derive from another run than the one they are read with; the message names the stage
    to run again."""


class DecodeError(Exception):
    """A video that cannot be read or decoded; its message becomes the `error` of its failed row."""


# errno of a storage that cannot take more (checked by number, and by text for pyarrow's
# OSErrors, whose errno is unset and whose message holds the system's)
_STORAGE_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
                   errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied"}


def storage_oserror(exc: BaseException) -> Optional[OSError]:
    """`exc` as the OSError of a full, read-only or forbidden storage, with its errno set; None for
    any other error. `vidclust.runtime.user_error` looks for one behind an error (a clean-up that
    fails after a full disk raises a second error; a Ray task's error carries the remote one)."""
    if isinstance(exc, OSError):
        if exc.errno in _STORAGE_ERRNOS:
            return exc
        for code, text in _STORAGE_ERRNOS.items():
            if text in str(exc):
                return OSError(code, first_line(exc))
    return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def reason(exc: BaseException, with_file: bool = True) -> str:
    """Why an operation failed, for a message: an OSError's own text ("permission denied", with
    the file it names unless `with_file` is false), else the first line of the message."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{text}: {exc.filename}" if exc.filename and with_file else text
    return first_line(exc)
