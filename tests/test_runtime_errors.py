"""runtime.user_error: the user's error behind a Ray error, found without Ray (errors built by hand
as Ray builds them: the remote error as `cause`, a dead actor's as text)."""
import errno

from vidclust.errors import VidclustError
from vidclust.runtime import JobFailed, user_error


class RemoteError(Exception):
    """As a Ray task's error: its message holds the remote traceback; `cause` the remote error."""

    def __init__(self, text: str, cause=None):
        super().__init__(text)
        self.cause = cause


def failed(remote: BaseException) -> JobFailed:
    try:
        raise JobFailed(str(remote).splitlines()[-1]) from remote
    except JobFailed as exc:
        return exc


def test_a_full_disk_in_a_task_is_its_oserror():
    full = OSError(errno.ENOSPC, "No space left on device", "/out/frames/part-1.parquet")
    assert user_error(failed(RemoteError("ray::write()\nOSError: [Errno 28] ...", full))) is full


def test_a_storage_error_known_by_its_text_gets_its_errno():
    found = user_error(failed(RemoteError("ray::write()", OSError("IOError: Read-only file system"))))
    assert isinstance(found, OSError) and found.errno == errno.EROFS


def test_a_dead_actor_carries_the_vidclust_error_as_text():
    dead = RemoteError("The actor died in its constructor:\nTraceback ...\n"
                       "vidclust.errors.VidclustError: weights x do not load\n  more lines")
    found = user_error(failed(dead))
    assert isinstance(found, VidclustError) and str(found) == "weights x do not load"


def test_a_vidclust_error_raised_here_and_one_behind_a_clean_up():
    own = VidclustError("mine")
    assert user_error(own) is own
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("the clean-up failed too")
    except RuntimeError as exc:
        assert user_error(exc).errno == errno.EDQUOT


def test_anything_else_is_none():
    assert user_error(failed(RemoteError("ray::decode()\nZeroDivisionError: division by zero",
                                         ZeroDivisionError("division by zero")))) is None
    assert user_error(ValueError("a bug")) is None
