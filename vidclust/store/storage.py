"""Where the input files are, and a local path for each: paths and URIs, the filesystem behind
them, the files under a folder or a glob, and the local copy a reader opens.

A path is a local path, a file URI (`file:///videos/caf%E9.mp4`: how a local name that is not
UTF-8 travels as text, see `path_text`), any URI pyarrow's filesystems reach (s3://, gs://, ...,
with its options: `s3://bucket/a.mp4?endpoint_override=host:port&scheme=http`) or one member of a
tar shard (`<shard>#<member>`, see `member_path`). `local_file` turns any of them into a local path
for as long as it is needed: readers (the decoder, the report's frame grabs, stats' probes) only
ever open local files.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import urllib.parse
from typing import Callable, Iterator

import pyarrow.fs as pafs

from vidclust.errors import DecodeError, VidclustError, first_line

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv", ".ogg", ".vob", ".mxf")

# the query of a URI starts at the first `?` followed by `name=`; any other `?` is a wildcard
_QUERY = re.compile(r"\?(?=[A-Za-z_][A-Za-z0-9_]*=)")
# `<...>.tar[?options]#member`: the first `.tar` followed by `#` (or by options, then `#`)
_MEMBER_PATH = re.compile(r"\.tar(\?[^#]*)?#", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# paths and URIs


def filesystem(source: str) -> tuple[pafs.FileSystem, str, Callable[[str], str]]:
    """(filesystem, path within it, function that turns such a path back into a URI that
    `FileSystem.from_uri` opens the same way: same scheme, user info and query options).
    The path may hold glob wildcards (`*`, `?` before the options, `[`)."""
    if "://" not in source:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(source)), path_text
    m = _QUERY.search(source)
    uri, query = (source[:m.start()], source[m.end():]) if m else (source, "")
    scheme, rest = uri.split("://", 1)
    static = re.split(r"[*?\[]", rest, maxsplit=1)[0]  # the part before any wildcard
    try:
        fs, static_path = pafs.FileSystem.from_uri(f"{scheme}://{static}" + (f"?{query}" if query else ""))
    except Exception as exc:
        raise VidclustError(f"cannot open SOURCE {source}: {exc}") from None
    path = static_path.rstrip("/") + ("/" if static.endswith("/") else "") + rest[len(static):]
    if scheme == "file":
        return fs, path, path_text
    # user info (s3://KEY:SECRET@bucket/...) is not part of the path from_uri returns: keep it
    authority = static.split("/", 1)[0]
    userinfo = authority.rsplit("@", 1)[0] + "@" if "@" in authority else ""
    suffix = f"?{query}" if query else ""
    return fs, path, lambda p: f"{scheme}://{userinfo}{p}{suffix}"


def without_options(uri: str) -> str:
    """A path or URI without its query options (`s3://b/a.mp4?scheme=http` -> `s3://b/a.mp4`)."""
    return _QUERY.split(uri, 1)[0]


def path_text(path: str) -> str:
    """A local path as text (what an Arrow string holds): the path itself, or, where the file
    system gives a name as bytes that are not UTF-8 (Python holds them as surrogates), the file
    URI of its bytes (`file:///videos/caf%E9.mp4`). `local_path` is the inverse."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "file://" + urllib.parse.quote(os.fsencode(path))


def local_path(path: str) -> str:
    """The path the OS opens for a local path or a file URI (`file://` + the path, its %XX
    escapes decoded to the bytes they stand for, as RFC 8089 and pyarrow read it)."""
    if not path.startswith("file://"):
        return path
    return os.fsdecode(urllib.parse.unquote_to_bytes(path[len("file://"):]))


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same string, the same object behind URIs that differ
    only in their options or user info, or the same local file reached by another path (a link,
    a mount)."""
    if a == b:
        return True
    if "://" in a and "://" in b:
        def bare(u: str) -> str:  # scheme://bucket/key, without user info and options
            scheme, rest = without_options(u).split("://", 1)
            authority, _, key = rest.partition("/")
            return f"{scheme}://{authority.rsplit('@', 1)[-1]}/{key}"
        return bare(a) == bare(b)
    try:
        return "://" not in a + b and os.path.samefile(a, b)
    except OSError:  # one of them is gone: it cannot be told the same
        return False


def member_path(shard: str, member: str) -> str:
    """The path of one member of a tar shard: `<shard URI>#<member>`."""
    return f"{shard}#{member}"


def is_member_path(path: str) -> bool:
    return _MEMBER_PATH.search(path) is not None


def split_member_path(path: str) -> tuple[str, str]:
    """`<shard>#<member>` -> (shard URI or path, member name)."""
    m = _MEMBER_PATH.search(path)
    if m is None:
        raise ValueError(f"not a shard member path: {path}")
    return path[:m.end() - 1], path[m.end():]


def is_video_name(path: str) -> bool:
    """A file listing takes as a video: a VIDEO_EXTENSIONS name, not hidden."""
    return path.lower().endswith(VIDEO_EXTENSIONS) and not posixpath.basename(path).startswith(".")


# ----------------------------------------------------------------------------------------------
# the files under a folder


def walk_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """Every file under root, recursively, sorted. On the local filesystem see `_walk_local`."""
    if isinstance(fs, pafs.LocalFileSystem):
        return _walk_local(root)
    selector = pafs.FileSelector(root, recursive=True)
    return sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def _walk_local(root: str) -> list[str]:
    """Every non-folder entry under a local folder, each listed once, sorted.

    Links are followed, but never into a folder already visited (by its real path), so a link to
    a folder above (`loop -> .`) lists nothing twice; folders reached without a link are visited
    before any reached through one, so a file keeps the path (and id) of its real place. Links to
    files are entries of their own: two links to one file are two inputs. A broken or looping link
    is listed too: decoding then fails it with its reason, instead of the input vanishing."""
    visited: set[str] = set()
    files: list[str] = []
    plain, linked = [root], []  # folders to visit: reached without a link first
    while plain or linked:
        folder = plain.pop() if plain else linked.pop(0)
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise VidclustError(f"cannot list folder {folder}: {exc.strerror or exc}") from None
        for e in entries:
            path = posixpath.join(folder, e.name)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:  # a link looping on itself
                is_dir = False
            if not is_dir:
                files.append(path)
            elif e.is_symlink():
                linked.append(path)
            else:
                plain.append(path)
    return sorted(files)


def glob_root(pattern: str) -> str:
    """The folder of a glob pattern above its first wildcard."""
    root = pattern
    while any(ch in root for ch in "*?["):
        root = posixpath.dirname(root)
    return root


def glob_files(fs: pafs.FileSystem, pattern: str, source: str) -> list[str]:
    """Every file of fs that a glob pattern (a path within fs) matches, sorted; `source` is the
    pattern as the user wrote it, for the message when the folder above its wildcards is missing."""
    root = glob_root(pattern)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise VidclustError(f"SOURCE glob {source}: folder {root} not found")
    return [p for p in walk_files(fs, root) if fnmatch.fnmatch(p, pattern)]


# ----------------------------------------------------------------------------------------------
# a local path for any file


@contextlib.contextmanager
def local_file(path: str) -> Iterator[str]:
    """A local path for `path`: itself (a file URI: the path it stands for, see `local_path`), or
    a temporary copy of a remote file (s3://, gs://, ...), or of one member of a tar shard
    (`<shard>#<member>`), removed afterwards. A file that cannot be reached raises DecodeError."""
    if is_member_path(path):
        with _member_file(path) as tmp:
            yield tmp
        return
    if "://" not in path or path.startswith("file://"):
        yield local_path(path)
        return
    try:
        fs, inner = pafs.FileSystem.from_uri(path)
    except Exception as exc:
        raise DecodeError(f"cannot open {path}: {first_line(exc)}") from None
    suffix = os.path.splitext(inner)[1]
    fd, tmp = tempfile.mkstemp(prefix="vidclust-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(inner) as src:
            shutil.copyfileobj(src, out, 1 << 22)
        yield tmp
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def _member_file(path: str) -> Iterator[str]:
    """A temporary local file holding the member `<shard>#<member>` names (removed afterwards),
    streamed out of the shard without unpacking it."""
    shard, member = split_member_path(path)
    try:
        if "://" not in shard or shard.startswith("file://"):
            fs, inner = pafs.LocalFileSystem(), local_path(shard)
        else:
            fs, inner = pafs.FileSystem.from_uri(shard)
        f = fs.open_input_file(inner)
    except FileNotFoundError:
        raise DecodeError(f"file not found: shard {shard}") from None
    except Exception as exc:
        raise DecodeError(f"cannot open shard {shard}: {first_line(exc)}") from None
    tmp = None
    try:
        with f, tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:  # stops at the member: headers before it only
                if m.name == member:
                    break
            else:
                raise DecodeError(f"file not found: no member {member} in shard {shard}")
            src = tar.extractfile(m)
            if src is None:
                raise DecodeError(f"member {member} of shard {shard} is not a file")
            fd, tmp = tempfile.mkstemp(prefix="vidclust-", suffix=os.path.splitext(member)[1])
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 22)
        yield tmp
    except tarfile.TarError as exc:
        raise DecodeError(f"shard {shard} is not a readable tar file: {exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
